"""Structural similarity: SSIM in the three references' conventions, Wang's MS-SSIM and the
MEF-MS-SSIM of Ma, Zeng & Wang (2015) used by Tang's evaluation.

``../shared/golden/METRICS.md`` sections 3.11 and 3.12. The conventions differ a lot (sum or
average over the two sources, window, data range): values for the same images range from 0.9
to 1.6, so always say which one a number follows.
"""
from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
from scipy import ndimage

from diffmf.metrics._common import ImageLike, ImageTooSmallError, filter2_same, filter2_valid, fspecial_gaussian_1d, prepare_triplet

logger = logging.getLogger(__name__)

__all__ = ["ssim", "ms_ssim"]

SSIMConvention = Literal["cdd", "vifb", "tang"]
MSSSIMConvention = Literal["wang", "mef"]

_G11 = fspecial_gaussian_1d(11, 1.5)
_MSSSIM_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
_MEF_WEIGHTS = np.array([0.0448, 0.2856, 0.3001]) / np.sum([0.0448, 0.2856, 0.3001])
_EPS = float(np.finfo(np.float64).eps)


# ------------------------------------------------------------------------------------ SSIM


def _ssim_gaussian(x: np.ndarray, y: np.ndarray, dynamic_range: float, valid: bool) -> float:
    """Gaussian-window SSIM (11x11, sigma 1.5); ``valid`` map (VIFB, Wang) or 'same' map with
    replicate padding (MATLAB's built-in ``ssim``)."""
    stack = np.stack([x, y, x * x, y * y, x * y])
    f = filter2_valid(stack, _G11) if valid else filter2_same(stack, _G11, mode="nearest")
    mx, my, mxx, myy, mxy = f
    c1 = (0.01 * dynamic_range) ** 2
    c2 = (0.03 * dynamic_range) ** 2
    sx = mxx - mx * mx
    sy = myy - my * my
    sxy = mxy - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sx + sy + c2))
    return float(np.mean(s))


