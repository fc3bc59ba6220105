"""Visual information fidelity: VIF as the IVIF literature uses it (VIFP-sum) and Han et al.'s
2013 VIFF.

Both are built on the same multiscale pixel-domain statistics of Sheikh & Bovik (``vifp_mscale``,
``../shared/golden/METRICS.md`` sections 3.5 and 3.6): four scales with Gaussian windows of
size 17, 9, 5, 3 (sigma = N/5), 'valid' filtering and 2x decimation between scales. The
Gaussian windows are separable, so the local moments of all images at one scale are filtered
together with two 1-D passes (:func:`vif_statistics`); VIF and VIFF share them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, MutableMapping, Optional

import numpy as np

from scipy import ndimage

from diffmf.metrics._common import ImageLike, filter2_valid, fspecial_gaussian_1d, prepare_triplet

__all__ = ["vif", "viff", "vifp", "vif_statistics", "VIFScale"]

_EPS = 1e-10
_VIFP_SIGMA_NSQ = 2.0
_VIFF_SIGMA_NSQ = 0.005 * 255.0 * 255.0
_VIFF_WEIGHTS = np.array([1.0, 0.0, 0.15, 1.0]) / 2.15
_VIFF_C = 1e-7


@dataclass
class VIFScale:
    """Local moments of the sources against F at one scale (float64 maps of equal size)."""

    sigma1_sq: List[np.ndarray]  # variance of each source, clamped at 0
    sigma2_sq: np.ndarray  # variance of F, clamped at 0
    sigma12: List[np.ndarray]  # covariance of each source with F


def vif_statistics(sources: List[np.ndarray], f: np.ndarray) -> List[VIFScale]:
    """Sheikh-Bovik 4-scale local statistics of each source (reference) against ``f``.

    Args:
        sources: reference images, float64 ``(H, W)`` on 0-255.
        f: the distorted (fused) image, same size.
    Returns:
        One :class:`VIFScale` per scale. As in MATLAB, a scale whose image is smaller than its
        window gets empty maps (all four scales need at least 41x41 pixels; below 17x17 nothing
        is left and VIF is NaN).
    """
    n_src = len(sources)
    imgs = np.stack(list(sources) + [f])  # (S+1, H, W)
    out: List[VIFScale] = []
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        k = fspecial_gaussian_1d(n, n / 5.0)
        h = n // 2
        if scale > 1 and min(imgs.shape[-2:]) >= n:
            # filter2(win, x, 'valid') then x(1:2:end, 1:2:end), decimating between the passes
            rows = ndimage.correlate1d(imgs, k, axis=-2, mode="constant")[:, h : imgs.shape[-2] - h : 2, :]
            imgs = ndimage.correlate1d(rows, k, axis=-1, mode="constant")[:, :, h : imgs.shape[-1] - h : 2]
        if min(imgs.shape[-2:]) < n:
            # MATLAB's filter2 'valid' gives empty maps: this scale and the coarser ones add nothing
            imgs = np.zeros((n_src + 1, 0, 0))
            empty = np.zeros((0, 0))
            out.append(VIFScale([empty] * n_src, empty, [empty] * n_src))
            continue
        d = imgs[-1]
        prods = np.concatenate([imgs, imgs * imgs, imgs[:-1] * d])  # mu terms, squares, cross terms
        filt = filter2_valid(prods, k)
        mu = filt[: n_src + 1]
        sq = filt[n_src + 1 : 2 * n_src + 2]
        cross = filt[2 * n_src + 2 :]
        mu_f = mu[-1]
        sigma2_sq = np.maximum(sq[-1] - mu_f * mu_f, 0.0)
        s1 = [np.maximum(sq[i] - mu[i] * mu[i], 0.0) for i in range(n_src)]
        s12 = [cross[i] - mu[i] * mu_f for i in range(n_src)]
        out.append(VIFScale(s1, sigma2_sq, s12))
    return out


def _vif_maps(s1: np.ndarray, s2: np.ndarray, s12: np.ndarray, sigma_nsq: float):
    """The clamps of ``vifp_mscale`` in their original order; returns (VID, VIND, g) maps."""
    s1 = s1.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        g = s12 / (s1 + _EPS)
    sv = s2 - g * s12
    m = s1 < _EPS
    g[m] = 0.0
    sv[m] = s2[m]
    s1[m] = 0.0
    m = s2 < _EPS
    g[m] = 0.0
    sv[m] = 0.0
    m = g < 0
    sv[m] = s2[m]
    g[m] = 0.0
    sv[sv <= _EPS] = _EPS
    vid = np.log10(1.0 + g * g * s1 / (sv + sigma_nsq))
    vind = np.log10(1.0 + s1 / sigma_nsq)
    return vid, vind, g


def _vifp_from_stats(stats: List[VIFScale], i: int, nan_as_one: bool) -> float:
    num = 0.0
    den = 0.0
    for st in stats:
        vid, vind, _ = _vif_maps(st.sigma1_sq[i], st.sigma2_sq, st.sigma12[i], _VIFP_SIGMA_NSQ)
        num += float(np.sum(vid))
        den += float(np.sum(vind))
    if den == 0.0:
        return 1.0 if nan_as_one else math.nan
    return num / den


def _stats(a: np.ndarray, b: np.ndarray, f: np.ndarray, cache: Optional[MutableMapping]) -> List[VIFScale]:
    if cache is not None and "vif_stats" in cache:
        return cache["vif_stats"]
    st = vif_statistics([a, b], f)
    if cache is not None:
        cache["vif_stats"] = st
    return st


def _vif(a: np.ndarray, b: np.ndarray, f: np.ndarray, nan_as_one: bool = False, cache: Optional[Dict] = None) -> float:
    st = _stats(a, b, f, cache)
    return _vifp_from_stats(st, 0, nan_as_one) + _vifp_from_stats(st, 1, nan_as_one)


def _viff(a: np.ndarray, b: np.ndarray, f: np.ndarray, cache: Optional[Dict] = None) -> float:
    st = _stats(a, b, f, cache)
    total = 0.0
    for p, s in zip(_VIFF_WEIGHTS, st):
        vid_a, vind_a, g_a = _vif_maps(s.sigma1_sq[0], s.sigma2_sq, s.sigma12[0], _VIFF_SIGMA_NSQ)
        vid_b, vind_b, g_b = _vif_maps(s.sigma1_sq[1], s.sigma2_sq, s.sigma12[1], _VIFF_SIGMA_NSQ)
        use_a = g_a < g_b  # ties go to source B, as in VIFF_Public.m
        vid = np.where(use_a, vid_a, vid_b)
        vind = np.where(use_a, vind_a, vind_b)
        den = float(np.sum(vind + _VIFF_C))
        f_s = float(np.sum(vid + _VIFF_C)) / den if den > 0 else math.nan
        total += p * f_s
    return total


def vifp(ref: ImageLike, dist: ImageLike) -> float:
    """VIFP(ref -> dist): Sheikh-Bovik multiscale pixel VIF, sigma_n^2 = 2 on 0-255 data.

    ``sum over scales and pixels of log10(1 + g^2 s1^2 / (sv^2 + 2))`` divided by
    ``sum log10(1 + s1^2 / 2)``. Range [0, ~1] (above 1 for contrast enhancement); NaN for a
    constant reference (0/0). Reference: ``vifp_mscale.m`` as used by Tang's evaluation.
    """
    from diffmf.metrics._common import as_gray255

    r = as_gray255(ref, name="ref")
    d = as_gray255(dist, name="dist")
    if r.shape != d.shape:
        raise ValueError(f"size mismatch: ref {r.shape}, dist {d.shape}")
    return _vifp_from_stats(vif_statistics([r], d), 0, nan_as_one=False)


def vif(ir: ImageLike, vi: ImageLike, fused: ImageLike, *, nan_as_one: bool = False) -> float:
    """VIF as the fusion literature uses it: ``VIFP(ir -> F) + VIFP(vi -> F)``, two separate ratios.

    Sheikh & Bovik's multiscale pixel VIF with sigma_n^2 = 2 on 0-255 data (Tang's
    ``vifp_mscale``, CDDFuse's ``Evaluator.VIFF``; both agree to 1e-12). Papers cite Han et al.
    2013 for it, but that is a different number (:func:`viff`). Range [0, ~2], unitless; higher is
    better (F = ir gives ``1 + VIFP(vi -> ir)``). A constant source makes its term 0/0: NaN, or
    1.0 with ``nan_as_one=True`` (CDDFuse's behaviour).
    """
    return _vif(*prepare_triplet(ir, vi, fused), nan_as_one=nan_as_one)


def viff(ir: ImageLike, vi: ImageLike, fused: ImageLike) -> float:
    """VIFF of Han, Cai, Cao & Xu 2013 (``VIFF_Public.m``), gray path.

    Same 4-scale statistics as VIFP with visual noise sigma_n^2 = 0.005 * 255^2; per scale and
    pixel the source with the smaller gain g is kept (ties go to vi), ``F_s = sum(VID + 1e-7) /
    sum(VIND + 1e-7)`` and ``VIFF = sum_s p_s F_s`` with p = [1, 0, 0.15, 1] / 2.15. Range
    [0, ~1], unitless; higher is better. Numerically fragile in flat saturated regions (about
    1e-4 relative between implementations). Reference: Han 2013 (run in the ``vifb`` goldens).
    """
    return _viff(*prepare_triplet(ir, vi, fused))
