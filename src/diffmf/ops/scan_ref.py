"""Exact selective scan: a step-by-step loop over the sequence (the test oracle).

Slow (one Python step per position) but exact, differentiable by autograd, and runs in
float64 when any input is float64 (used by ``torch.autograd.gradcheck``).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def prepare_delta(delta: Tensor, delta_bias: Optional[Tensor], delta_softplus: bool) -> Tensor:
    """delta (B, GD, L) -> softplus(delta + delta_bias[:, None]) (torch's threshold of 20)."""
    if delta_bias is not None:
        delta = delta + delta_bias.to(delta.dtype)[:, None]
    return F.softplus(delta) if delta_softplus else delta


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
    return_last_state: bool = False,
):
    """Exact recurrence h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t, y_t = C_t.h_t + D u_t.

    Shapes: u, delta (B, G*D, L); A (G*D, N); B, C (B, G, N, L); D, delta_bias (G*D,).
    Returns y (B, G*D, L) in float32 (float64 if any input is float64) and, with
    ``return_last_state``, h_L (B, G*D, N).
    """
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in (u, delta, A, B, C)) else torch.float32
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    delta = prepare_delta(delta, None if delta_bias is None else delta_bias.to(dtype), delta_softplus)
    batch, gd, length = u.shape
    groups = B.shape[1]
    d = gd // groups
    Bx = B.repeat_interleave(d, dim=1)  # (B, GD, N, L)
    Cx = C.repeat_interleave(d, dim=1)
    decay = torch.exp(delta.unsqueeze(-1) * A[:, None, :])  # (B, GD, L, N)
    drive = (delta * u).unsqueeze(2) * Bx  # (B, GD, N, L)
    h = u.new_zeros(batch, gd, A.shape[1])
    ys = []
    for t in range(length):
        h = decay[:, :, t] * h + drive[..., t]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, gd, 0)
    if D is not None:
        y = y + u * D.to(dtype)[:, None]
    return (y, h) if return_last_state else y
