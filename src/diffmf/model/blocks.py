"""The block factory: VSS block (the paper) or Restormer block (Table VII), by config."""
from __future__ import annotations

from torch import nn

from diffmf.model.config import ModelConfig
from diffmf.model.restormer import RestormerBlock
from diffmf.model.vss import SS2D, VSSBlock


def ss2d_kwargs(cfg: ModelConfig) -> dict:
    return dict(d_state=cfg.d_state, ssm_ratio=cfg.ssm_ratio, dt_rank=cfg.rank, d_conv=cfg.d_conv, routes=cfg.routes)


def make_block(cfg: ModelConfig, dim: int) -> nn.Module:
    """One token-mixing block on (B, H, W, dim): VSS or Restormer according to ``cfg.block``."""
    if cfg.block == "restormer":
        return RestormerBlock(dim, heads=cfg.restormer_heads, ffn_expansion=cfg.restormer_ffn)
    return VSSBlock(dim, mlp_ratio=cfg.mlp_ratio, drop_path=cfg.drop_path, **ss2d_kwargs(cfg))


def make_blocks(cfg: ModelConfig, dim: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*[make_block(cfg, dim) for _ in range(depth)])


def make_ss2d(cfg: ModelConfig, dim: int) -> SS2D:
    return SS2D(dim, **ss2d_kwargs(cfg))
