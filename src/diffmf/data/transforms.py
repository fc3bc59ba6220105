"""Paired augmentations for training: the same random crop and flips on both modalities.

Arrays are ``(H, W)`` float32; randomness comes from an explicit ``numpy.random.Generator``
so that a sample's augmentation depends only on its seed (exact resume, any worker count).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


def pad_to(arr: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad ``(H, W)`` so both sides are at least ``size`` (edge-pad if too small to reflect)."""
    ph, pw = max(0, size - arr.shape[0]), max(0, size - arr.shape[1])
    if not (ph or pw):
        return arr
    mode = "reflect" if ph < arr.shape[0] and pw < arr.shape[1] else "edge"
    return np.pad(arr, ((0, ph), (0, pw)), mode=mode)


def random_crop_pair(a: np.ndarray, b: np.ndarray, size: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """The same random ``size x size`` window of two equal-size ``(H, W)`` arrays (padded if smaller)."""
    if a.shape != b.shape:
        raise ValueError(f"pair sizes differ: {a.shape} vs {b.shape}")
    a, b = pad_to(a, size), pad_to(b, size)
    h, w = a.shape
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return a[top:top + size, left:left + size], b[top:top + size, left:left + size]


def random_flip_pair(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical flips, each with probability 0.5, applied to both arrays."""
    if rng.random() < 0.5:
        a, b = a[:, ::-1], b[:, ::-1]
    if rng.random() < 0.5:
        a, b = a[::-1, :], b[::-1, :]
    return np.ascontiguousarray(a), np.ascontiguousarray(b)