def _ssim_skimage_pair(f: np.ndarray, a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> float:
    """``_ssim_skimage_default(f, a) + _ssim_skimage_default(f, b)``, filtering F's moments once."""
    win = 7
    u = ndimage.uniform_filter(np.stack([f, a, b, f * f, a * a, b * b, f * a, f * b]), size=(1, win, win), mode="reflect")
    uf, ua, ub, uff, uaa, ubb, ufa, ufb = u
    cov_norm = win * win / (win * win - 1.0)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    vf = cov_norm * (uff - uf * uf)
    pad = (win - 1) // 2
    total = 0.0
    for ux, uxx, uxy in ((ua, uaa, ufa), (ub, ubb, ufb)):
        vx = cov_norm * (uxx - ux * ux)
        vxy = cov_norm * (uxy - uf * ux)
        s = ((2 * uf * ux + c1) * (2 * vxy + c2)) / ((uf * uf + ux * ux + c1) * (vf + vx + c2))
        total += float(np.mean(s[pad:-pad, pad:-pad]))
    return total


def _ssim(a: np.ndarray, b: np.ndarray, f: np.ndarray, convention: SSIMConvention = "cdd") -> float:
    if convention == "cdd":
        if min(f.shape) < 7:
            raise ImageTooSmallError(f"image {f.shape} smaller than the 7x7 SSIM window")
        return _ssim_skimage_pair(f, a, b)
    if convention == "vifb":
        return _ssim_gaussian(b, f, 255.0, valid=True) + _ssim_gaussian(a, f, 255.0, valid=True)
    if convention == "tang":
        return 0.5 * _ssim_gaussian(f, a, 1.0, valid=False) + 0.5 * _ssim_gaussian(f, b, 1.0, valid=False)
    raise ValueError(f"unknown SSIM convention {convention!r}")


def ssim(ir: ImageLike, vi: ImageLike, fused: ImageLike, *, convention: SSIMConvention = "cdd") -> float:
    """SSIM of F against both sources. Higher is better. Conventions:

    * ``"cdd"`` (default, CDDFuse): ``ssim(F, ir) + ssim(F, vi)`` with scikit-image defaults
      (7x7 uniform window, sample covariance) and ``data_range=2`` (what its pinned scikit-image
      silently used for float32 input: almost no stabilising constants). Range [-2, 2].
    * ``"vifb"`` (VIFB, also pytorch-msssim/piq): sum of Gaussian 11x11/1.5 'valid' SSIMs with
      data range 255. Range [-2, 2].
    * ``"tang"`` (Tang's MATLAB, ``easy=0``): ``0.5 ssim(F, ir) + 0.5 ssim(F, vi)`` with MATLAB's
      built-in ``ssim`` (Gaussian 11x11/1.5, replicate padding, full map, DynamicRange 1 on
      0-255 data). Range [-1, 1]. Implemented from MATLAB's documented defaults; not covered by
      the goldens (Octave has no ``ssim``).
    """
    return _ssim(*prepare_triplet(ir, vi, fused), convention=convention)


# ------------------------------------------------------------------------------- MS-SSIM (Wang)


def _avg_pool_torch_like(x: np.ndarray) -> np.ndarray:
    """``F.avg_pool2d(x, 2, padding=(H % 2, W % 2))`` with zero padding counted (pytorch_msssim)."""
    ph, pw = x.shape[0] % 2, x.shape[1] % 2
    if ph or pw:
        x = np.pad(x, ((ph, ph), (pw, pw)))
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    x = x[:h, :w]
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


#: pytorch_msssim's ``_fspecial_gauss_1d(11, 1.5)``: the Gaussian built by torch in float32 and
#: then used at the input's precision (these are those float32 values, exactly). Using it instead
#: of the float64 Gaussian (1e-8 apart) makes the values agree with pytorch_msssim to ~1e-15
#: instead of ~1e-6. ``tests/test_metrics_properties.py`` re-derives it with torch.
_PYTORCH_MSSSIM_WINDOW = np.array(
    [0.0010283803567290306, 0.0075987582094967365, 0.036000773310661316, 0.10936068743467331, 0.21300552785396576]
)
_PYTORCH_MSSSIM_WINDOW = np.concatenate([_PYTORCH_MSSSIM_WINDOW, [0.26601171493530273], _PYTORCH_MSSSIM_WINDOW[::-1]])


def _ms_ssim_wang(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """``ms_ssim(a, f) + ms_ssim(b, f)`` as pytorch_msssim computes them (F's moments shared)."""
    win = _PYTORCH_MSSSIM_WINDOW
    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2
    levels = len(_MSSSIM_WEIGHTS)
    vals = np.zeros((2, levels))
    imgs = np.stack([f, a, b])
    for level in range(levels):
        ff, aa, bb = imgs
        mf, ma, mb, mff, maa, mbb, mfa, mfb = filter2_valid(np.stack([ff, aa, bb, ff * ff, aa * aa, bb * bb, ff * aa, ff * bb]), win)
        sf = mff - mf * mf
        for i, (mx, mxx, mxf) in enumerate(((ma, maa, mfa), (mb, mbb, mfb))):
            sx = mxx - mx * mx
            sxf = mxf - mx * mf
            cs_map = (2 * sxf + c2) / (sx + sf + c2)
            if level < levels - 1:
                vals[i, level] = max(float(np.mean(cs_map)), 0.0)  # relu(cs)
            else:
                ssim_map = ((2 * mx * mf + c1) / (mx * mx + mf * mf + c1)) * cs_map
                vals[i, level] = max(float(np.mean(ssim_map)), 0.0)
        if level < levels - 1:
            imgs = np.stack([_avg_pool_torch_like(x) for x in imgs])
    return float(np.sum(np.prod(vals**_MSSSIM_WEIGHTS, axis=1)))


# ------------------------------------------------------------------------------- MEF-MS-SSIM


def _box_mean_valid(x: np.ndarray, n: int) -> np.ndarray:
    return filter2_valid(x, np.full(n, 1.0 / n))


def _mef_ssim(seq: np.ndarray, f: np.ndarray, k: float = 0.03) -> float:
    """``mef_ssim.m`` (Ma et al. 2015), vectorised. ``seq``: ``(K, H, W)`` sources, ``f``: ``(H, W)``.

    Per 11x11 window the sources' structures are combined into a reference patch
    ``r = sum_k w_k (x_k - mu_k) / ed_k`` rescaled to the largest source contrast; its SSIM
    contrast-structure term against F is averaged. All window sums of ``r`` are expanded into
    filtered products of the sources, so no per-window loop is needed.
    """
    win = 11
    n2 = float(win * win)
    nk = seq.shape[0]
    # box (uniform) statistics of each source and of their sum
    ssum = seq.sum(axis=0)
    box_in = np.concatenate([seq, seq * seq, ssum[None], (ssum * ssum)[None]])
    box = _box_mean_valid(box_in, win)
    mu = box[:nk]
    var_box = box[nk : 2 * nk] - mu * mu
    mu_s = box[2 * nk]
    var_s = box[2 * nk + 1] - mu_s * mu_s
    norm_k = np.sqrt(np.maximum(n2 * var_box, 0.0))  # ||x_k - mu_k|| over the window
    ed = norm_k + 0.001
    den = norm_k.sum(axis=0)
    num = np.sqrt(np.maximum(n2 * var_s, 0.0))
    r = (num + _EPS) / (den + _EPS)
    r[r > 1] = 1 - _EPS
    r[r < 0] = _EPS
    p = np.tan(math.pi / 2 * r)
    p[p > 10] = 10
    wmap = (ed / win) ** p[None] + _EPS
    wmap = wmap / wmap.sum(axis=0, keepdims=True)
    max_ed = ed.max(axis=0)
    a = wmap / ed  # r = sum_k a_k (x_k - mu_k)

    # Gaussian-weighted statistics of the sources and F
    pairs = [(i, j) for i in range(nk) for j in range(i, nk)]
    g_in = [seq[i] for i in range(nk)] + [f, f * f]
    g_in += [seq[i] * seq[j] for i, j in pairs] + [seq[i] * f for i in range(nk)]
    g = filter2_valid(np.stack(g_in), _G11)
    gx = g[:nk]
    gf = g[nk]
    var_f = np.maximum(g[nk + 1] - gf * gf, 0.0)
    gpair = g[nk + 2 : nk + 2 + len(pairs)]
    gxf = g[nk + 2 + len(pairs) :]

    # box products for ||r||^2 = n2 * sum_kl a_k a_l cov_box(x_k, x_l)
    cross_box = _box_mean_valid(np.stack([seq[i] * seq[j] for i, j in pairs]), win)
    norm_sq = np.zeros_like(max_ed)
    var_r = np.zeros_like(max_ed)
    for idx, (i, j) in enumerate(pairs):
        mult = 1.0 if i == j else 2.0
        coeff = mult * a[i] * a[j]
        norm_sq += coeff * (cross_box[idx] - mu[i] * mu[j])
        var_r += coeff * (gpair[idx] - gx[i] * gx[j])
    cov_rf = np.zeros_like(max_ed)
    for i in range(nk):
        cov_rf += a[i] * (gxf[i] - gx[i] * gf)
    norm_r = np.sqrt(np.maximum(n2 * norm_sq, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(norm_r > 0, max_ed / np.where(norm_r > 0, norm_r, 1.0), 1.0)
    # Cauchy-Schwarz bounds keep round-off in flat windows from being amplified by the rescale:
    # sum g (r - mu_r)^2 <= max(g) * ||r||^2 and |cov| <= sqrt(var_r var_f).
    g_max = float(_G11.max() ** 2)
    bound = g_max * np.where(norm_r > 0, max_ed * max_ed, n2 * np.maximum(norm_sq, 0.0))
    s1 = np.clip(scale * scale * var_r, 0.0, bound)
    lim = np.sqrt(s1 * var_f)
    s12 = np.clip(scale * cov_rf, -lim, lim)
    c = (k * 255.0) ** 2
    q = (2 * s12 + c) / (s1 + var_f + c)
    return float(np.mean(q))


def _downsample_symmetric(x: np.ndarray) -> np.ndarray:
    """``imfilter(x, ones(2)/4, 'symmetric', 'same')`` followed by ``(1:2:end, 1:2:end)``."""
    xp = np.pad(x, ((0, 1), (0, 1)), mode="symmetric")
    m = 0.25 * xp[:-1, :-1] + 0.25 * xp[1:, :-1] + 0.25 * xp[:-1, 1:] + 0.25 * xp[1:, 1:]
    return m[::2, ::2]


def _mef_ms_ssim(seq: np.ndarray, f: np.ndarray) -> float:
    levels = len(_MEF_WEIGHTS)
    if min(f.shape) / 2 ** (levels - 1) < 11:
        logger.debug("MEF-MS-SSIM needs the smaller side >= %d px; got %s: NaN", 11 * 2 ** (levels - 1), f.shape)
        return math.nan
    q = []
    for level in range(levels):
        q.append(_mef_ssim(seq, f))
        if level < levels - 1:
            seq = np.stack([_downsample_symmetric(s) for s in seq])
            f = _downsample_symmetric(f)
    return float(np.prod(np.asarray(q) ** _MEF_WEIGHTS))


def _ms_ssim(a: np.ndarray, b: np.ndarray, f: np.ndarray, convention: MSSSIMConvention = "wang") -> float:
    if convention == "wang":
        if min(f.shape) <= 160:
            logger.debug("MS-SSIM (5 levels) needs the smaller side > 160 px; got %s: NaN", f.shape)
            return math.nan
        return _ms_ssim_wang(f, a, b)
    if convention == "mef":
        return _mef_ms_ssim(np.stack([a, b]), f)
    raise ValueError(f"unknown MS-SSIM convention {convention!r}")


def ms_ssim(ir: ImageLike, vi: ImageLike, fused: ImageLike, *, convention: MSSSIMConvention = "wang") -> float:
    """Multi-scale SSIM. Higher is better.

    * ``"wang"`` (default; the Python ``Metric.py`` lineage = pytorch_msssim): ``ms_ssim(ir, F) +
      ms_ssim(vi, F)``, 5 levels with weights [0.0448, 0.2856, 0.3001, 0.2363, 0.1333],
      Gaussian 11/1.5, data range 255, 2x2 average pooling. Range [0, 2]. Needs the smaller side
      > 160 px; smaller images give NaN.
    * ``"mef"`` (Tang's MATLAB ``analysis_ms_ssim``): the MEF-MS-SSIM of Ma, Zeng & Wang 2015 with
      both sources as the exposure stack, K = 0.03, 3 levels, one number in [0, 1]. Needs the
      smaller side >= 44 px, else NaN.
    """
    return _ms_ssim(*prepare_triplet(ir, vi, fused), convention=convention)
