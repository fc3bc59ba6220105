"""The selective-scan entry points used by the model: 1-D contract and fused 2-D cross-scan.

:func:`selective_scan` is the op with VMamba's ``selective_scan_fn`` contract.
:func:`selective_scan_2d` is SS2D's CrossScan -> selective scan -> CrossMerge in one call,
taking per-route ``delta``, ``B``, ``C`` maps in natural (grid) layout, so a fused kernel can
read each route in its own order without K-fold copies of the feature map. Both dispatch on
the backend (:mod:`diffmf.ops.dispatch`); model code never names a backend.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from diffmf.ops.cross_scan import cross_merge, cross_scan, cross_scan_routes
from diffmf.ops import flops as _flops
from diffmf.ops.dispatch import resolve_backend
from diffmf.ops.scan_ref import selective_scan_ref
from diffmf.ops.scan_torch import selective_scan_torch


def _check(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must be (B, G*D, L) and equal; got {tuple(u.shape)}, {tuple(delta.shape)}")
    batch, gd, length = u.shape
    if A.dim() != 2 or A.shape[0] != gd:
        raise ValueError(f"A must be (G*D, N) = ({gd}, N); got {tuple(A.shape)}")
    if B.dim() != 4 or B.shape[0] != batch or B.shape[2] != A.shape[1] or B.shape[3] != length:
        raise ValueError(f"B must be (B, G, N, L) = ({batch}, G, {A.shape[1]}, {length}); got {tuple(B.shape)}")
    if C.shape != B.shape:
        raise ValueError(f"C must have the shape of B {tuple(B.shape)}; got {tuple(C.shape)}")
    if gd % B.shape[1]:
        raise ValueError(f"G*D={gd} is not divisible by the number of groups G={B.shape[1]}")


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
    backend: Optional[str] = None,
) -> Tensor:
    """Selective scan (Mamba S6, eq. 3 of the paper with ZOH on A and Euler on B).

    u, delta: (B, G*D, L); A: (G*D, N) (negative); B, C: (B, G, N, L); D, delta_bias: (G*D,).
    delta <- softplus(delta + delta_bias); h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t;
    y_t = C_t . h_t + D u_t. Returns y (B, G*D, L), float32.
    """
    _check(u, delta, A, B, C)
    name = resolve_backend(u.device, backend)
    if name == "triton":
        from diffmf.ops.triton import selective_scan_triton

        return selective_scan_triton(u, delta, A, B, C, D, delta_bias, delta_softplus)
    fn = selective_scan_ref if name == "ref" else selective_scan_torch
    return fn(u, delta, A, B, C, D, delta_bias, delta_softplus)


def selective_scan_2d(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
    backend: Optional[str] = None,
) -> Tensor:
    """CrossScan -> selective scan -> CrossMerge over an H x W grid (SS2D core).

    u: (B, D, H, W) shared by the K routes; delta: (B, K, D, H, W); B, C: (B, K, N, H, W);
    A: (K*D, N); D, delta_bias: (K*D,). Route k reads the grid in order k of
    :mod:`diffmf.ops.cross_scan`; the K outputs are mapped back and summed.
    Returns (B, D, H, W), float32.
    """
    batch, d, h, w = u.shape
    k = delta.shape[1]
    if delta.shape != (batch, k, d, h, w):
        raise ValueError(f"delta must be (B, K, D, H, W) = {(batch, k, d, h, w)}; got {tuple(delta.shape)}")
    if B.shape[:2] != (batch, k) or B.shape[3:] != (h, w) or C.shape != B.shape:
        raise ValueError(f"B and C must be (B, K, N, H, W) with K={k}, H={h}, W={w}; got {tuple(B.shape)}, {tuple(C.shape)}")
    record = _flops.recording()
    if record is not None:  # FLOP accounting (diffmf info): count, do not compute
        record(_flops.scan_flops(batch, h * w, k * d, A.shape[1], D is not None))
        return u.new_zeros(u.shape, dtype=torch.float32)
    name = resolve_backend(u.device, backend)
    if name == "triton":
        from diffmf.ops.triton import selective_scan_2d_triton

        return selective_scan_2d_triton(u, delta, A, B, C, D, delta_bias, delta_softplus)
    length = h * w
    us = cross_scan(u, k).reshape(batch, k * d, length)
    ds = cross_scan_routes(delta).reshape(batch, k * d, length)
    y = selective_scan(us, ds, A, cross_scan_routes(B), cross_scan_routes(C), D, delta_bias, delta_softplus, backend=name)
    return cross_merge(y.view(batch, k, d, length), h, w)
