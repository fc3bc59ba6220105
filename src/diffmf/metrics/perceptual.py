"""Human-perception-based fusion metrics: Qcb (Chen & Blum 2009) and Qcv (Chen & Varshney 2007).

Both follow zhengliu6699/imageFusionMetrics as integrated in VIFB (``metricsQcb.m``,
``metricsQcv.m``; ``../shared/golden/METRICS.md`` section 3.14). Every image is first min-max
mapped to integers 0-255 (``normalize1``), then filtered with a contrast sensitivity function in
the frequency domain (``fft2`` on the ``freqspace`` grid). The CSFs are symmetric, so the
filtered images are real up to round-off (MATLAB keeps a ~1e-13 imaginary part; it is dropped
here). Qcb's 31x31 Gaussians are separable and applied with two 1-D passes.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from diffmf.metrics._common import ImageLike, normalize1, prepare_triplet

__all__ = ["qcb", "qcv"]


def _freqspace(m: int, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """MATLAB ``freqspace([m n], 'meshgrid')``: (u, v), each ``(m, n)``; u varies along columns."""
    fu = (np.arange(n) - n // 2) * (2.0 / n)
    fv = (np.arange(m) - m // 2) * (2.0 / m)
    return np.meshgrid(fu, fv)


def _csf_filter(x: np.ndarray, h_centered: np.ndarray) -> np.ndarray:
    """``real(ifft2(ifftshift(fftshift(fft2(x)) .* H)))`` for a centred transfer function ``H``.

    Works on a stack ``(..., m, n)``.
    """
    m, n = x.shape[-2:]
    h = np.fft.ifftshift(h_centered)[:, : n // 2 + 1]
    # H is even in frequency, so the product stays Hermitian and irfft2 gives the real part
    return sfft.irfft2(sfft.rfft2(x, axes=(-2, -1)) * h, s=(m, n), axes=(-2, -1))


# ------------------------------------------------------------------------------------ Qcb

_QCB_F0, _QCB_F1, _QCB_A = 15.3870, 1.3456, 0.7622
_QCB_Z = 1e-4
_HALF = np.arange(-15, 16, dtype=np.float64)


def _gauss_factor(sigma: float) -> np.ndarray:
    # outer(k, k) = exp(-(x^2 + y^2) / (2 sigma^2)) / (2 pi sigma^2): unnormalised, as gaussian2d
    return np.exp(-(_HALF * _HALF) / (2.0 * sigma * sigma)) / math.sqrt(2.0 * math.pi * sigma * sigma)


_G1 = _gauss_factor(2.0)
_G2 = _gauss_factor(4.0)


def _filter2_same_zero(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    y = ndimage.correlate1d(x, k, axis=-2, mode="constant")
    return ndimage.correlate1d(y, k, axis=-1, mode="constant")


def _qcb(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    m, n = f.shape
    stack = np.stack([normalize1(a), normalize1(b), normalize1(f)])
    u, v = _freqspace(m, n)
    u = (n / 30.0) * u
    v = (m / 30.0) * v
    r = np.sqrt(u * u + v * v)
    sd = np.exp(-((r / _QCB_F0) ** 2)) - _QCB_A * np.exp(-((r / _QCB_F1) ** 2))
    filtered = _csf_filter(stack, sd)
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = np.abs(_filter2_same_zero(filtered, _G1) / _filter2_same_zero(filtered, _G2) - 1.0)
        cp = contrast**3 / (contrast**2 + _QCB_Z)
        c1, c2, cf = cp
        mask1 = (c1 < cf).astype(np.float64)
        q1f = (c1 / cf) * mask1 + (cf / c1) * (1.0 - mask1)
        mask2 = (c2 < cf).astype(np.float64)
        q2f = (c2 / cf) * mask2 + (cf / c2) * (1.0 - mask2)
        s = c1 * c1 + c2 * c2
        q = (c1 * c1 / s) * q1f + (c2 * c2 / s) * q2f
    return float(np.mean(q))


def qcb(ir: ImageLike, vi: ImageLike, fused: ImageLike) -> float:
    """Qcb (Chen & Blum 2009): contrast preservation under a human contrast-sensitivity model.

    Images min-max normalised to 0-255; CSF ``exp(-(r/15.387)^2) - 0.7622 exp(-(r/1.3456)^2)``;
    local contrast from two unnormalised Gaussians (sigma 2 and 4, 31x31, zero padding);
    ``C' = C^3 / (C^2 + 1e-4)``; saliency-weighted preservation averaged over pixels.
    Range [0, 1], unitless; higher is better. NaN when an image is constant (0/0 as in the
    reference). Reference: VIFB ``metricsQcb`` (zhengliu6699 ``metricChenBlum``).
    """
    return _qcb(*prepare_triplet(ir, vi, fused))


# ------------------------------------------------------------------------------------ Qcv

_QCV_WIN = 16
_QCV_ALPHA = 5


def _block_reduce_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Sum over non-overlapping ``w x w`` blocks; partial blocks zero-padded (MATLAB blkproc)."""
    m, n = x.shape[-2:]
    pm, pn = (-m) % w, (-n) % w
    if pm or pn:
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, pm), (0, pn)])
    mm, nn = x.shape[-2:]
    return x.reshape(x.shape[:-2] + (mm // w, w, nn // w, w)).sum(axis=(-3, -1))


def _qcv(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    m, n = f.shape
    na, nb, nf = normalize1(a), normalize1(b), normalize1(f)
    src = np.stack([na, nb])
    smooth = np.array([1.0, 2.0, 1.0])
    deriv = np.array([-1.0, 0.0, 1.0])
    gx = ndimage.correlate1d(ndimage.correlate1d(src, smooth, axis=-2, mode="constant"), deriv, axis=-1, mode="constant")
    gy = ndimage.correlate1d(ndimage.correlate1d(src, deriv, axis=-2, mode="constant"), smooth, axis=-1, mode="constant")
    grad = np.sqrt(gx * gx + gy * gy)
    lam = _block_reduce_sum(grad**_QCV_ALPHA, _QCV_WIN)  # (2, bm, bn)

    u, v = _freqspace(m, n)
    u = (n / 8.0) * u
    v = (m / 8.0) * v
    r = np.sqrt(u * u + v * v)
    theta_m = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
    diff = _csf_filter(src - nf, theta_m)
    d = _block_reduce_sum(diff * diff, _QCV_WIN) / float(_QCV_WIN * _QCV_WIN)
    den = float(np.sum(lam))
    if den == 0.0:
        return math.nan
    return float(np.sum(lam * d)) / den


def qcv(ir: ImageLike, vi: ImageLike, fused: ImageLike) -> float:
    """Qcv (Chen & Varshney 2007): edge-saliency-weighted CSF-filtered squared error per 16x16 region.

    Images min-max normalised to 0-255; saliency ``sum G^5`` of the Sobel magnitude per block;
    Mannos-Sakrison CSF ``2.6 (0.0192 + 0.144 r) exp(-(0.144 r)^1.1)``; ``Qcv = sum(l_A D_A +
    l_B D_B) / sum(l_A + l_B)``. Range [0, inf) in squared gray levels (hundreds to thousands on
    TNO); lower is better, 0 when F equals both sources. NaN when both sources are constant.
    Reference: VIFB ``metricsQcv`` (zhengliu6699 ``metricChen``).
    """
    return _qcv(*prepare_triplet(ir, vi, fused))
