"""Each loss term of eq. 11-14 on hand-made tensors."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from diffmf.losses import FusionLoss, LossConfig, intensity_loss, sobel_gradient, ssim, ssim_loss, ssim_map, texture_loss
from diffmf.losses.ssim import C1, C2


def t(a):
    return torch.tensor(a, dtype=torch.float64)[None, None]


def test_sobel_on_a_step_edge():
    x = t([[0, 0, 1, 1]] * 4)  # vertical edge between columns 1 and 2
    g = sobel_gradient(x)[0, 0].numpy()
    # Interior rows: |gx| = 1+2+1 = 4 next to the edge and at the zero-padded right border.
    assert g[1].tolist() == [0.0, 4.0, 4.0, 4.0]
    # Top row: |gx| = 2+1 = 3 (zero row above), |gy| = x[1,c-1] + 2 x[1,c] + x[1,c+1].
    assert g[0].tolist() == [0.0, 3.0 + 1.0, 3.0 + 3.0, 3.0 + 3.0]
    assert torch.equal(sobel_gradient(torch.zeros(1, 1, 5, 5)), torch.zeros(1, 1, 5, 5))


def test_texture_loss_takes_the_elementwise_max():
    ir = t([[0, 0, 1, 1]] * 4)
    vi = t([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
    g_ir, g_vi = sobel_gradient(ir), sobel_gradient(vi)
    target = torch.maximum(g_ir, g_vi)
    assert (target > g_ir).any() and (target > g_vi).any()
    fused = torch.zeros_like(ir)
    assert texture_loss(fused, ir, vi).item() == pytest.approx(target.mean().item())
    # Fusing with the max-gradient target itself is not possible in general; with ir = vi it is.
    assert texture_loss(ir, ir, ir).item() == 0.0


def test_intensity_loss_by_hand():
    ir = t([[0.2, 0.8], [0.5, 0.1]])
    vi = t([[0.6, 0.3], [0.5, 0.4]])
    fused = t([[0.5, 0.5], [0.5, 0.5]])
    # max = [[.6, .8], [.5, .4]] -> |f - max| = [[.1, .3], [0, .1]] -> mean 0.125
    assert intensity_loss(fused, ir, vi).item() == pytest.approx(0.125)
    # mean = [[.4, .55], [.5, .25]] -> |.| = [[.1, .05], [0, .25]] -> 0.1
    assert intensity_loss(fused, ir, vi, mode="mean").item() == pytest.approx(0.1)
    with pytest.raises(ValueError):
        intensity_loss(fused, ir, vi, mode="median")


def _ssim_map_scipy(x, y, win=11, sigma=1.5):
    g = np.exp(-((np.arange(win) - (win - 1) / 2) ** 2) / (2 * sigma ** 2))
    g /= g.sum()
    k = np.outer(g, g)
    f = lambda a: ndimage.correlate(a, k, mode="constant", cval=0.0)
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    return ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx ** 2 + my ** 2 + C1) * (sxx + syy + C2))


def test_ssim_matches_an_independent_implementation():
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 17)), rng.random((20, 17))
    ours = ssim_map(t(x), t(y))[0, 0].numpy()
    np.testing.assert_allclose(ours, _ssim_map_scipy(x, y), rtol=1e-9, atol=1e-12)
    assert ssim(t(x), t(x)).item() == pytest.approx(1.0)


def test_ssim_of_constant_images_in_the_interior():
    # Away from the zero-padded border, constants a, b give (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.25, 0.75
    m = ssim_map(torch.full((1, 1, 31, 31), a, dtype=torch.float64), torch.full((1, 1, 31, 31), b, dtype=torch.float64))
    assert m[0, 0, 15, 15].item() == pytest.approx((2 * a * b + C1) / (a * a + b * b + C1))


def test_ssim_loss_weights():
    rng = np.random.default_rng(1)
    ir, vi = t(rng.random((16, 16))), t(rng.random((16, 16)))
    assert ssim_loss(ir, ir, vi).item() == pytest.approx(0.5 * (1 - ssim(ir, vi).item()))
    assert ssim_loss(vi, ir, vi, w_ir=1.0, w_vi=0.0).item() == pytest.approx(1 - ssim(vi, ir).item())
    assert ssim_loss(ir, ir, ir).item() == pytest.approx(0.0, abs=1e-12)


def test_total_is_the_weighted_sum_of_eq_14():
    rng = np.random.default_rng(2)
    f, ir, vi = (t(rng.random((16, 16))) for _ in range(3))
    cfg = LossConfig()
    assert (cfg.w_ssim, cfg.w_text, cfg.w_int, cfg.ssim_w_ir, cfg.ssim_w_vi) == (10, 20, 20, 0.5, 0.5)
    total, parts = FusionLoss(cfg)(f, ir, vi)
    expect = 10 * ssim_loss(f, ir, vi) + 20 * texture_loss(f, ir, vi) + 20 * intensity_loss(f, ir, vi)
    assert total.item() == pytest.approx(expect.item(), rel=1e-6)
    assert set(parts) == {"loss", "ssim", "text", "int"}
    # A gradient flows to the fused image only.
    f.requires_grad_(True)
    FusionLoss(cfg)(f, ir, vi)[0].backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()
