"""Simple statistics of the fused image and pixel-wise comparisons with the sources.

EN, SD, SF, AG, EI (no reference) and CC, MSE, RMSE, PSNR (against both sources). Definitions
follow ``../shared/golden/METRICS.md`` sections 3.1-3.3, 3.7, 3.9, 3.13 and 3.14. Inputs of the
underscore functions are float64 ``(H, W)`` arrays holding integer values 0-255 (see
:func:`diffmf.metrics._common.as_gray255`); the public functions accept any image-like input.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import ndimage

from diffmf.metrics._common import ImageLike, as_gray255, prepare_triplet

__all__ = ["en", "sd", "sf", "ag", "ei", "cc", "mse", "rmse", "psnr"]

SFNorm = Literal["per_direction", "mn"]
AGNorm = Literal["mn", "m1n1"]
PSNRConvention = Literal["cdd", "tang", "vifb"]
RMSEConvention = Literal["root_mse", "vifb"]


# ---------------------------------------------------------------------------- implementations


def _en(f: np.ndarray) -> float:
    counts = np.bincount(f.astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / f.size
    return float(-np.sum(p * np.log2(p)))


def _sd(f: np.ndarray) -> float:
    return float(np.std(f))


def _sf(f: np.ndarray, norm: SFNorm = "per_direction") -> float:
    dh = np.diff(f, axis=1)
    dv = np.diff(f, axis=0)
    if norm == "per_direction":
        return math.sqrt(float(np.mean(dh * dh)) + float(np.mean(dv * dv)))
    if norm == "mn":
        return math.sqrt((float(np.sum(dh * dh)) + float(np.sum(dv * dv))) / f.size)
    raise ValueError(f"unknown SF norm {norm!r}")


def _ag(f: np.ndarray, norm: AGNorm = "mn") -> float:
    gy, gx = np.gradient(f)  # MATLAB gradient: central inside, one-sided at the borders
    s = float(np.sum(np.sqrt((gx * gx + gy * gy) / 2.0)))
    m, n = f.shape
    if norm == "mn":
        return s / (m * n)
    if norm == "m1n1":
        return s / ((m - 1) * (n - 1))
    raise ValueError(f"unknown AG norm {norm!r}")


def _ei(f: np.ndarray) -> float:
    # imfilter(F, fspecial('sobel'), 'replicate') = correlation with outer([1,0,-1], [1,2,1])
    smooth = np.array([1.0, 2.0, 1.0])
    deriv = np.array([1.0, 0.0, -1.0])
    gx = ndimage.correlate1d(ndimage.correlate1d(f, deriv, axis=0, mode="nearest"), smooth, axis=1, mode="nearest")
    gy = ndimage.correlate1d(ndimage.correlate1d(f, smooth, axis=0, mode="nearest"), deriv, axis=1, mode="nearest")
    return float(np.mean(np.sqrt(gx * gx + gy * gy)))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc = x - x.mean()
    yc = y - y.mean()
    den = math.sqrt(float(np.sum(xc * xc)) * float(np.sum(yc * yc)))
    num = float(np.sum(xc * yc))
    if den == 0.0:
        return math.nan
    return num / den


def _cc(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    return (_pearson(a, f) + _pearson(b, f)) / 2.0


def _mse(a: np.ndarray, b: np.ndarray, f: np.ndarray, scale: float = 255.0) -> float:
    da = a - f
    db = b - f
    m = (float(np.mean(da * da)) + float(np.mean(db * db))) / 2.0
    return m if scale == 255.0 else m * (scale / 255.0) ** 2


def _vifb_mse(x: np.ndarray, f: np.ndarray) -> float:
    d = x - f
    return math.sqrt(float(np.sum(d * d))) / x.size


def _rmse(a: np.ndarray, b: np.ndarray, f: np.ndarray, convention: RMSEConvention = "root_mse", scale: float = 255.0) -> float:
    if convention == "root_mse":
        return math.sqrt(_mse(a, b, f, scale))
    if convention == "vifb":
        return (_vifb_mse(b, f) + _vifb_mse(a, f)) / 2.0
    raise ValueError(f"unknown RMSE convention {convention!r}")


def _log10_ratio(num: float, den: float) -> float:
    if den == 0.0:
        return math.inf if num > 0 else math.nan
    if num == 0.0:
        return -math.inf
    return math.log10(num / den)


def _psnr(a: np.ndarray, b: np.ndarray, f: np.ndarray, convention: PSNRConvention = "cdd") -> float:
    if convention == "cdd":
        peak = float(f.max())
        return 10.0 * _log10_ratio(peak * peak, _mse(a, b, f))
    if convention == "tang":
        return 20.0 * _log10_ratio(255.0, math.sqrt(_mse(a, b, f, scale=1.0)))
    if convention == "vifb":
        return 20.0 * _log10_ratio(255.0, math.sqrt(_rmse(a, b, f, convention="vifb")))
    raise ValueError(f"unknown PSNR convention {convention!r}")


# ---------------------------------------------------------------------------- public functions


def en(fused: ImageLike) -> float:
    """EN, Shannon entropy of the fused image's 256-bin gray histogram.

    ``EN = -sum_k p_k log2 p_k``. Range [0, 8] bits; higher is better. Identical in all three
    references (Tang MATLAB ``entropy``, CDDFuse ``Evaluator.EN``, VIFB ``metricsEntropy``).
    """
    return _en(as_gray255(fused, name="fused"))


def sd(fused: ImageLike) -> float:
    """SD, population standard deviation (divisor MN) of the fused image on 0-255 data.

    Range [0, 127.5] gray levels; higher is better. Identical in Tang (current version), CDDFuse
    and VIFB ("Variance").
    """
    return _sd(as_gray255(fused, name="fused"))


def sf(fused: ImageLike, *, norm: SFNorm = "per_direction") -> float:
    """SF, spatial frequency ``sqrt(RF^2 + CF^2)`` of the fused image on 0-255 data.

    ``norm="per_direction"`` (Tang, CDDFuse; default): ``sqrt(mean(Dh^2) + mean(Dv^2))`` with each
    mean over its own number of differences. ``norm="mn"`` (VIFB): both sums divided by MN.
    Range [0, ~360] gray levels per pixel; higher is better.
    """
    return _sf(as_gray255(fused, name="fused"), norm)


def ag(fused: ImageLike, *, norm: AGNorm = "mn") -> float:
    """AG, average gradient ``sum sqrt((Gx^2 + Gy^2) / 2) / D`` with MATLAB ``gradient``.

    ``norm="mn"`` (CDDFuse; default): D = MN. ``norm="m1n1"`` (Tang, VIFB): D = (M-1)(N-1).
    Range [0, ~255] gray levels per pixel; higher is better.
    """
    return _ag(as_gray255(fused, name="fused"), norm)


def ei(fused: ImageLike) -> float:
    """EI, edge intensity: mean Sobel gradient magnitude (``imfilter`` with replicate padding).

    Range [0, ~1443] gray levels; higher is better. Reference: VIFB ``metricsEdge_intensity``.
    """
    return _ei(as_gray255(fused, name="fused"))


def cc(ir: ImageLike, vi: ImageLike, fused: ImageLike) -> float:
    """CC, mean Pearson correlation ``(r(ir, F) + r(vi, F)) / 2``.

    Range [-1, 1], unitless; higher is better. Tang and CDDFuse agree. NaN when an image is
    constant (zero variance).
    """
    return _cc(*prepare_triplet(ir, vi, fused))


def mse(ir: ImageLike, vi: ImageLike, fused: ImageLike, *, scale: float = 255.0) -> float:
    """MSE, ``(mean((ir-F)^2) + mean((vi-F)^2)) / 2``.

    ``scale=255`` (CDDFuse; default): on 0-255 data, Range [0, 65025] gray levels squared.
    ``scale=1`` (Tang): on [0, 1] data (the 0-255 value / 255^2), Range [0, 1]. Lower is better.
    """
    return _mse(*prepare_triplet(ir, vi, fused), scale=scale)


def rmse(
    ir: ImageLike, vi: ImageLike, fused: ImageLike, *, convention: RMSEConvention = "root_mse", scale: float = 255.0
) -> float:
    """RMSE. Lower is better.

    ``convention="root_mse"`` (default; CDDFuse and Tang have no RMSE): ``sqrt(MSE)`` with
    :func:`mse`'s ``scale`` (Range [0, 255] gray levels at scale 255). ``convention="vifb"`` (VIFB ``metricsRmse``):
    ``(sqrt(sum (vi-F)^2) + sqrt(sum (ir-F)^2)) / (2 MN)``, which is not a root mean square
    (Range [0, 255/sqrt(MN)]).
    """
    return _rmse(*prepare_triplet(ir, vi, fused), convention=convention, scale=scale)


def psnr(ir: ImageLike, vi: ImageLike, fused: ImageLike, *, convention: PSNRConvention = "cdd") -> float:
    """PSNR in dB; higher is better. Range unbounded in principle (on TNO: ~12-17 dB for
    ``cdd``, ~60-68 dB for ``tang``, ~50-61 dB for ``vifb``). Three incompatible conventions
    (METRICS.md 3.13), one per reference:

    * ``"cdd"`` (default, CDDFuse): ``10 log10(max(F)^2 / MSE)`` with the 0-255 MSE; ~12-17 dB on TNO.
    * ``"tang"``: ``20 log10(255 / sqrt(MSE01))`` with the [0, 1] MSE; textbook value + 48.13 dB.
    * ``"vifb"``: ``20 log10(255 / sqrt(RMSE_vifb))``; ~50-61 dB on TNO.

    ``+inf`` when the fused image equals both sources (MSE = 0).
    """
    return _psnr(*prepare_triplet(ir, vi, fused), convention=convention)
