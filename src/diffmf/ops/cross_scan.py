"""VMamba's 4-route cross-scan and cross-merge (SS2D), in plain PyTorch.

Route k reads the H x W grid in its own order:
    0: row-major        1: column-major        2: row-major reversed   3: column-major reversed
``cross_scan`` writes the K sequences out; ``cross_merge`` maps each route's output back to
its grid position and sums the routes. The fused GPU kernels read the grid in route order
directly instead (no K-fold copy); these functions are their readable twins.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

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


class FrameMaps(NamedTuple):
    """A per-route map (B, K, P, H, W) held as its two frames: ``rows`` = routes 0, 2 and
    ``cols`` = routes 1, 3 (``x[:, 0::2]`` and ``x[:, 1::2]``), each (B, K', P, H, W) with
    its own strides.

    Values are those of the dense map; only the memory layout differs. The fused 2-D scan
    reads the rows routes from W x H (transposed) maps and the columns routes from H x W
    ones, so a producer that writes each frame in the layout its sweeps read
    (:func:`diffmf.ops.xproj.x_proj`) saves the scan its relayout copies. Every 2-D scan
    entry point takes a FrameMaps wherever it takes the dense (B, K, P, H, W) map.
    """

    rows: Tensor
    cols: Tensor

    @property
    def shape(self) -> Tuple[int, ...]:
        """Shape of the dense map (B, K, P, H, W)."""
        b, kr, p, h, w = self.rows.shape
        return (b, kr + self.cols.shape[1], p, h, w)

    @property
    def dtype(self) -> torch.dtype:
        return self.rows.dtype

    @property
    def device(self) -> torch.device:
        return self.rows.device

    def dense(self) -> Tensor:
        """The (B, K, P, H, W) map, contiguous (a copy)."""
        b, k, p, h, w = self.shape
        out = torch.empty(b, k, p, h, w, dtype=self.dtype, device=self.device)
        out[:, 0::2] = self.rows
        out[:, 1::2] = self.cols
        return out


def dense_map(x: "Tensor | FrameMaps") -> Tensor:
    """``x`` as a (B, K, P, H, W) tensor (:meth:`FrameMaps.dense` for frame maps)."""
    return x.dense() if isinstance(x, FrameMaps) else x


class RouteSums(NamedTuple):
    """The fused 2-D scan's output before its cross-merge: float32 route outputs per frame,
    ``cols`` (NC, B, D, H, W) for the columns routes and ``rows`` (NR, B, D, W, H), transposed,
    for the rows routes (the rows frame runs on W x H maps). The merged output is

        y = (cols[0] + cols[1] + ...) + (rows[0] + rows[1] + ...)^T        (in this order)

    (what the scan's own merge pass computes). A consumer that reads y once anyway (SS2D's
    gated output norm, :func:`diffmf.ops.layernorm.merged_layer_norm`) sums the slots as it
    reads them instead: y is never written."""

    cols: Tensor
    rows: Tensor

    @property
    def shape(self) -> Tuple[int, ...]:
        """Shape of the merged output (B, D, H, W)."""
        _, b, d, w, h = self.rows.shape
        return (b, d, h, w)

    def merge(self) -> Tensor:
        """The merged output y (B, D, H, W) float32, summed in the order above."""
        r = self.rows[0]
        for i in range(1, self.rows.shape[0]):
            r = r + self.rows[i]
        y = r.transpose(-1, -2)
        if self.cols.shape[0]:
            c = self.cols[0]
            for i in range(1, self.cols.shape[0]):
                c = c + self.cols[i]
            y = c + y
        return y.contiguous()
