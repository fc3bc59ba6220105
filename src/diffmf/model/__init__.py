"""The DIFF-MF network: config, blocks, modules and the model factory."""
from __future__ import annotations

from typing import Optional

from diffmf.model.config import PRESETS, VARIANTS, ModelConfig, config_names, preset
from diffmf.model.diffmf import DIFFMF


def build_model(name: str = "diffmf_paper", *, config: Optional[ModelConfig] = None, **overrides) -> DIFFMF:
    """Build DIFF-MF from a preset name (``diffmf_paper``, ``diffmf_tiny``, ``diffmf_transformer``;
    a weight tag such as ``diffmf_paper.roadscene`` selects its architecture) and config field
    overrides, e.g. ``build_model("diffmf_paper", variant="wo_channel_exchange")``, or from an
    explicit ``config``. Weights are random; load trained ones with :mod:`diffmf.engine`.
    """
    if config is not None:
        if overrides:
            from dataclasses import replace

            config = replace(config, **overrides)
        return DIFFMF(config)
    return DIFFMF(preset(name, **overrides))


def list_models() -> tuple:
    return config_names()


__all__ = ["DIFFMF", "ModelConfig", "PRESETS", "VARIANTS", "build_model", "list_models", "preset"]
