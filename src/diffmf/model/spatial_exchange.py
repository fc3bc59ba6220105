"""Spatial-exchange module (Sec. III-D, eq. 9-10, Fig. 2 right).

At each scale the two modalities' maps M_ir, M_vi (B, H, W, C) are re-arranged into three
cross-modal token maps (read off the enlarged Fig. 2; ChangeMamba's interleave/split/cat):
    column: ir and vi interleaved pixel by pixel along the width   -> (B, H, 2W, C)
            (row-major scan order: ir1 vi1 ir2 vi2 ...)
    row:    each IR row followed by the matching visible row       -> (B, H, 2W, C)
            (ir1 ir2 ... | vi1 vi2 ...)
    concat: the two maps stacked as channels                       -> (B, H, W, 2C)
Each goes through its own VSS block; column and row outputs are mapped back onto the
modalities' grid (the ir and vi positions are split apart and averaged), the concat output is
projected 2C -> C before its block (ChangeMamba's order), and the three results are
concatenated (3C) and projected to C. Three scales (high = full resolution, middle = 1/2,
low = 1/4, reached by learned patch-merging convolutions) are fused coarse-to-fine
(upsample, concatenate, project) into one (B, H, W, C) map for the decoder.
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch
from torch import Tensor, nn

from diffmf.model.blocks import make_block
from diffmf.model.config import ModelConfig
from diffmf.model.layers import ConvCL, upsample_cl
from diffmf.ops.branches import run_branches


def column_arrange(ir: Tensor, vi: Tensor) -> Tensor:
    """(B, H, W, C) x 2 -> (B, H, 2W, C) with ir at even and vi at odd columns."""
    b, h, w, c = ir.shape
    return torch.stack([ir, vi], dim=3).reshape(b, h, 2 * w, c)


def column_split(y: Tensor) -> Tuple[Tensor, Tensor]:
    """Inverse of :func:`column_arrange`: (B, H, 2W, C) -> (ir part, vi part)."""
    b, h, w2, c = y.shape
    pair = y.reshape(b, h, w2 // 2, 2, c)
    return pair[:, :, :, 0], pair[:, :, :, 1]


def row_arrange(ir: Tensor, vi: Tensor) -> Tensor:
    """(B, H, W, C) x 2 -> (B, H, 2W, C): each IR row, then the matching visible row."""
    return torch.cat([ir, vi], dim=2)


def row_split(y: Tensor) -> Tuple[Tensor, Tensor]:
    """Inverse of :func:`row_arrange`."""
    return y.chunk(2, dim=2)


def concat_arrange(ir: Tensor, vi: Tensor) -> Tensor:
    """(B, H, W, C) x 2 -> (B, H, W, 2C)."""
    return torch.cat([ir, vi], dim=-1)


class CrossModalScan(nn.Module):
    """One scale of the spatial exchange: (M_ir, M_vi) -> (B, H, W, C)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.embed_dim
        self.column = make_block(cfg, c)
        self.row = make_block(cfg, c)
        self.concat_proj = nn.Linear(2 * c, c)
        self.concat = make_block(cfg, c)
        self.proj = nn.Linear(3 * c, c)

    def forward(self, m_ir: Tensor, m_vi: Tensor) -> Tensor:
        def column() -> Tensor:
            col_ir, col_vi = column_split(self.column(column_arrange(m_ir, m_vi)))
            return (col_ir + col_vi) * 0.5

        def row() -> Tensor:
            row_ir, row_vi = row_split(self.row(row_arrange(m_ir, m_vi)))
            return (row_ir + row_vi) * 0.5

        def concat() -> Tensor:
            return self.concat(self.concat_proj(concat_arrange(m_ir, m_vi)))

        # the three token maps are independent: concurrent on CUDA at inference
        return self.proj(torch.cat(run_branches([column, row, concat], m_ir.device, pixels=m_ir.shape[:-1].numel()),
                                   dim=-1))


class SpatialExchange(nn.Module):
    """Multi-scale cross-modal state space scanning: (F_ir^c, F_vi^c) -> (B, H, W, C).

    H and W must be divisible by 2^(levels-1) (the network pads its input accordingly).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c, levels = cfg.embed_dim, cfg.se_levels
        self.down_ir = nn.ModuleList([nn.Identity()] + [ConvCL(c, c, 2**l, stride=2**l) for l in range(1, levels)])
        self.down_vi = nn.ModuleList([nn.Identity()] + [ConvCL(c, c, 2**l, stride=2**l) for l in range(1, levels)])
        self.levels = nn.ModuleList([CrossModalScan(cfg) for _ in range(levels)])
        self.merge = nn.ModuleList([nn.Linear(2 * c, c) for _ in range(levels - 1)])

    def forward(self, f_ir: Tensor, f_vi: Tensor) -> Tensor:
        def scale(lvl: nn.Module, d_ir: nn.Module, d_vi: nn.Module) -> Callable[[], Tensor]:
            return lambda: lvl(d_ir(f_ir), d_vi(f_vi))

        # the scales are independent until they are merged: concurrent on CUDA at inference
        outs = run_branches([scale(*m) for m in zip(self.levels, self.down_ir, self.down_vi)], f_ir.device,
                            pixels=f_ir.shape[:-1].numel())
        y = outs[-1]
        for l in range(len(outs) - 2, -1, -1):  # coarse to fine
            y = self.merge[l](torch.cat([outs[l], upsample_cl(y, outs[l].shape[1:3])], dim=-1))
        return y
