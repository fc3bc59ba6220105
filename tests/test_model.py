"""DIFF-MF modules: Algorithm 1, the B/C exchange, spatial token arrangements, shapes, gradients."""
from __future__ import annotations

import pytest
import torch

from diffmf.model import VARIANTS, build_model
from diffmf.model.channel_exchange import ChannelExchange, ChannelReweighting, CrossModalSSD
from diffmf.model.config import preset
from diffmf.model.decoder import Decoder
from diffmf.model.diff_extraction import DiffDrivenExtractor, DiffStage, difference_guidance, difference_map
from diffmf.model.embedding import ShallowEmbed
from diffmf.model.restormer import RestormerBlock
from diffmf.model.spatial_exchange import (
    CrossModalScan, SpatialExchange, column_arrange, column_split, concat_arrange, row_arrange, row_split,
)
from diffmf.model.vss import SS2D, VSSBlock

TINY = preset("diffmf_tiny")


def test_difference_map_line4():
    a = torch.tensor([0.0, 1.0, -2.0, 3.0])
    b = torch.tensor([0.0, -1.0, 1.0, 3.5])
    torch.testing.assert_close(difference_map(a, b), torch.tanh(torch.tensor([0.0, 2.0, 3.0, 0.5])))


def test_difference_guidance_lines5_6_order():
    ir, vi = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 10.0])
    diff = torch.tensor([0.5, 0.25])
    out_ir, out_vi = difference_guidance(ir, vi, diff)
    # line 5: ir' = (1-D) ir + D vi ; line 6 uses the UPDATED ir'
    exp_ir = torch.tensor([0.5 * 1 + 0.5 * 3, 0.75 * 2 + 0.25 * 10])
    exp_vi = torch.tensor([0.5 * 3 + 0.5 * exp_ir[0], 0.75 * 10 + 0.25 * exp_ir[1]])
    torch.testing.assert_close(out_ir, exp_ir)
    torch.testing.assert_close(out_vi, exp_vi)
    # v1: visible first, then infrared with the updated visible
    v1_ir, v1_vi = difference_guidance(ir, vi, diff, "sequential_vi_first")
    exp_vi1 = torch.tensor([0.5 * 3 + 0.5 * 1, 0.75 * 10 + 0.25 * 2])
    torch.testing.assert_close(v1_vi, exp_vi1)
    torch.testing.assert_close(v1_ir, (1 - diff) * ir + diff * exp_vi1)
    # v2: both from the old features
    p_ir, p_vi = difference_guidance(ir, vi, diff, "parallel")
    torch.testing.assert_close(p_vi, (1 - diff) * vi + diff * ir)
    torch.testing.assert_close(p_ir, exp_ir)
    # w/o difference guidance: shared features added
    a_ir, a_vi = difference_guidance(ir, vi, diff, "add", share_ir=torch.ones(2), share_vi=2 * torch.ones(2))
    torch.testing.assert_close(a_ir, ir + 1)
    torch.testing.assert_close(a_vi, vi + 2)
    with pytest.raises(ValueError):
        difference_guidance(ir, vi, diff, "bogus")


def test_diff_stage_shared_branch_uses_same_weights():
    stage = DiffStage(TINY)
    x = torch.randn(1, 6, 7, TINY.embed_dim)
    _, _, share_ir, share_vi = stage(x, x.clone(), x, x.clone())
    torch.testing.assert_close(share_ir, share_vi)  # one weight-shared branch for both modalities


def _capture_scans(module: CrossModalSSD):
    calls = []
    for name in ("ssm_ir", "ssm_vi"):
        ssm = getattr(module, name)
        orig = ssm.scan

        def scan(x, dt, B, C, _orig=orig, _name=name):
            calls.append((_name, B, C))
            return _orig(x, dt, B, C)

        ssm.scan = scan
    return calls


@pytest.mark.parametrize(
    "variant,expect",
    [("full", ("vi", "ir")), ("wo_ssd_exchange", ("ir", "vi")), ("ssd_exchange_v1", ("vi", "vi")), ("ssd_exchange_v2", ("ir", "ir"))],
)
def test_bc_exchange_crosses_modalities(variant, expect):
    cfg = preset("diffmf_tiny", variant=variant)
    mod = CrossModalSSD(cfg)
    f_ir, f_vi = torch.randn(1, 5, 6, cfg.embed_dim), torch.randn(1, 5, 6, cfg.embed_dim)
    proj = {"ir": mod.ssm_ir.project(mod.norm_ir(f_ir)), "vi": mod.ssm_vi.project(mod.norm_vi(f_vi))}
    calls = _capture_scans(mod)
    mod(f_ir, f_vi)
    got = {name: (B, C) for name, B, C in calls}
    for target, source in zip(("ssm_ir", "ssm_vi"), expect):
        torch.testing.assert_close(got[target][0], proj[source].B)
        torch.testing.assert_close(got[target][1], proj[source].C)


