"""Shallow embedding of one modality: (B, 1, H, W) in [0, 1] -> (B, H, W, C)."""
from __future__ import annotations

from torch import Tensor, nn


class ShallowEmbed(nn.Module):
    """Conv3x3 -> LeakyReLU -> Conv3x3, returned channels-last (the first box of Fig. 2)."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_chans, dim, 3, padding=1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(dim, dim, 3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).permute(0, 2, 3, 1)
