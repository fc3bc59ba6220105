"""Decoder ("Dec" in Fig. 2): (B, H, W, C) fused features -> (B, 1, H, W) image in [0, 1]."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class Decoder(nn.Module):
    """Conv3x3 -> LReLU -> Conv3x3 -> LReLU -> Conv3x3 -> sigmoid."""

    def __init__(self, dim: int, out_chans: int = 1) -> None:
        super().__init__()
        half = max(1, dim // 2)
        self.body = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim, half, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(half, out_chans, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.body(x.permute(0, 3, 1, 2)))
