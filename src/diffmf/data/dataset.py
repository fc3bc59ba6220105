"""Paired infrared / visible dataset for training and validation.

Each item is a dict::

    {"ir": (1, h, w) float32 in [0, 1],    # infrared (gray; RGB infrared -> its luminance)
     "vi": (1, h, w) float32 in [0, 1],    # visible luminance Y (BT.601 full range)
     "name": str}

With ``crop_size > 0`` the pair is cut to the same random ``crop_size`` window (images smaller
than the crop are reflect-padded) and, with ``augment``, flipped. Keys may be an index or an
``(index, seed)`` tuple as produced by :class:`~diffmf.data.sampler.ResumableSampler`; the
seed fixes that sample's crop and flips, so augmentation does not depend on worker processes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from diffmf.data.color import split_luma, to_gray
from diffmf.data.io import read_image
from diffmf.data.pairs import Pair, PairingError, collect_pairs
from diffmf.data.transforms import random_crop_pair, random_flip_pair

Key = Union[int, Tuple[int, int]]


def load_pair(pair: Pair, *, stretch16: bool = False) -> Tuple[np.ndarray, np.ndarray, "np.ndarray | None"]:
    """Read one pair: ``(ir (H, W), vi_y (H, W), vi_cbcr (H, W, 2) or None)``, float32 in [0, 1].

    Raises:
        ImageReadError: a file cannot be read.  PairingError: the two sizes differ.
    """
    ir = to_gray(read_image(pair.ir, stretch16=stretch16))
    vi_y, cbcr = split_luma(read_image(pair.vi, stretch16=stretch16))
    if ir.shape != vi_y.shape:
        raise PairingError(
            f"size mismatch: {pair.ir} is {ir.shape[1]}x{ir.shape[0]} but {pair.vi} is {vi_y.shape[1]}x{vi_y.shape[0]}"
        )
    return ir, vi_y, cbcr


class PairedImageDataset(Dataset):
    """Registered pairs from one or several roots (see :func:`diffmf.data.pairs.collect_pairs`)."""

    def __init__(
        self,
        roots: Sequence[Union[str, Path]] = (),
        dirs: Sequence[Tuple[Union[str, Path], Union[str, Path]]] = (),
        *,
        crop_size: int = 128,
        augment: bool = True,
        stretch16: bool = False,
        strict: bool = True,
        pairs: Sequence[Pair] = (),
    ) -> None:
        self.pairs: List[Pair] = list(pairs) if pairs else collect_pairs(roots, dirs, strict=strict)
        self.crop_size = int(crop_size)
        self.augment = bool(augment)
        self.stretch16 = bool(stretch16)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: Key) -> Dict[str, object]:
        index, seed = (key if isinstance(key, tuple) else (int(key), int(key)))
        pair = self.pairs[index]
        ir, vi, _ = load_pair(pair, stretch16=self.stretch16)
        if self.crop_size > 0 or self.augment:
            rng = np.random.default_rng(seed)
            if self.crop_size > 0:
                ir, vi = random_crop_pair(ir, vi, self.crop_size, rng)
            if self.augment:
                ir, vi = random_flip_pair(ir, vi, rng)
        return {
            "ir": torch.from_numpy(np.ascontiguousarray(ir, dtype=np.float32))[None],
            "vi": torch.from_numpy(np.ascontiguousarray(vi, dtype=np.float32))[None],
            "name": pair.name,
        }
