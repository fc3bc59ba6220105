"""Colour conversion between RGB and YCbCr (ITU-R BT.601, full range, as JPEG/PIL/OpenCV).

All functions take ``[0, 1]`` values with channels last for numpy ``(H, W, 3)`` and channels
first for torch ``(..., 3, H, W)``; Cb and Cr are offset by 0.5 (128/255 in 8-bit terms)::

    Y  =  0.299    R + 0.587    G + 0.114    B
    Cb = -0.168736 R - 0.331264 G + 0.5      B + 0.5
    Cr =  0.5      R - 0.418688 G - 0.081312 B + 0.5

The network fuses the infrared image with the visible luminance Y; the visible Cb, Cr are put
back after fusion (:func:`ycbcr_to_rgb`).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

_RGB2YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float64
)
_YCBCR2RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]], dtype=np.float64)
_OFFSET = np.array([0.0, 0.5, 0.5])


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` RGB in [0, 1] -> ``(H, W, 3)`` float32 Y, Cb, Cr in [0, 1]."""
    out = rgb.astype(np.float64) @ _RGB2YCBCR.T + _OFFSET
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` Y, Cb, Cr in [0, 1] -> ``(H, W, 3)`` float32 RGB in [0, 1] (clipped)."""
    out = (ycbcr.astype(np.float64) - _OFFSET) @ _YCBCR2RGB.T
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def split_luma(img: np.ndarray) -> Tuple[np.ndarray, np.ndarray | None]:
    """Split an image into luminance and chroma.

    Args:
        img: ``(H, W)`` gray or ``(H, W, 3)`` RGB in [0, 1].
    Returns:
        ``(y, cbcr)``: ``y`` ``(H, W)`` float32; ``cbcr`` ``(H, W, 2)`` for RGB input, else ``None``.
    """
    if img.ndim == 2:
        return img.astype(np.float32, copy=False), None
    if img.ndim == 3 and img.shape[2] == 3:
        ycc = rgb_to_ycbcr(img)
        return np.ascontiguousarray(ycc[..., 0]), np.ascontiguousarray(ycc[..., 1:])
    raise ValueError(f"expected (H, W) or (H, W, 3) image, got shape {img.shape}")


def merge_luma(y: np.ndarray, cbcr: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`split_luma`: ``(H, W)`` Y (+ ``(H, W, 2)`` CbCr) -> gray or RGB in [0, 1]."""
    y = np.clip(y, 0.0, 1.0).astype(np.float32, copy=False)
    if cbcr is None:
        return y
    return ycbcr_to_rgb(np.concatenate([y[..., None], cbcr], axis=-1))


def to_gray(img: np.ndarray) -> np.ndarray:
    """Gray ``(H, W)`` from gray or RGB: RGB becomes its BT.601 luminance Y (used for infrared)."""
    return split_luma(img)[0]


def rgb_to_ycbcr_torch(rgb: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` RGB in [0, 1] -> ``(..., 3, H, W)`` YCbCr in [0, 1] (same dtype)."""
    m = torch.as_tensor(_RGB2YCBCR, dtype=rgb.dtype, device=rgb.device)
    off = torch.as_tensor(_OFFSET, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    return (torch.einsum("ij,...jhw->...ihw", m, rgb) + off).clamp(0.0, 1.0)


def ycbcr_to_rgb_torch(ycbcr: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` YCbCr in [0, 1] -> ``(..., 3, H, W)`` RGB in [0, 1] (clipped)."""
    m = torch.as_tensor(_YCBCR2RGB, dtype=ycbcr.dtype, device=ycbcr.device)
    off = torch.as_tensor(_OFFSET, dtype=ycbcr.dtype, device=ycbcr.device).view(3, 1, 1)
    return torch.einsum("ij,...jhw->...ihw", m, ycbcr - off).clamp(0.0, 1.0)
