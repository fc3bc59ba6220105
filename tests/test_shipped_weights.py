"""The shipped weights load strictly into the current code and really fuse."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import diffmf
from diffmf.engine.checkpoint import load_state_strict, read_weights
from diffmf.model import build_model
from diffmf.weights import DEFAULT, available, resolve


def synthetic_pair(h: int = 40, w: int = 56):
    """A warm target on a cool IR background; stripes (texture) in the visible image."""
    yy, xx = np.mgrid[0:h, 0:w]
    ir = np.full((h, w), 40, np.uint8)
    ir[(yy - h // 2) ** 2 + (xx - w // 3) ** 2 < 36] = 230
    vi = (110 + 70 * np.sign(np.sin(xx / 2.0))).astype(np.uint8)
    return ir, vi


def test_default_weights_are_shipped_and_load_strictly():
    assert available()[DEFAULT], "the default weights file is missing from the package"
    state, cfg, meta = read_weights(resolve(DEFAULT))
    assert cfg is not None and cfg == build_model("diffmf_paper").config
    model = build_model(config=cfg)
    load_state_strict(model, state)  # raises on any missing / unexpected / misshaped key
    assert int(meta["diffmf.step"]) > 0


def test_shipped_weights_fuse_a_synthetic_pair():
    ir, vi = synthetic_pair()
    torch.manual_seed(0)
    fused = diffmf.fuse(ir, vi, device="cpu")
    assert fused.shape == ir.shape and fused.dtype == np.uint8
    target = ir > 128
    # the thermal target stays brighter than its surroundings, as in the IR image ...
    assert fused[target].mean() > fused[~target].mean() + 40
    # ... and the visible stripes survive outside it (texture from the visible image)
    bg = ~target
    corr = np.corrcoef(fused[bg].astype(float), vi[bg].astype(float))[0, 1]
    assert corr > 0.8, corr
