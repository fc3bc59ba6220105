"""SCD, the sum of the correlations of differences (Aslantas & Bendes 2015).

``../shared/golden/METRICS.md`` section 3.9; Tang's MATLAB and CDDFuse agree.
"""
from __future__ import annotations

import numpy as np

from diffmf.metrics._common import ImageLike, prepare_triplet
from diffmf.metrics.basic import _pearson

__all__ = ["scd"]


def _scd(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    return _pearson(f - b, a) + _pearson(f - a, b)


def scd(ir: ImageLike, vi: ImageLike, fused: ImageLike) -> float:
    """SCD = ``corr2(F - vi, ir) + corr2(F - ir, vi)`` (Pearson correlations over all pixels).

    Range [-2, 2], unitless; higher is better. ``F - vi`` is the information F took from ir (and
    vice versa). NaN when a source is constant or F equals a source exactly (a zero-variance
    difference image, 0/0), e.g. F = ir gives NaN; reference: Tang MATLAB ``analysis_SCD``,
    CDDFuse ``Evaluator.SCD``.
    """
    return _scd(*prepare_triplet(ir, vi, fused))
