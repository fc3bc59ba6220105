"""DIFF-MF model configuration: a typed dataclass, named presets and ablation variants.

Every ablation of the paper's Tables II-VI is a ``variant`` value; Table VII's transformer
model is ``block="restormer"``. Presets: ``diffmf_paper`` (embedding dim 32, SSM state
N = 16, as in the paper), ``diffmf_tiny`` (for tests), ``diffmf_transformer`` (Table VII).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

# variant name -> (paper table, what changes)
VARIANTS: Dict[str, str] = {
    "full": "DIFF-MF as published",
    "wo_feature_extraction": "Table II: no difference-driven feature extraction (shallow embedding feeds the channel exchange)",
    "wo_channel_exchange": "Table II: no channel-exchange module (F^c = F^e)",
    "wo_spatial_exchange": "Table II: spatial exchange replaced by averaging the two modalities",
    "wo_difference_guidance": "Table II: shared-branch features added to the self branches instead of Diff reweighting",
    "diff_guide_v1": "Table III: reweight the visible branch first, then infrared with the updated visible",
    "diff_guide_v2": "Table III: reweight both branches in parallel from the old features",
    "wo_ssd_exchange": "Table IV: no B/C exchange (each modality scans with its own x, B, C)",
    "wo_channel_reweighting": "Table IV: no gated channel reweighting (F^c = F^e')",
    "ssd_exchange_v1": "Table V, eq. 15: both modalities scan with the visible B, C",
    "ssd_exchange_v2": "Table V, eq. 16: both modalities scan with the infrared B, C",
    "wo_residual": "Table VI: eq. 7 without the residual F^e x alpha (beta) term",
}

BLOCKS = ("vss", "restormer")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the DIFF-MF network (defaults: the paper preset)."""

    in_chans: int = 1  # IR and visible luminance Y, one channel each
    embed_dim: int = 32  # C, "embedded dimensions is set as 32" (Sec. IV-G)
    d_state: int = 16  # N, "We set N as 16" (Sec. IV-G)
    ssm_ratio: float = 2.0  # d_inner = ssm_ratio * C (VMamba's expand)
    dt_rank: Optional[int] = None  # None: ceil(C / 16) (VMamba "auto")
    d_conv: int = 3  # depthwise conv inside SS2D
    mlp_ratio: float = 2.0  # VSS block MLP branch hidden ratio (0 disables the MLP)
    num_stages: int = 2  # N of the "x N" difference-driven stages (Fig. 2)
    self_depth: int = 1  # VSS blocks per weight-dependent branch per stage
    share_depth: int = 1  # VSS blocks of the weight-shared branch per stage
    se_levels: int = 3  # spatial exchange scales: high, middle, low
    routes: int = 4  # cross-scan routes
    block: str = "vss"  # "vss" or "restormer" (Table VII)
    restormer_heads: int = 16  # "the numbers of head in Restormer blocks is also set as 16"
    restormer_ffn: float = 2.66  # Restormer's GDFN expansion
    variant: str = "full"  # one of VARIANTS
    drop_path: float = 0.0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {sorted(VARIANTS)}")
        if self.block not in BLOCKS:
            raise ValueError(f"unknown block {self.block!r}; choose one of {BLOCKS}")
        if self.routes not in (1, 2, 4):
            raise ValueError(f"routes must be 1, 2 or 4, got {self.routes}")
        if self.se_levels < 1 or self.num_stages < 0 or self.embed_dim < 1:
            raise ValueError("se_levels >= 1, num_stages >= 0 and embed_dim >= 1 are required")

    @property
    def d_inner(self) -> int:
        return int(self.ssm_ratio * self.embed_dim)

    @property
    def rank(self) -> int:
        return self.dt_rank if self.dt_rank is not None else math.ceil(self.embed_dim / 16)

    @property
    def pad_multiple(self) -> int:
        """Inputs are padded to a multiple of this (the spatial exchange halves the size per level)."""
        return 2 ** (self.se_levels - 1)


PRESETS: Dict[str, ModelConfig] = {
    "diffmf_paper": ModelConfig(),
    "diffmf_tiny": ModelConfig(embed_dim=8, d_state=4, ssm_ratio=1.0, mlp_ratio=1.0, num_stages=1, restormer_heads=2),
    "diffmf_transformer": ModelConfig(block="restormer"),
}


def preset(name: str, **overrides) -> ModelConfig:
    """The named preset with field overrides, e.g. ``preset("diffmf_paper", variant="wo_residual")``."""
    base = name.split(".", 1)[0]  # "diffmf_paper.roadscene" -> architecture "diffmf_paper"
    if base not in PRESETS:
        raise KeyError(f"unknown model {name!r}; available: {sorted(PRESETS)}")
    return replace(PRESETS[base], **overrides)


def config_names() -> Tuple[str, ...]:
    return tuple(PRESETS)
