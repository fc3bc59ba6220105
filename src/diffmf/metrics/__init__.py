"""Image-fusion metrics that reproduce the field's reference evaluators.

All metrics work on 0-255 gray data with integer values (the saved uint8 image; RGB converted
with MATLAB ``rgb2gray`` weights), computed in float64. Three profiles reproduce the three
reference implementations: ``cdd`` (CDDFuse's Python evaluator; the default, as in the DIFF-MF
paper's Table I), ``tang`` (Tang's MATLAB) and ``vifb`` (VIFB). See ``docs/metrics.md``.

Quick use::

    from diffmf.metrics import evaluate, METRICS, mi
    scores = evaluate(ir, vi, fused)                      # all metrics, cdd profile
    scores = evaluate(ir, vi, fused, ["EN", "MI"], profile="tang")
    METRICS["MI"].direction, METRICS["MI"].reference("tang")
    mi(ir, vi, fused, base=2, binning="tang_sat")         # one metric, explicit convention
"""
from __future__ import annotations

from diffmf.metrics._common import ImageTooSmallError, as_gray255, load_gray, rgb2gray_u8
from diffmf.metrics.api import METRICS, PAPER_METRICS, MetricSpec, evaluate, evaluate_arrays, resolve_metrics
from diffmf.metrics.basic import ag, cc, ei, en, mse, psnr, rmse, sd, sf
from diffmf.metrics.gradient import nabf, qabf
from diffmf.metrics.information import ce, mi, mutual_information
from diffmf.metrics.perceptual import qcb, qcv
from diffmf.metrics.profiles import DEFAULT_PROFILE, PROFILE_DESCRIPTIONS, PROFILES, REFERENCE_METRICS, Variant
from diffmf.metrics.scd import scd
from diffmf.metrics.structural import ms_ssim, ssim
from diffmf.metrics.vif import vif, viff, vifp

__all__ = [
    "evaluate", "evaluate_arrays", "resolve_metrics", "METRICS", "MetricSpec", "PAPER_METRICS",
    "PROFILES", "PROFILE_DESCRIPTIONS", "REFERENCE_METRICS", "DEFAULT_PROFILE", "Variant",
    "as_gray255", "load_gray", "rgb2gray_u8", "ImageTooSmallError",
    "en", "sd", "sf", "mi", "vif", "ag", "qabf", "scd", "cc", "ssim", "ms_ssim", "psnr", "mse", "rmse",
    "nabf", "qcb", "qcv", "ce", "ei", "viff", "vifp", "mutual_information",
]
