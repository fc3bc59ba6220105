"""Tiled inference with blended overlaps, for images too large to fuse in one pass.

The image is covered by ``tile x tile`` windows that overlap by at least ``overlap`` pixels
(the last window of a row/column is aligned to the border). Each window's output is weighted by
a separable ramp that rises across the overlap with its previous neighbour and falls across the
overlap with its next one (``cosine``: ``sin^2``; ``linear``), and is 1 elsewhere, including at
the image borders; the weighted sum is divided by the summed weights. Where two windows overlap
the ramps sum to 1, so the result is a smooth cross-fade with no seams.
"""
from __future__ import annotations

import math
from typing import Callable, List

import torch


def tile_starts(length: int, tile: int, overlap: int) -> List[int]:
    """Window start offsets along one axis covering ``[0, length)``."""
    if tile <= 0:
        raise ValueError(f"tile must be positive, got {tile}")
    if length <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile), got {overlap} for tile {tile}")
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def _ramp(n: int, kind: str, dtype: torch.dtype, device) -> torch.Tensor:
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # (0, 1), never 0
    w = torch.sin(0.5 * math.pi * t) ** 2 if kind == "cosine" else t
    return w.to(dtype=dtype, device=device)


def axis_weights(starts: List[int], tile: int, length: int, kind: str, dtype: torch.dtype, device) -> List[torch.Tensor]:
    """One 1-D weight vector per window along an axis (ramps only where windows overlap)."""
    out = []
    for i, s in enumerate(starts):
        n = min(tile, length - s)
        w = torch.ones(n, dtype=dtype, device=device)
        if i > 0:
            lead = starts[i - 1] + tile - s
            if lead > 0:
                w[:lead] = _ramp(lead, kind, dtype, device)
        if i + 1 < len(starts):
            trail = s + tile - starts[i + 1]
            if trail > 0:
                w[n - trail:] = torch.flip(_ramp(trail, kind, dtype, device), [0])
        out.append(w)
    return out


def tiled_apply(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ir: torch.Tensor,
    vi: torch.Tensor,
    tile: int,
    overlap: int = 32,
    kind: str = "cosine",
) -> torch.Tensor:
    """Apply ``fn(ir_tile, vi_tile) -> fused_tile`` over overlapping windows and blend.

    Args:
        ir, vi: ``(B, 1, H, W)``.
        tile: window side; ``overlap``: minimum overlap between neighbours (< tile).
    Returns:
        ``(B, 1, H, W)`` float32, on the inputs' device.
    """
    if kind not in ("cosine", "linear"):
        raise ValueError(f"ramp must be 'cosine' or 'linear', got {kind!r}")
    B, _, H, W = ir.shape
    ys, xs = tile_starts(H, tile, overlap), tile_starts(W, tile, overlap)
    wy = axis_weights(ys, tile, H, kind, torch.float32, ir.device)
    wx = axis_weights(xs, tile, W, kind, torch.float32, ir.device)
    acc = torch.zeros(B, 1, H, W, dtype=torch.float32, device=ir.device)
    norm = torch.zeros(1, 1, H, W, dtype=torch.float32, device=ir.device)
    for y0, wyv in zip(ys, wy):
        for x0, wxv in zip(xs, wx):
            sl = (slice(None), slice(None), slice(y0, y0 + tile), slice(x0, x0 + tile))
            out = fn(ir[sl], vi[sl]).float()
            w = wyv[:, None] * wxv[None, :]
            acc[sl] += out * w
            norm[sl] += w
    return acc / norm
