"""Histogram-based information measures: MI (Qu et al. 2002) and CE (cross entropy).

Definitions follow ``../shared/golden/METRICS.md`` sections 3.4 and 3.14. The references
disagree on MI's units and binning, so :func:`mi` exposes both as options:

* ``base=e``, ``binning="exact"``: CDDFuse (``sklearn.metrics.mutual_info_score``, nats);
* ``base=2``, ``binning="tang_sat"``: Tang's MATLAB (bits; values 254 and 255 share one joint bin
  because ``uint8(v)+1`` saturates in ``Hab.m``, while the marginals keep them apart);
* ``base=e``, ``binning="vifb_minmax"``: VIFB (each image min-max mapped to 0-255 first).
"""
from __future__ import annotations

import math
from typing import Literal, Union

import numpy as np

from diffmf.metrics._common import ImageLike, prepare_triplet

__all__ = ["mi", "ce", "mutual_information"]

Binning = Literal["exact", "tang_sat", "vifb_minmax"]
Base = Union[float, Literal["e"]]


def _log_base(base: Base) -> float:
    if base == "e":
        return 1.0
    b = float(base)
    if b <= 0 or b == 1:
        raise ValueError(f"invalid log base {base!r}")
    return math.log(b)


def _entropy_from_counts(counts: np.ndarray, total: int) -> float:
    """Entropy in nats of a histogram given as counts (zeros ignored)."""
    c = counts[counts > 0].astype(np.float64)
    p = c / total
    return float(-np.sum(p * np.log(p)))


def _vifb_levels(x: np.ndarray) -> np.ndarray:
    """VIFB ``mutinf``: ``int16((x - min) / (max - min) * 255)`` (round half away from zero); a
    constant image maps to zeros."""
    lo = float(x.min())
    hi = float(x.max())
    if hi == lo:
        return np.zeros(x.shape, dtype=np.int64)
    y = (x - lo) / (hi - lo) * 255.0
    return np.floor(y + 0.5).astype(np.int64)


def mutual_information(x: np.ndarray, y: np.ndarray, *, base: Base = "e", binning: Binning = "exact") -> float:
    """I(X; Y) = H(X) + H(Y) - H(X, Y) of two integer 0-255 float64 images (one term of MI)."""
    n = x.size
    if binning == "vifb_minmax":
        xi = _vifb_levels(x).ravel()
        yi = _vifb_levels(y).ravel()
        joint = np.bincount(xi * 256 + yi, minlength=65536)
        hx = _entropy_from_counts(np.bincount(xi, minlength=256), n)
        hy = _entropy_from_counts(np.bincount(yi, minlength=256), n)
    else:
        xi = x.astype(np.int64).ravel()
        yi = y.astype(np.int64).ravel()
        hx = _entropy_from_counts(np.bincount(xi, minlength=256), n)
        hy = _entropy_from_counts(np.bincount(yi, minlength=256), n)
        if binning == "tang_sat":
            joint = np.bincount(np.minimum(xi, 254) * 256 + np.minimum(yi, 254), minlength=65536)
        elif binning == "exact":
            joint = np.bincount(xi * 256 + yi, minlength=65536)
        else:
            raise ValueError(f"unknown MI binning {binning!r}")
    hxy = _entropy_from_counts(joint, n)
    value = hx + hy - hxy
    if binning == "exact":
        value = max(value, 0.0)  # sklearn clips at 0 (rounding)
    return value / _log_base(base)


def _mi(a: np.ndarray, b: np.ndarray, f: np.ndarray, base: Base = "e", binning: Binning = "exact") -> float:
    return mutual_information(f, a, base=base, binning=binning) + mutual_information(f, b, base=base, binning=binning)


def _kl_bits(p_counts: np.ndarray, q_counts: np.ndarray, n: int) -> float:
    mask = (p_counts > 0) & (q_counts > 0)
    p = p_counts[mask].astype(np.float64) / n
    q = q_counts[mask].astype(np.float64) / n
    return float(np.sum(p * np.log2(p / q)))


def _ce(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    n = f.size
    hf = np.bincount(f.astype(np.int64).ravel(), minlength=256)
    ha = np.bincount(a.astype(np.int64).ravel(), minlength=256)
    hb = np.bincount(b.astype(np.int64).ravel(), minlength=256)
    return (_kl_bits(hb, hf, n) + _kl_bits(ha, hf, n)) / 2.0


def mi(ir: ImageLike, vi: ImageLike, fused: ImageLike, *, base: Base = "e", binning: Binning = "exact") -> float:
    """MI, mutual information ``I(F; ir) + I(F; vi)`` over 256 gray levels (Qu et al. 2002).

    Defaults reproduce CDDFuse (nats, exact 256x256 joint histogram), which the DIFF-MF paper's
    Table I follows. ``base=2, binning="tang_sat"`` reproduces Tang's MATLAB (bits, with the
    254/255 joint-bin merge); ``binning="vifb_minmax"`` reproduces VIFB (nats, min-max mapped).
    Range [0, 2 log(256)] (0-11.09 nats, 0-16 bits); higher is better. F equal to one source X
    gives ``I(F; X) = H(X)``.
    """
    return _mi(*prepare_triplet(ir, vi, fused), base=base, binning=binning)


def ce(ir: ImageLike, vi: ImageLike, fused: ImageLike) -> float:
    """CE, cross entropy ``(KL(p_vi || p_F) + KL(p_ir || p_F)) / 2`` in bits, 256-bin histograms.

    Only bins where both histograms are non-zero are summed (VIFB ``metricsCross_entropy``), so
    the value is finite but can be slightly negative. Range [-0.531, log2(MN)] bits (usually
    0-3); lower is better; 0 when F has the histogram of both sources. Reference: VIFB.
    """
    return _ce(*prepare_triplet(ir, vi, fused))
