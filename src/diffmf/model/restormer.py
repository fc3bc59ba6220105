"""Restormer transformer block (Zamir et al., CVPR 2022), the Table VII comparison model.

DIFF-MF's Table VII replaces every VSS block with a Restormer block (16 heads). Restormer's
MDTA attends across channels (attention map C/h x C/h per head), so its cost is linear in
H*W; the paper's FLOP formula 4 B (HW)^2 D instead assumes spatial attention. ``diffmf info``
reports both. Channels-last in and out: (B, H, W, C).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffmf.ops.layernorm import FastLayerNorm


class LayerNormCL(FastLayerNorm):
    """Restormer's WithBias LayerNorm over channels of (B, H, W, C) (Triton on CUDA tensors)."""


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: per head, softmax(Q K^T * t) V over channels."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1)
        self.qkv_dw = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3)
        self.proj = nn.Conv2d(dim, dim, 1)

    def qkv_maps(self, x: Tensor) -> tuple:
        """(B, H, W, C) -> q, k, v each (B, heads, C/heads, H*W)."""
        b, h, w, c = x.shape
        qkv = self.qkv_dw(self.qkv(x.permute(0, 3, 1, 2)))
        return tuple(t.reshape(b, self.heads, c // self.heads, h * w) for t in qkv.chunk(3, dim=1))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, shape: tuple) -> Tensor:
        """Channel attention of (B, heads, c, L) q, k, v -> (B, H, W, C)."""
        b, h, w, c = shape
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        out = (attn @ v).reshape(b, c, h, w)
        return self.proj(out).permute(0, 2, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_maps(x)
        return self.attend(q, k, v, x.shape)


class GDFN(nn.Module):
    """Gated-Dconv feed-forward network: (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2)
        self.project_out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x.permute(0, 3, 1, 2))).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2).permute(0, 2, 3, 1)


class RestormerBlock(nn.Module):
    """x + MDTA(LN(x)), then x + GDFN(LN(x)); (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, dim: int, *, heads: int = 16, ffn_expansion: float = 2.66) -> None:
        super().__init__()
        self.norm1 = LayerNormCL(dim)
        self.attn = MDTA(dim, heads)
        self.norm2 = LayerNormCL(dim)
        self.ffn = GDFN(dim, ffn_expansion)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))
