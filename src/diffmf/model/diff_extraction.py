"""Difference-driven feature extraction (Sec. III-B, Algorithm 1).

One stage n, on channels-last maps (B, H, W, C):
    1-2: F_vi^self <- VSS_vi(F_vi^self),  F_ir^self <- VSS_ir(F_ir^self)      (weight-dependent)
    3:   F_m^share <- VSS_share(Conv_share(F_m^share)) for m in {vi, ir}      (weight-shared)
    4:   Diff = tanh |F_vi^share - F_ir^share|
    5:   F_ir^self <- (1 - Diff) F_ir^self + Diff F_vi^self
    6:   F_vi^self <- (1 - Diff) F_vi^self + Diff F_ir^self   (with the updated F_ir^self)
The ablations of Tables II and III only change lines 5-6 (:func:`difference_guidance`).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from diffmf.model.blocks import make_blocks
from diffmf.model.config import ModelConfig
from diffmf.model.layers import ConvCL
from diffmf.ops.branches import run_branches

GUIDANCE_MODES = ("sequential_ir_first", "sequential_vi_first", "parallel", "add")


def difference_map(share_vi: Tensor, share_ir: Tensor) -> Tensor:
    """Algorithm 1 line 4: Diff = tanh|F_vi^share - F_ir^share|, values in [0, 1)."""
    return torch.tanh((share_vi - share_ir).abs())


def difference_guidance(
    self_ir: Tensor, self_vi: Tensor, diff: Tensor, mode: str = "sequential_ir_first",
    share_ir: Tensor = None, share_vi: Tensor = None,
) -> Tuple[Tensor, Tensor]:
    """Algorithm 1 lines 5-6 and their ablations; returns (F_ir^self', F_vi^self').

    ``sequential_ir_first`` (DIFF-MF): IR first, then VI with the updated IR.
    ``sequential_vi_first`` (diff guide v1, Table III): VI first, then IR with the updated VI.
    ``parallel`` (diff guide v2, Table III): both from the old features.
    ``add`` (w/o difference guidance, Table II): F^self + F^share, no Diff.
    """
    if mode == "sequential_ir_first":
        ir = (1 - diff) * self_ir + diff * self_vi
        vi = (1 - diff) * self_vi + diff * ir
    elif mode == "sequential_vi_first":
        vi = (1 - diff) * self_vi + diff * self_ir
        ir = (1 - diff) * self_ir + diff * vi
    elif mode == "parallel":
        ir = (1 - diff) * self_ir + diff * self_vi
        vi = (1 - diff) * self_vi + diff * self_ir
    elif mode == "add":
        if share_ir is None or share_vi is None:
            raise ValueError("mode 'add' needs the shared-branch features")
        ir, vi = self_ir + share_ir, self_vi + share_vi
    else:
        raise ValueError(f"unknown guidance mode {mode!r}; choose one of {GUIDANCE_MODES}")
    return ir, vi


def guidance_mode(variant: str) -> str:
    return {
        "diff_guide_v1": "sequential_vi_first",
        "diff_guide_v2": "parallel",
        "wo_difference_guidance": "add",
    }.get(variant, "sequential_ir_first")


class DiffStage(nn.Module):
    """One stage of Algorithm 1: self branches, shared Conv + VSS branch, guidance."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.embed_dim
        self.self_ir = make_blocks(cfg, c, cfg.self_depth)
        self.self_vi = make_blocks(cfg, c, cfg.self_depth)
        self.share_conv = ConvCL(c, c, 3)
        self.share_blocks = make_blocks(cfg, c, cfg.share_depth)
        self.mode = guidance_mode(cfg.variant)

    def forward(self, self_ir: Tensor, self_vi: Tensor, share_ir: Tensor, share_vi: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        self_vi, self_ir, shared = run_branches([  # independent: concurrent on CUDA at inference
            lambda: self.self_vi(self_vi),  # line 1
            lambda: self.self_ir(self_ir),  # line 2
            lambda: self.share_blocks(self.share_conv(torch.cat([share_vi, share_ir], dim=0))),  # line 3, one batch
        ], self_ir.device, pixels=self_ir.shape[:-1].numel())
        share_vi, share_ir = shared.chunk(2, dim=0)
        diff = difference_map(share_vi, share_ir)  # line 4
        ir, vi = difference_guidance(self_ir, self_vi, diff, self.mode, share_ir, share_vi)  # lines 5-6
        return ir, vi, share_ir, share_vi


class DiffDrivenExtractor(nn.Module):
    """N stages of Algorithm 1; returns (F_ir^e, F_vi^e), each (B, H, W, C)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.stages = nn.ModuleList([DiffStage(cfg) for _ in range(cfg.num_stages)])

    def forward(self, f_ir: Tensor, f_vi: Tensor) -> Tuple[Tensor, Tensor]:
        self_ir, self_vi, share_ir, share_vi = f_ir, f_vi, f_ir, f_vi
        for stage in self.stages:
            self_ir, self_vi, share_ir, share_vi = stage(self_ir, self_vi, share_ir, share_vi)
        return self_ir, self_vi
