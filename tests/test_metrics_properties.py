"""Properties of the fusion metrics that follow from their definitions (no golden numbers):
limits for a fused image equal to a source, ir/vi symmetry, constant images, profile relations,
input handling (torch, float, RGB, 16-bit) and the registry's metadata.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import diffmf.metrics as M
from diffmf.metrics import METRICS, PAPER_METRICS, PROFILES, evaluate, resolve_metrics
from diffmf.metrics._common import as_gray255
from diffmf.metrics.structural import _mef_ssim

PROFILE_NAMES = sorted(PROFILES)


def _texture(shape, seed: int, lo: float = 10, hi: float = 240) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    x = (x - x.min()) / (x.max() - x.min())
    return np.round(lo + x * (hi - lo)).astype(np.uint8)


@pytest.fixture(scope="module")
def small():
    ir = _texture((64, 80), 1)
    vi = _texture((64, 80), 2)
    fused = ((ir.astype(np.int64) + vi + 1) // 2).astype(np.uint8)
    return ir, vi, fused


@pytest.fixture(scope="module")
def large():
    """Big enough for every metric (5-level MS-SSIM needs > 160 px)."""
    ir = _texture((168, 176), 3)
    vi = _texture((168, 176), 4)
    fused = np.maximum(ir, vi)
    return ir, vi, fused


def _entropy_nats(x: np.ndarray) -> float:
    p = np.bincount(x.ravel(), minlength=256) / x.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


# ----------------------------------------------------------------------------- F equals a source


def test_mi_of_a_source_is_its_entropy_plus_the_cross_term(small):
    ir, vi, _ = small
    a, b = as_gray255(ir), as_gray255(vi)
    expected = _entropy_nats(ir) + M.mutual_information(a, b)
    assert M.mi(ir, vi, ir) == pytest.approx(expected, rel=1e-12)
    assert M.mi(ir, vi, ir, base=2) == pytest.approx(expected / math.log(2), rel=1e-12)


def test_mi_is_bounded_by_the_entropies(small):
    ir, vi, fused = small
    assert 0 <= M.mi(ir, vi, fused) <= _entropy_nats(ir) + _entropy_nats(vi) + 1e-12


def test_tang_mi_is_bits_and_merges_254_255_only_in_the_joint_histogram(small):
    ir, vi, fused = small  # no 254/255 values: tang = exact bits
    cdd = METRICS["MI"](ir, vi, fused, profile="cdd")
    assert METRICS["MI"](ir, vi, fused, profile="tang") == pytest.approx(cdd / math.log(2), rel=1e-12)
    sat = ir.copy()
    sat[:8] = 255
    sat[8:16] = 254
    exact = M.mi(sat, vi, sat, base=2)
    merged = M.mi(sat, vi, sat, base=2, binning="tang_sat")
    assert merged > exact  # merging two joint bins lowers H(F,ir) while the marginals keep them apart


def test_scd_reaches_its_maximum_when_fused_is_the_sum():
    ir = _texture((48, 56), 5, 0, 120)
    vi = _texture((48, 56), 6, 0, 120)
    assert M.scd(ir, vi, ir + vi) == pytest.approx(2.0, abs=1e-12)


def test_scd_is_nan_when_fused_equals_a_source(small):
    ir, vi, _ = small
    assert math.isnan(M.scd(ir, vi, ir))  # F - ir is constant: correlation 0/0


def test_qabf_limits(small):
    ir, vi, _ = small
    top = 0.9994 * 0.9879 / (1 + math.exp(-22 * 0.2))
    q_same = M.qabf(ir, ir, ir)
    assert 0.974 < q_same <= top + 1e-12
    # F = ir: the ir term is (almost) fully preserved, vi's only partly
    q = M.qabf(ir, vi, ir)
    a, b = as_gray255(ir), as_gray255(vi)
    from diffmf.metrics.gradient import _qabf_edges

    ga, gb = _qabf_edges(a)[0], _qabf_edges(b)[0]
    share = ga.sum() / (ga.sum() + gb.sum())
    assert 0.974 * share <= q <= q_same
    assert 0 <= M.qabf(ir, vi, np.full_like(ir, 128)) < q


def test_nabf_is_zero_without_new_edges(small):
    ir, vi, fused = small
    assert M.nabf(ir, vi, ir) == 0.0
    noisy = np.clip(fused.astype(int) + np.random.default_rng(0).integers(-60, 60, fused.shape), 0, 255).astype(np.uint8)
    assert 0 < M.nabf(ir, vi, noisy) <= 1


def test_vif_of_a_source_is_one_plus_the_other_term(small):
    ir, vi, _ = small
    assert M.vifp(ir, ir) == pytest.approx(1.0, abs=1e-9)
    assert M.vif(ir, vi, ir) == pytest.approx(1.0 + M.vifp(vi, ir), abs=1e-9)


def test_cc_ssim_mse_psnr_when_fused_equals_a_source(small):
    ir, vi, _ = small
    a, b = as_gray255(ir), as_gray255(vi)
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert M.cc(ir, vi, ir) == pytest.approx((1 + r) / 2, rel=1e-12)
    assert M.ssim(ir, vi, ir, convention="vifb") == pytest.approx(1 + M.ssim(vi, vi, ir, convention="vifb") / 2, rel=1e-12)
    assert M.ssim(ir, ir, ir, convention="cdd") == pytest.approx(2.0, rel=1e-12)
    assert M.ssim(ir, ir, ir, convention="tang") == pytest.approx(1.0, rel=1e-12)
    mse = float(np.mean((a - b) ** 2)) / 2
    assert M.mse(ir, vi, ir) == pytest.approx(mse, rel=1e-12)
    assert M.mse(ir, vi, ir, scale=1.0) == pytest.approx(mse / 255**2, rel=1e-12)
    assert M.rmse(ir, vi, ir) == pytest.approx(math.sqrt(mse), rel=1e-12)
    assert M.psnr(ir, vi, ir) == pytest.approx(10 * math.log10(a.max() ** 2 / mse), rel=1e-12)
    assert M.psnr(ir, vi, ir, convention="tang") == pytest.approx(
        10 * math.log10(255**2 / mse) + 20 * math.log10(255), rel=1e-12
    )


def test_perfect_fusion_of_identical_sources(large):
    ir = large[0]
    assert M.ce(ir, ir, ir) == 0.0
    assert M.qcv(ir, ir, ir) == pytest.approx(0.0, abs=1e-9)
    assert M.qcb(ir, ir, ir) == pytest.approx(1.0, abs=1e-12)
    assert M.ms_ssim(ir, ir, ir) == pytest.approx(2.0, abs=1e-9)
    assert M.ms_ssim(ir, ir, ir, convention="mef") == pytest.approx(1.0, abs=1e-3)
    assert math.isinf(M.psnr(ir, ir, ir)) and M.mse(ir, ir, ir) == 0.0


def test_mef_ssim_vectorised_matches_the_reference_loop():
    """mef_ssim.m transcribed loop by loop (one scale) on a small image."""
    seq = np.stack([as_gray255(_texture((22, 25), 7)), as_gray255(_texture((22, 25), 8))])
    f = as_gray255(_texture((22, 25), 9))
    k, wsize, bd, eps = 0.03, 11, 5, np.finfo(float).eps
    x = np.arange(wsize) - 5.0
    window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    s1, s2 = f.shape
    q = np.zeros((s1 - 2 * bd, s2 - 2 * bd))
    for i in range(bd, s1 - bd):
        for j in range(bd, s2 - bd):
            blocks = seq[:, i - bd : i + bd + 1, j - bd : j + bd + 1]
            mu = blocks.mean(axis=(1, 2))
            ed = np.sqrt(np.maximum(((blocks - mu[:, None, None]) ** 2).sum(axis=(1, 2)), 0)) + 0.001
            den = sum(np.linalg.norm(blocks[n] - mu[n]) for n in range(2))
            ssum = blocks.sum(axis=0)
            num = np.linalg.norm(ssum - ssum.mean())
            r = min(max((num + eps) / (den + eps), eps), 1 - eps) if (num + eps) / (den + eps) > 1 else (num + eps) / (den + eps)
            p = min(np.tan(np.pi / 2 * r), 10)
            w = (ed / wsize) ** p + eps
            w /= w.sum()
            rb = sum(w[n] * (blocks[n] - mu[n]) / ed[n] for n in range(2))
            if np.linalg.norm(rb) > 0:
                rb = rb / np.linalg.norm(rb) * ed.max()
            fb = f[i - bd : i + bd + 1, j - bd : j + bd + 1]
            m1, m2 = (window * rb).sum(), (window * fb).sum()
            v1, v2 = (window * (rb - m1) ** 2).sum(), (window * (fb - m2) ** 2).sum()
            c12 = (window * (rb - m1) * (fb - m2)).sum()
            c = (k * 255) ** 2
            q[i - bd, j - bd] = (2 * c12 + c) / (v1 + v2 + c)
    assert _mef_ssim(seq, f) == pytest.approx(q.mean(), rel=1e-10)


# ----------------------------------------------------------------------------- symmetry and profiles


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_metrics_are_symmetric_in_ir_and_vi(large, profile):
    ir, vi, fused = large
    ab = evaluate(ir, vi, fused, profile=profile)
    ba = evaluate(vi, ir, fused, profile=profile)
    for name in METRICS:
        if name == "VIFF":  # Han's tie-break (equal gains -> second source) is not symmetric
            assert ab[name] == pytest.approx(ba[name], rel=1e-2)
            continue
        assert ab[name] == pytest.approx(ba[name], rel=1e-10, abs=1e-12), name


def test_profiles_relate_as_documented(small):
    ir, vi, fused = small
    m, n = ir.shape
    cdd = evaluate(ir, vi, fused, profile="cdd")
    tang = evaluate(ir, vi, fused, profile="tang")
    vifb = evaluate(ir, vi, fused, profile="vifb")
    for name in ("EN", "SD", "SF", "VIF", "Qabf", "SCD", "CC"):
        assert tang[name] == pytest.approx(cdd[name], rel=1e-12), name
    assert tang["AG"] / cdd["AG"] == pytest.approx(m * n / ((m - 1) * (n - 1)), rel=1e-12)
    assert tang["MSE"] == pytest.approx(cdd["MSE"] / 255**2, rel=1e-12)
    assert vifb["AG"] == pytest.approx(tang["AG"], rel=1e-12)
    assert vifb["SF"] < cdd["SF"]
    assert vifb["MI"] >= 0 and vifb["SSIM"] > cdd["SSIM"] - 1  # different conventions, both finite


def test_vifb_mi_equals_cdd_when_images_span_the_full_range():
    ir = _texture((40, 48), 10, 0, 255)
    vi = _texture((40, 48), 11, 0, 255)
    fused = _texture((40, 48), 12, 0, 255)
    assert METRICS["MI"](ir, vi, fused, profile="vifb") == pytest.approx(METRICS["MI"](ir, vi, fused, profile="cdd"), rel=1e-12)


# ----------------------------------------------------------------------------- degenerate inputs

#: metrics allowed to be NaN (0/0 in their definition) on constant images, as documented
MAY_BE_NAN = {"VIF", "Qabf", "SCD", "CC", "PSNR", "Qcb", "Qcv"}


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@pytest.mark.parametrize("case", ["all_constant", "all_zero", "constant_fused", "constant_ir", "tiny"])
def test_degenerate_inputs_give_finite_values_or_documented_nan(large, profile, case):
    ir, vi, fused = large
    c = np.full(ir.shape, 100, np.uint8)
    z = np.zeros(ir.shape, np.uint8)
    a, b, f = {
        "all_constant": (c, c, c),
        "all_zero": (z, z, z),
        "constant_fused": (ir, vi, c),
        "constant_ir": (c, vi, fused),
        "tiny": (ir[:12, :14], vi[:12, :14], fused[:12, :14]),
    }[case]
    values = evaluate(a, b, f, profile=profile)
    assert list(values) == list(METRICS)
    allowed = MAY_BE_NAN | ({"VIF", "VIFF", "SSIM", "MS_SSIM"} if case == "tiny" else set())
    for name, v in values.items():
        if name == "PSNR" and case.startswith("all"):
            assert math.isinf(v) or math.isnan(v)  # MSE = 0
        elif name not in allowed:
            assert math.isfinite(v), (case, name, v)
        else:
            assert not math.isinf(v), (case, name, v)
    if case == "all_constant":
        for name in ("EN", "SD", "SF", "AG", "EI"):
            assert values[name] == 0.0


# ----------------------------------------------------------------------------- inputs


def test_torch_float_rgb_and_uint8_inputs_agree(small):
    torch = pytest.importorskip("torch")
    ir, vi, fused = small
    ref = evaluate(ir, vi, fused, PAPER_METRICS)
    as_tensor = evaluate(torch.from_numpy(ir)[None], torch.from_numpy(vi), torch.from_numpy(fused)[None, None], PAPER_METRICS)
    as_unit = evaluate(ir / 255.0, vi / 255.0, torch.from_numpy(fused / 255.0).float(), PAPER_METRICS, data_range=1.0)
    rgb3 = np.repeat(fused[..., None], 3, axis=2)
    as_rgb = evaluate(ir, vi, rgb3, PAPER_METRICS)
    for got in (as_tensor, as_unit, as_rgb):
        assert got == pytest.approx(ref, rel=1e-12)


def test_rgb_uses_matlab_rgb2gray_weights():
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 200, 30]]], np.uint8)
    gray = M.rgb2gray_u8(rgb)
    w = (0.298936021293775, 0.587043074451121, 0.114020904255103)
    assert gray.tolist() == [[76, 150], [29, int(np.floor(10 * w[0] + 200 * w[1] + 30 * w[2] + 0.5))]]


def test_bad_inputs_are_rejected_with_clear_messages(small):
    ir, vi, fused = small
    with pytest.raises(ValueError, match="size mismatch"):
        evaluate(ir, vi, fused[:-1])
    with pytest.raises(ValueError, match="outside"):
        evaluate(ir, vi, fused.astype(np.float64) * 2)
    with pytest.raises(ValueError, match="8-bit|8 bit"):
        evaluate(ir, vi, fused.astype(np.uint16) * 257)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(ir, vi, fused, ["EN", "nope"])
    with pytest.raises(ValueError, match="unknown profile"):
        evaluate(ir, vi, fused, profile="matlab")


def test_load_gray_handles_8bit_rgb_and_16bit(tmp_path: Path, small):
    ir = small[0]
    Image.fromarray(ir).save(tmp_path / "l.png")
    Image.fromarray(np.repeat(ir[..., None], 3, axis=2)).save(tmp_path / "rgb.png")
    Image.fromarray(ir.astype(np.uint16) * 257).save(tmp_path / "16.png")
    assert np.array_equal(M.load_gray(tmp_path / "l.png"), ir)
    assert np.array_equal(M.load_gray(tmp_path / "rgb.png"), ir)
    with pytest.raises(ValueError, match="16bit scale|on_16bit"):
        M.load_gray(tmp_path / "16.png")
    assert np.array_equal(M.load_gray(tmp_path / "16.png", on_16bit="scale"), ir)


# ----------------------------------------------------------------------------- registry


def test_registry_metadata_and_docstrings():
    assert list(METRICS)[:6] == list(PAPER_METRICS)
    for name, spec in METRICS.items():
        assert spec.direction in ("higher", "lower")
        assert spec.arrow in ("\u2191", "\u2193")
        assert spec.range and spec.units and spec.formula
        doc = " ".join((spec.func.__doc__ or "").split())
        assert "Range" in doc, name
        assert "higher is better" in doc.lower() or "lower is better" in doc.lower(), name
        assert any(ref in doc for ref in ("Tang", "CDDFuse", "VIFB", "Han", "pytorch_msssim")), name
        for profile in PROFILE_NAMES:
            assert spec.reference(profile), (name, profile)
    assert METRICS["MI"].units_in("cdd") == "nats" and METRICS["MI"].units_in("tang") == "bits"


def test_resolve_metrics_groups_and_aliases():
    assert resolve_metrics(["paper"]) == list(PAPER_METRICS)
    assert resolve_metrics("ms-ssim,en") == ["EN", "MS_SSIM"]
    assert set(resolve_metrics(["reference"], "cdd")) == {
        "EN", "SD", "SF", "MI", "VIF", "AG", "Qabf", "SCD", "CC", "SSIM", "PSNR", "MSE"}
    assert len(resolve_metrics(["reference"], "vifb")) == 14


def test_wang_ms_ssim_window_is_pytorch_msssims_float32_gaussian():
    torch = pytest.importorskip("torch")
    from diffmf.metrics.structural import _PYTORCH_MSSSIM_WINDOW

    coords = torch.arange(11, dtype=torch.float) - 5
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g /= g.sum()
    assert np.array_equal(g.double().numpy(), _PYTORCH_MSSSIM_WINDOW)
