"""A distributed, resumable sampler (DistributedSampler semantics plus an exact resume point).

Each epoch draws one permutation of the dataset from ``(seed, epoch)`` (identical on every
rank), drops the tail so every rank gets the same number of samples, and gives rank ``r`` the
positions ``r, r + K, r + 2K, ...`` (K = world size). It yields ``(index, sample_seed)``
tuples: ``sample_seed`` is derived from ``(seed, epoch, position in the permutation)`` and fixes
the sample's augmentation, so a resumed run sees exactly the data an uninterrupted run would,
whatever the number of data-loader workers.
"""
from __future__ import annotations

from typing import Iterator, Tuple

import numpy as np
import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler):
    """Shuffled, sharded sample order with ``set_epoch`` and ``set_start`` (samples to skip)."""

    def __init__(self, num_samples: int, *, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True) -> None:
        if num_samples < world_size:
            raise ValueError(f"{num_samples} samples cannot be split over {world_size} processes")
        self.n = int(num_samples)
        self.seed, self.rank, self.world_size, self.shuffle = int(seed), int(rank), int(world_size), bool(shuffle)
        self.epoch = 0
        self.start = 0

    def __len__(self) -> int:
        """Samples per rank per epoch (before ``set_start``)."""
        return self.n // self.world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this rank's share of the current epoch."""
        self.start = int(start)

    def _permutation(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=g).numpy()

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        perm = self._permutation()[: len(self) * self.world_size]
        for pos in range(self.rank + self.start * self.world_size, len(perm), self.world_size):
            sample_seed = int(np.random.SeedSequence([self.seed, self.epoch, pos]).generate_state(1)[0])
            yield int(perm[pos]), sample_seed
