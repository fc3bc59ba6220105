"""Synthetic registered pairs for tests, smoke runs and benchmarks (no downloads needed).

The infrared image has warm blobs on a cool, smooth background; the visible image has
textured stripes and a few of the same objects' edges, in colour. Both are deterministic in
``seed``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple, Union

import numpy as np

from diffmf.data.io import write_image


def synthetic_pair(height: int, width: int, seed: int = 0, rgb: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """``(ir (H, W), vi (H, W, 3) or (H, W))`` float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    ir = 0.15 + 0.1 * yy / max(height - 1, 1)
    for _ in range(3):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(2, max(3, min(height, width) / 4))
        ir = ir + 0.7 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    ir = np.clip(ir + 0.03 * rng.standard_normal((height, width)), 0, 1).astype(np.float32)
    f = rng.uniform(0.2, 0.8)
    base = 0.5 + 0.3 * np.sin(f * xx + 0.3 * yy) * np.cos(0.15 * yy)
    chans = [np.clip(base * rng.uniform(0.6, 1.2) + 0.05 * rng.standard_normal((height, width)), 0, 1) for _ in range(3)]
    vi = np.stack(chans, axis=-1).astype(np.float32)
    if not rgb:
        vi = vi.mean(axis=-1).astype(np.float32)
    return ir, vi


def make_synthetic_pairs(root: Union[str, Path], n: int = 8, size: Tuple[int, int] = (40, 48), *, seed: int = 0,
                         rgb: bool = True, ir_ext: str = ".png", vi_ext: str = ".png") -> Path:
    """Write ``n`` pairs as ``root/ir/pair_XXX<ir_ext>`` and ``root/vi/pair_XXX<vi_ext>``; returns ``root``."""
    root = Path(root)
    h, w = size
    for i in range(n):
        ir, vi = synthetic_pair(h, w, seed * 1000 + i, rgb)
        write_image(root / "ir" / f"pair_{i:03d}{ir_ext}", ir)
        write_image(root / "vi" / f"pair_{i:03d}{vi_ext}", vi)
    return root
