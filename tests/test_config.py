"""Model config: presets, overrides, YAML round trip, factory, FLOP report."""
from __future__ import annotations

import pytest
import torch

from diffmf.cli.main import main
from diffmf.model import PRESETS, VARIANTS, ModelConfig, build_model
from diffmf.model.config import preset
from diffmf.model.flops import count_costs
from diffmf.utils.config_io import apply_overrides, from_dict, load_yaml, save_yaml, to_dict


def test_paper_defaults():
    cfg = preset("diffmf_paper")
    assert (cfg.embed_dim, cfg.d_state, cfg.routes, cfg.se_levels) == (32, 16, 4, 3)
    assert preset("diffmf_paper.roadscene") == cfg  # weight tags select the architecture


def test_yaml_round_trip(tmp_path):
    cfg = preset("diffmf_tiny", variant="wo_residual")
    save_yaml(cfg, tmp_path / "m.yaml")
    assert load_yaml(ModelConfig, tmp_path / "m.yaml") == cfg
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg


def test_overrides_and_errors():
    cfg = apply_overrides(preset("diffmf_tiny"), ["embed_dim=12", "variant=diff_guide_v2", "dt_rank=3"])
    assert (cfg.embed_dim, cfg.variant, cfg.rank) == (12, "diff_guide_v2", 3)
    with pytest.raises(KeyError, match="unknown"):
        apply_overrides(cfg, ["embed_dimm=3"])
    with pytest.raises(TypeError):
        apply_overrides(cfg, ["embed_dim=abc"])
    with pytest.raises(ValueError, match="unknown variant"):
        preset("diffmf_tiny", variant="wo_everything")
    with pytest.raises(KeyError, match="unknown model"):
        build_model("diffmf_huge")


def test_factory_builds_every_preset_and_config_round_trips():
    for name in PRESETS:
        model = build_model(name)
        assert build_model(config=model.config).config == model.config
    assert build_model("diffmf_tiny", variant="wo_channel_exchange").channel_exchange is None
    assert set(VARIANTS) >= {"wo_feature_extraction", "wo_spatial_exchange", "wo_ssd_exchange", "ssd_exchange_v1"}


def test_flop_count_scales_linearly_and_counts_scan():
    model = build_model("diffmf_tiny")
    small, large = count_costs(model, (64, 64)), count_costs(model, (128, 128))
    assert small.scan[""] > 0 and small.dense[""] > 0
    assert large.total == pytest.approx(4 * small.total, rel=0.02)
    assert small.params[""] == sum(p.numel() for p in model.parameters())


def test_paper_flops_close_to_table_vii():
    report = count_costs(build_model("diffmf_paper"), (512, 512))
    assert report.total == pytest.approx(393.871e9, rel=0.1)


def test_info_cli(capsys):
    assert main(["info", "--model", "diffmf_tiny", "--size", "64x48"]) == 0
    out = capsys.readouterr().out
    assert "TOTAL" in out and "channel_exchange" in out and "393.871" in out
