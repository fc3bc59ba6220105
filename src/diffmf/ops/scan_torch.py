"""Fast selective scan in plain PyTorch: adaptive chunks, closed form inside each chunk.

Inside a chunk [s, e) the recurrence has the closed form

    h_t = P_t * ( a_s h_{s-1} + sum_{s<=r<=t} b_r / P_r ),  P_t = exp(A * sum_{s<r<=t} delta_r)

with b_r = delta_r u_r B_r and a_s = exp(delta_s A): one exponential per state element
(the floor), a cumulative sum and a few element-wise products, all vectorised over
(batch, channels, state, chunk). Dividing by P_r is exact but overflows when the decay
inside a chunk is large, so chunk boundaries are placed where the accumulated worst-case
decay max_{d,n} |A_dn| delta_{t,d} reaches ``max_decay`` (e^60 ~ 1e26 fits float32 with
room). Chunks are short only where the decay is strong, long (``chunk``) elsewhere, and the
loop runs over chunks, keeping each chunk's working set in cache. Autograd differentiates
through it (used for CPU training); the Triton kernels have their own backward.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from diffmf.ops.scan_ref import prepare_delta

MAX_DECAY: float = 60.0
_TARGET_ELEMENTS: int = 1 << 18  # per-chunk working set (floats), sized for L2 cache


def selective_scan_torch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
    return_last_state: bool = False,
    chunk: Optional[int] = None,
    max_decay: float = MAX_DECAY,
):
    """Same contract and result as :func:`diffmf.ops.scan_ref.selective_scan_ref`, fast.

    Shapes: u, delta (B, G*D, L); A (G*D, N); B, C (B, G, N, L); D, delta_bias (G*D,).
    Computes in float32 (float64 if any input is float64); returns y (B, G*D, L).
    """
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in (u, delta, A, B, C)) else torch.float32
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    delta = prepare_delta(delta, None if delta_bias is None else delta_bias.to(dtype), delta_softplus)
    batch, gd, length = u.shape
    groups, n = B.shape[1], A.shape[1]
    d = gd // groups
    if chunk is None:
        chunk = int(min(256, max(16, 2 ** round(math.log2(max(1, _TARGET_ELEMENTS // max(1, batch * gd * n)))))))
    A4 = A.view(1, groups, d, n, 1)
    u4 = u.view(batch, groups, d, length)
    dt4 = delta.view(batch, groups, d, length)
    du4 = dt4 * u4
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
    a_max = A.detach().abs().amax(dim=1).view(1, groups, d, 1)  # worst decay rate per channel
    h = u.new_zeros(batch, groups, d, n)
    ys = []
    s = 0
    while s < length:
        e = min(s + chunk, length)
        dt = dt4[..., s:e]  # (B, G, D, T)
        steps = torch.cumsum(dt, dim=-1) - dt[..., :1]  # sum of delta after the chunk's first step
        worst = (steps.detach() * a_max).amax(dim=(0, 1, 2))  # (T,), non-decreasing
        if float(worst[-1]) > max_decay:  # cut the chunk where exp(-decay) would overflow
            e = s + max(1, int(torch.searchsorted(worst, torch.tensor([max_decay], dtype=worst.dtype), right=True)))
            dt, steps = dt[..., : e - s], steps[..., : e - s]
        cum = steps.unsqueeze(3) * A4  # (B, G, D, N, T), 0 at t = s
        P = torch.exp(cum)
        drive = du4[..., s:e].unsqueeze(3) * B[:, :, None, :, s:e]  # (B, G, D, N, T)
        # b_r / P_r. Under autograd use exp(-cum) (<= e^max_decay): the backward of a division
        # would square P (~e^-60) and overflow.
        w = drive * torch.exp(-cum) if needs_grad else drive / P
        w[..., 0] += torch.exp(dt[..., 0, None] * A4[..., 0]) * h  # carry h_{s-1} in
        hs = P * torch.cumsum(w, dim=-1)
        ys.append((hs * C[:, :, None, :, s:e]).sum(3))  # (B, G, D, T)
        h = hs[..., -1]
        s = e
    y = torch.cat(ys, dim=-1).reshape(batch, gd, length) if ys else u.new_zeros(batch, gd, 0)
    if D is not None:
        y = y + u * D.to(dtype)[:, None]
    return (y, h.reshape(batch, gd, n)) if return_last_state else y
