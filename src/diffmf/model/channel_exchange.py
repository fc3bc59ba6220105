"""Channel-exchange module (Sec. III-C): cross-modal SSD exchange + gated channel reweighting.

Cross-modal SSD exchange, eq. (4)-(6), on channels-last maps (B, H, W, C):
    T_m = CrossScan(F_m^e);  x_m, B_m, C_m = Split(Projection(T_m))        m in {ir, vi}
    F_vi^e' = CrossMerge(SSM(x_vi, B_ir, C_ir)),  F_ir^e' = CrossMerge(SSM(x_ir, B_vi, C_vi))
Each modality keeps its own step size dt (it is computed with x) and its own A, D.
Tables IV/V change which B, C each modality scans with (:func:`bc_sources`).
With ``block="restormer"`` (Table VII) the exchange is its attention dual (SSD: C~Q, B~K,
x~V): channel attention with the other modality's queries and keys over one's own values.

Channel reweighting, eq. (7)-(8):
    F_ir^e'' = (F_ir^e' + alpha F_ir^e) * sigma(W_ir F_ir^e')
    F_vi^e'' = (F_vi^e' + beta  F_vi^e) * sigma(W_vi F_vi^e')
    omega    = sigma(W_omega GAP(Concat(F_ir^e, F_ir^e')))            (B, 1, 1, C)
    F_ir^c   = (1 - omega) F_ir^e'' + omega F_vi^e''
    F_vi^c   = (1 - omega) F_vi^e'' + omega F_ir^e''
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from diffmf.model.blocks import make_ss2d
from diffmf.model.config import ModelConfig
from diffmf.model.layers import channel_mean
from diffmf.model.restormer import MDTA
from diffmf.ops.branches import run_branches
from diffmf.ops.layernorm import FastLayerNorm


def bc_sources(variant: str) -> Tuple[str, str]:
    """Which modality's (B, C) the IR scan and the VI scan use: (for_ir, for_vi)."""
    return {
        "wo_ssd_exchange": ("ir", "vi"),  # Table IV: no exchange
        "ssd_exchange_v1": ("vi", "vi"),  # eq. (15)
        "ssd_exchange_v2": ("ir", "ir"),  # eq. (16)
    }.get(variant, ("vi", "ir"))  # eq. (6): exchanged


class CrossModalSSD(nn.Module):
    """Eq. (4)-(6): two SS2D modules whose B and C are exchanged before the scan."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.embed_dim
        self.norm_ir, self.norm_vi = FastLayerNorm(c), FastLayerNorm(c)
        self.sources = bc_sources(cfg.variant)
        self.attention = cfg.block == "restormer"
        if self.attention:
            self.ssm_ir, self.ssm_vi = MDTA(c, cfg.restormer_heads), MDTA(c, cfg.restormer_heads)
        else:
            self.ssm_ir, self.ssm_vi = make_ss2d(cfg, c), make_ss2d(cfg, c)

    def forward(self, f_ir: Tensor, f_vi: Tensor) -> Tuple[Tensor, Tensor]:
        if not self.attention:
            return self._exchange_ss2d(f_ir, f_vi)
        x_ir, x_vi = self.norm_ir(f_ir), self.norm_vi(f_vi)
        q = {"ir": self.ssm_ir.qkv_maps(x_ir), "vi": self.ssm_vi.qkv_maps(x_vi)}
        s_ir, s_vi = self.sources
        out_ir = self.ssm_ir.attend(q[s_ir][0], q[s_ir][1], q["ir"][2], x_ir.shape)
        out_vi = self.ssm_vi.attend(q[s_vi][0], q[s_vi][1], q["vi"][2], x_vi.shape)
        return out_ir, out_vi

    def _exchange_ss2d(self, f_ir: Tensor, f_vi: Tensor) -> Tuple[Tensor, Tensor]:
        """Eq. (4)-(6) with SS2D; each modality's branch concurrent on CUDA at inference
        (:func:`~diffmf.ops.branches.run_branches`), joined where B and C are exchanged."""
        dev, pixels = f_ir.device, f_ir.shape[:-1].numel()
        p_ir, p_vi = run_branches([  # eq. (4)-(5)
            lambda: self.ssm_ir.project(self.norm_ir(f_ir)),
            lambda: self.ssm_vi.project(self.norm_vi(f_vi)),
        ], dev, pixels)
        p = {"ir": p_ir, "vi": p_vi}
        s_ir, s_vi = self.sources
        out_ir, out_vi = run_branches([  # eq. (6)
            lambda: self.ssm_ir.output(self.ssm_ir.scan(p_ir.x, p_ir.dt, p[s_ir].B, p[s_ir].C), p_ir.z),
            lambda: self.ssm_vi.output(self.ssm_vi.scan(p_vi.x, p_vi.dt, p[s_vi].B, p[s_vi].C), p_vi.z),
        ], dev, pixels)
        return out_ir, out_vi


class ChannelReweighting(nn.Module):
    """Eq. (7)-(8): residual with learnable alpha, beta; projection gates; omega mixing."""

    def __init__(self, dim: int, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        if residual:  # Table VI removes this term (and its parameters)
            self.alpha = nn.Parameter(torch.ones(dim))
            self.beta = nn.Parameter(torch.ones(dim))
        self.gate_ir = nn.Linear(dim, dim)
        self.gate_vi = nn.Linear(dim, dim)
        self.omega = nn.Linear(2 * dim, dim)

    def forward(self, fe_ir: Tensor, fe_vi: Tensor, fp_ir: Tensor, fp_vi: Tensor) -> Tuple[Tensor, Tensor]:
        """F^e (B, H, W, C) and F^e' (B, H, W, C) of both modalities -> (F_ir^c, F_vi^c)."""
        r_ir = fp_ir + fe_ir * self.alpha if self.residual else fp_ir  # eq. (7)
        r_vi = fp_vi + fe_vi * self.beta if self.residual else fp_vi
        g_ir = r_ir * torch.sigmoid(self.gate_ir(fp_ir))
        g_vi = r_vi * torch.sigmoid(self.gate_vi(fp_vi))
        omega = torch.sigmoid(self.omega(torch.cat([channel_mean(fe_ir), channel_mean(fp_ir)], dim=-1)))  # eq. (8)
        return (1 - omega) * g_ir + omega * g_vi, (1 - omega) * g_vi + omega * g_ir


class ChannelExchange(nn.Module):
    """Sec. III-C: (F_ir^e, F_vi^e) -> (F_ir^c, F_vi^c), each (B, H, W, C)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.exchange = CrossModalSSD(cfg)
        self.reweight = None
        if cfg.variant != "wo_channel_reweighting":
            self.reweight = ChannelReweighting(cfg.embed_dim, residual=cfg.variant != "wo_residual")

    def forward(self, fe_ir: Tensor, fe_vi: Tensor) -> Tuple[Tensor, Tensor]:
        fp_ir, fp_vi = self.exchange(fe_ir, fe_vi)
        if self.reweight is None:  # Table IV, w/o channel reweighting: F^c = F^e'
            return fp_ir, fp_vi
        return self.reweight(fe_ir, fe_vi, fp_ir, fp_vi)
