"""Edge-based measures of Xydeas & Petrovic: Qabf (edge information transferred) and Nabf
(artefacts added, with B. K. Shreyamsha Kumar's modification).

Definitions follow ``../shared/golden/METRICS.md`` sections 3.8 and 3.10. Both need exact
arithmetic for their equality tests (``SAx == 0``, ``gA == gF``): on integer 0-255 data the
Sobel responses are exact in float64, so all references agree.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np
from scipy import ndimage

from diffmf.metrics._common import ImageLike, prepare_triplet

__all__ = ["qabf", "nabf"]

_SMOOTH = np.array([1.0, 2.0, 1.0])
_DERIV = np.array([-1.0, 0.0, 1.0])


def _sobel(x: np.ndarray, mode: str) -> Tuple[np.ndarray, np.ndarray]:
    """(horizontal derivative, vertical derivative) by correlation with the 3x3 Sobel kernels."""
    gx = ndimage.correlate1d(ndimage.correlate1d(x, _SMOOTH, axis=0, mode=mode), _DERIV, axis=1, mode=mode)
    gy = ndimage.correlate1d(ndimage.correlate1d(x, _DERIV, axis=0, mode=mode), _SMOOTH, axis=1, mode=mode)
    return gx, gy


# ------------------------------------------------------------------------------------ Qabf

_TG, _KG, _DG = 0.9994, -15.0, 0.5
_TA, _KA, _DA = 0.9879, -22.0, 0.8


def _qabf_edges(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Edge strength g and orientation alpha = atan(SAy / SAx) (pi/2 where SAx == 0)."""
    # conv2(A, h3/h1, 'same') with zero padding (true convolution). The sign convention matters
    # where SAx == 0 (alpha = +pi/2 is compared with the other image's signed angle).
    gx, gy = _sobel(x, "constant")
    sx, sy = -gx, gy  # conv2(A, h3, 'same') = -corr(h3); conv2(A, h1, 'same') = corr(-h1)
    g = np.sqrt(sx * sx + sy * sy)
    zero = sx == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.arctan(sy / np.where(zero, 1.0, sx))
    alpha[zero] = math.pi / 2
    return g, alpha


def _qabf_preservation(g_src: np.ndarray, a_src: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        gaf = np.where(g_src > g_f, g_f / g_src, np.where(g_src == g_f, g_f, g_src / g_f))
    aaf = 1.0 - np.abs(a_src - a_f) / (math.pi / 2)
    qg = _TG / (1.0 + np.exp(_KG * (gaf - _DG)))
    qa = _TA / (1.0 + np.exp(_KA * (aaf - _DA)))
    return qg * qa


def _qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    ga, aa = _qabf_edges(a)
    gb, ab = _qabf_edges(b)
    gf, af = _qabf_edges(f)
    qaf = _qabf_preservation(ga, aa, gf, af)
    qbf = _qabf_preservation(gb, ab, gf, af)
    den = float(np.sum(ga + gb))
    if den == 0.0:
        return math.nan
    return float(np.sum(qaf * ga + qbf * gb)) / den


def qabf(ir: ImageLike, vi: ImageLike, fused: ImageLike) -> float:
    """Qabf (Xydeas & Petrovic 2000): gradient-weighted preservation of the sources' edges in F.

    Sobel (zero padding) strength and ``atan`` orientation; sigmoid constants Tg=0.9994,
    kg=-15, Dg=0.5, Ta=0.9879, ka=-22, Da=0.8; weights g^1. Keeps the references' quirk that
    the strength ratio is ``gF`` (not 1) where ``gA == gF``. Range [0, 0.9753] (the maximum
    ``0.9994 * 0.9879 / (1 + e^-4.4)``, reached when F = ir = vi), unitless; higher is better.
    F equal to one source X gives at least ``0.975 * sum(gX) / sum(gA + gB)``. NaN when both
    sources are constant. Identical in Tang, CDDFuse and VIFB.
    """
    return _qabf(*prepare_triplet(ir, vi, fused))


# ------------------------------------------------------------------------------------ Nabf

_TD, _WT_MIN, _LG = 2.0, 0.001, 1.5
_NRG, _KG_N, _SG = 0.9999, 19.0, 0.5
_NRA, _KA_N, _SA = 0.9995, 22.0, 0.5


def _nabf_edges(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    # sobel_fn: Sobel / 8 on the image mirrored by one pixel without repeating the edge
    # (per_extn_im_fn = numpy 'reflect' = scipy 'mirror').
    # Kumar's gv is the horizontal derivative, gh the vertical one; alpha = atan(gv / gh).
    gv, gh = _sobel(x, "mirror")
    gv = gv / 8.0
    gh = gh / 8.0
    g = np.sqrt(gh * gh + gv * gv)
    both_zero = (gv == 0) & (gh == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.arctan(gv / gh)
    alpha[both_zero] = 0.0
    return g, alpha


def _nabf_q(g_src: np.ndarray, a_src: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        gaf = np.where((g_src == 0) | (g_f == 0), 0.0, np.where(g_src > g_f, g_f / g_src, g_src / g_f))
    aaf = np.abs(np.abs(a_src - a_f) - math.pi / 2) * 2.0 / math.pi
    qg = _NRG / (1.0 + np.exp(-_KG_N * (gaf - _SG)))
    qa = _NRA / (1.0 + np.exp(-_KA_N * (aaf - _SA)))
    return np.sqrt(qg * qa)


def _nabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    ga, aa = _nabf_edges(a)
    gb, ab = _nabf_edges(b)
    gf, af = _nabf_edges(f)
    qaf = _nabf_q(ga, aa, gf, af)
    qbf = _nabf_q(gb, ab, gf, af)
    wa = np.where(ga >= _TD, ga ** _LG, _WT_MIN)
    wb = np.where(gb >= _TD, gb ** _LG, _WT_MIN)
    artefact = (gf > ga) & (gf > gb)
    num = float(np.sum(np.where(artefact, (1.0 - qaf) * wa + (1.0 - qbf) * wb, 0.0)))
    return num / float(np.sum(wa + wb))


def nabf(ir: ImageLike, vi: ImageLike, fused: ImageLike) -> float:
    """Nabf, fusion artefacts (Petrovic, as modified by B. K. Shreyamsha Kumar 2013).

    Share of the sources' weighted edge information lost where F has stronger edges than both
    sources (i.e. artefacts): ``sum[1{gF>gA, gF>gB} ((1-QAF) wA + (1-QBF) wB)] / sum(wA + wB)``,
    Sobel/8 on a mirrored border, weights ``g^1.5`` above Td=2 else 0.001. Range [0, 1],
    unitless; lower is better (0 for F equal to a source). Always finite (the weights are > 0).
    Reference: Tang MATLAB ``analysis_nabf`` (from Kumar's ``objective_fusion_perform_fn``).
    """
    return _nabf(*prepare_triplet(ir, vi, fused))
