"""VMamba's 4-route cross-scan and cross-merge (SS2D), in plain PyTorch.

Route k reads the H x W grid in its own order:
    0: row-major        1: column-major        2: row-major reversed   3: column-major reversed
``cross_scan`` writes the K sequences out; ``cross_merge`` maps each route's output back to
its grid position and sums the routes. The fused GPU kernels read the grid in route order
directly instead (no K-fold copy); these functions are their readable twins.
"""
from __future__ import annotations

import torch
from torch import Tensor

ROUTES: int = 4


def cross_scan(x: Tensor, routes: int = ROUTES) -> Tensor:
    """(B, C, H, W) -> (B, K, C, L), L = H*W, K = ``routes`` (1, 2 or 4)."""
    b, c, h, w = x.shape
    rows = x.reshape(b, c, h * w)
    if routes == 1:
        return rows.unsqueeze(1)
    cols = x.transpose(2, 3).reshape(b, c, h * w)
    if routes == 2:
        return torch.stack([rows, cols], dim=1)
    if routes != 4:
        raise ValueError(f"routes must be 1, 2 or 4, got {routes}")
    return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)


def cross_merge(y: Tensor, h: int, w: int) -> Tensor:
    """(B, K, C, L) route outputs -> (B, C, H, W): each route back to the grid, summed."""
    b, k, c, length = y.shape
    if length != h * w:
        raise ValueError(f"sequence length {length} != {h}x{w}")
    if k == 4:
        y = y[:, :2] + y[:, 2:].flip(-1)
        k = 2
    out = y[:, 0]
    if k == 2:
        out = out + y[:, 1].reshape(b, c, w, h).transpose(2, 3).reshape(b, c, length)
    elif k != 1:
        raise ValueError(f"routes must be 1, 2 or 4, got {k}")
    return out.reshape(b, c, h, w)


def cross_scan_routes(x: Tensor) -> Tensor:
    """(B, K, C, H, W) per-route maps -> (B, K, C, L): route k read in route k's order.

    Used for tensors that already differ per route (delta, B, C after the per-route
    projections), so each route's sequence is taken from its own map.
    """
    b, k, c, h, w = x.shape
    seqs = []
    for r in range(k):
        xr = x[:, r]
        s = xr.reshape(b, c, h * w) if r % 2 == 0 else xr.transpose(2, 3).reshape(b, c, h * w)
        seqs.append(s.flip(-1) if r >= 2 else s)
    return torch.stack(seqs, dim=1)