def test_exchange_makes_ir_output_depend_on_vi():
    for variant, depends in (("full", True), ("wo_ssd_exchange", False)):
        mod = CrossModalSSD(preset("diffmf_tiny", variant=variant))
        f_ir = torch.randn(1, 4, 5, TINY.embed_dim)
        f_vi = torch.randn(1, 4, 5, TINY.embed_dim, requires_grad=True)
        out_ir, _ = mod(f_ir, f_vi)
        (g,) = torch.autograd.grad(out_ir.sum(), f_vi, allow_unused=True)
        assert (g is not None and g.abs().sum() > 0) == depends


def test_channel_reweighting_eq7_eq8():
    rw = ChannelReweighting(3)
    with torch.no_grad():
        rw.alpha.copy_(torch.tensor([1.0, 2.0, 0.0]))
        rw.beta.copy_(torch.tensor([0.5, 0.5, 0.5]))
    fe_ir, fe_vi, fp_ir, fp_vi = (torch.randn(2, 4, 5, 3) for _ in range(4))
    c_ir, c_vi = rw(fe_ir, fe_vi, fp_ir, fp_vi)
    g_ir = (fp_ir + fe_ir * rw.alpha) * torch.sigmoid(rw.gate_ir(fp_ir))
    g_vi = (fp_vi + fe_vi * rw.beta) * torch.sigmoid(rw.gate_vi(fp_vi))
    w = torch.sigmoid(rw.omega(torch.cat([fe_ir.mean((1, 2), keepdim=True), fp_ir.mean((1, 2), keepdim=True)], -1)))
    assert w.shape == (2, 1, 1, 3)
    torch.testing.assert_close(c_ir, (1 - w) * g_ir + w * g_vi)
    torch.testing.assert_close(c_vi, (1 - w) * g_vi + w * g_ir)
    no_res = ChannelReweighting(3, residual=False)
    assert not hasattr(no_res, "alpha")


def test_token_arrangements_are_exact_and_inverted():
    ir = torch.arange(2 * 3 * 4 * 2, dtype=torch.float32).view(2, 3, 4, 2)
    vi = -ir - 1
    col = column_arrange(ir, vi)
    assert col.shape == (2, 3, 8, 2)
    torch.testing.assert_close(col[:, :, 0], ir[:, :, 0])  # ir1 vi1 ir2 vi2 ...
    torch.testing.assert_close(col[:, :, 1], vi[:, :, 0])
    torch.testing.assert_close(col[:, :, 2], ir[:, :, 1])
    back_ir, back_vi = column_split(col)
    assert torch.equal(back_ir, ir) and torch.equal(back_vi, vi)
    row = row_arrange(ir, vi)
    assert row.shape == (2, 3, 8, 2)
    assert torch.equal(row[:, 1, :4], ir[:, 1]) and torch.equal(row[:, 1, 4:], vi[:, 1])  # IR row, then VI row
    r_ir, r_vi = row_split(row)
    assert torch.equal(r_ir, ir) and torch.equal(r_vi, vi)
    cat = concat_arrange(ir, vi)
    assert cat.shape == (2, 3, 4, 4) and torch.equal(cat[..., :2], ir) and torch.equal(cat[..., 2:], vi)


def _cancels_in_diff(module, name: str) -> bool:
    """The final bias of the LAST stage's shared branch adds equally to both modalities and
    cancels in Diff = tanh|F_vi - F_ir| (its only consumer): a structural zero gradient."""
    stages = [n for n, _ in module.named_modules() if n.endswith("stages")]
    if not stages or ".share_blocks." not in name or not name.endswith("bias"):
        return False
    last = f"{stages[0]}.{len(module.get_submodule(stages[0])) - 1}." if stages[0] else ""
    depth = len(module.get_submodule(name.rsplit(".share_blocks.", 1)[0] + ".share_blocks"))
    return name.startswith(last) and (
        name.endswith(f"share_blocks.{depth - 1}.ffn.project_out.bias") or name.endswith(f"share_blocks.{depth - 1}.mlp.fc2.bias")
    )


