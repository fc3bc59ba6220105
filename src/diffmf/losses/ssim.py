"""Differentiable SSIM for the training loss (eq. 11).

The lineage DIFF-MF follows (SwinFusion / MambaDFuse, via KAIR's ``loss_ssim.py``, itself the
``pytorch-ssim`` implementation) computes SSIM with an 11x11 Gaussian window (sigma 1.5),
zero padding of ``window_size // 2`` (same-size SSIM map), ``C1 = 0.01**2``, ``C2 = 0.03**2``
for data in [0, 1], and the mean of the map. This module reproduces that convention; it is a
loss, not the evaluation metric (see :mod:`diffmf.metrics` for SSIM as a metric).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

C1 = 0.01 ** 2
C2 = 0.03 ** 2


def gaussian_window(window_size: int = 11, sigma: float = 1.5, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 2-D Gaussian ``(1, 1, k, k)`` (outer product of the 1-D window)."""
    x = torch.arange(window_size, dtype=torch.float64) - (window_size - 1) / 2.0
    g = torch.exp(-(x ** 2) / (2.0 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] @ g[None, :]).to(dtype=dtype, device=device)[None, None]


@functools.lru_cache(maxsize=None)
def _window(window_size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:func:`gaussian_window`, made once per size, dtype and device (no host-to-device copy
    per call: the training step may be captured in a CUDA graph)."""
    return gaussian_window(window_size, sigma, dtype=dtype, device=device)


def ssim_map(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of ``x`` and ``y``, ``(B, C, H, W)`` in [0, 1] -> ``(B, C, H, W)``."""
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes differ {tuple(x.shape)} vs {tuple(y.shape)}")
    c = x.shape[1]
    w = _window(window_size, sigma, x.dtype, x.device).expand(c, 1, window_size, window_size)
    pad = window_size // 2

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, padding=pad, groups=c)

    mu_x, mu_y = filt(x), filt(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    s_xx = filt(x * x) - mu_xx
    s_yy = filt(y * y) - mu_yy
    s_xy = filt(x * y) - mu_xy
    return ((2 * mu_xy + C1) * (2 * s_xy + C2)) / ((mu_xx + mu_yy + C1) * (s_xx + s_yy + C2))


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM over batch, channels and pixels (a scalar tensor); 1 for identical images."""
    return ssim_map(x, y, window_size, sigma).mean()
