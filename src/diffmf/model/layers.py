"""Small building blocks shared by the DIFF-MF modules (channels-last feature maps)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvCL(nn.Module):
    """A 2-D convolution applied to a channels-last map: (B, H, W, Cin) -> (B, H', W', Cout)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        pad = (kernel - stride + 1) // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, groups=groups, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class DropPath(nn.Module):
    """Stochastic depth on the residual branch (identity at eval or rate 0)."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """Token MLP: Linear -> GELU -> Linear, on (..., C)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def upsample_cl(x: Tensor, size: tuple) -> Tensor:
    """Bilinear resize of a channels-last map (B, h, w, C) to (B, H, W, C)."""
    y = F.interpolate(x.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False)
    return y.permute(0, 2, 3, 1)


def pad_to_multiple(x: Tensor, multiple: int) -> tuple:
    """Pad (B, C, H, W) at the bottom/right to multiples of ``multiple``; returns (x, (H, W)).

    Reflection where the image is large enough, edge replication otherwise (thin strips):
    never a resize, and the caller crops back to (H, W).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if (ph < h and pw < w) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def channel_mean(x: Tensor) -> Tensor:
    """Global average over H, W of (B, H, W, C) -> (B, 1, 1, C)."""
    return x.mean(dim=(1, 2), keepdim=True)


__all__ = ["ConvCL", "DropPath", "Mlp", "channel_mean", "pad_to_multiple", "upsample_cl", "torch"]