def _check_module(module, inputs, out_shapes):
    outs = module(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    assert [tuple(o.shape) for o in outs] == out_shapes
    assert all(torch.isfinite(o).all() for o in outs)
    sum(o.float().square().mean() for o in outs).backward()
    bad = [n for n, p in module.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad, f"parameters with missing or non-finite gradient: {bad}"
    missing = [n for n, p in module.named_parameters() if p.grad.abs().sum() == 0 and not _cancels_in_diff(module, n)]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("block", ["vss", "restormer"])
def test_every_module_shapes_and_gradients(block):
    cfg = preset("diffmf_tiny", block=block)
    c = cfg.embed_dim
    x = lambda h=6, w=10: torch.randn(2, h, w, c)  # noqa: E731
    _check_module(ShallowEmbed(1, c), (torch.rand(2, 1, 5, 7),), [(2, 5, 7, c)])
    _check_module(DiffDrivenExtractor(cfg), (x(), x()), [(2, 6, 10, c)] * 2)
    _check_module(ChannelExchange(cfg), (x(), x()), [(2, 6, 10, c)] * 2)
    _check_module(CrossModalScan(cfg), (x(), x()), [(2, 6, 10, c)])
    _check_module(SpatialExchange(cfg), (x(8, 12), x(8, 12)), [(2, 8, 12, c)])
    _check_module(Decoder(c), (x(),), [(2, 1, 6, 10)])
    if block == "vss":
        _check_module(SS2D(c, d_state=4, dt_rank=1), (x(),), [(2, 6, 10, c)])
        _check_module(VSSBlock(c, d_state=4, dt_rank=1), (x(),), [(2, 6, 10, c)])
    else:
        _check_module(RestormerBlock(c, heads=2), (x(),), [(2, 6, 10, c)])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_forward_backward_odd_size(variant):
    model = build_model("diffmf_tiny", variant=variant)
    ir, vi = torch.rand(1, 1, 11, 17), torch.rand(1, 1, 11, 17)
    _check_module(model, (ir, vi), [(1, 1, 11, 17)])


def test_transformer_variant_forward_backward_odd_size():
    model = build_model("diffmf_tiny", block="restormer")
    assert not any(isinstance(m, SS2D) for m in model.modules())
    _check_module(model, (torch.rand(1, 1, 9, 14), torch.rand(1, 1, 9, 14)), [(1, 1, 9, 14)])


@pytest.mark.parametrize("hw", [(1, 1), (2, 33), (33, 2), (7, 9), (16, 16), (13, 4)])
def test_any_size_in_same_size_out(hw):
    model = build_model("diffmf_tiny").eval()
    with torch.no_grad():
        y = model(torch.rand(2, 1, *hw), torch.rand(2, 1, *hw))
    assert y.shape == (2, 1, *hw)
    assert (y >= 0).all() and (y <= 1).all()


def test_padding_never_changes_valid_region_size_and_batch_independent():
    model = build_model("diffmf_tiny").eval()
    ir, vi = torch.rand(2, 1, 10, 14), torch.rand(2, 1, 10, 14)
    with torch.no_grad():
        both = model(ir, vi)
        single = model(ir[1:], vi[1:])
    torch.testing.assert_close(both[1:], single, rtol=1e-5, atol=1e-6)


def test_input_validation():
    model = build_model("diffmf_tiny")
    with pytest.raises(ValueError, match="must both be"):
        model(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match="must both be"):
        model(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_model_triton_backend_matches_torch_backend():
    """The network's GPU path (Triton kernels, here on the CPU interpreter) = the PyTorch path."""
    pytest.importorskip("triton")
    import os

    from diffmf.ops import set_backend

    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 at Triton import (set by tests/conftest.py)")
    model = build_model("diffmf_tiny")
    ir, vi = torch.rand(1, 1, 4, 8), torch.rand(1, 1, 4, 8)  # tiny: the interpreter is slow
    results = []
    try:
        for backend in ("torch", "triton"):
            set_backend(backend)
            model.zero_grad()
            y = model(ir, vi)
            y.square().mean().backward()
            results.append((y.detach(), [p.grad.clone() for p in model.parameters()]))
    finally:
        set_backend(None)
    (y_t, g_t), (y_k, g_k) = results
    torch.testing.assert_close(y_k, y_t, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_k, g_t):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)
