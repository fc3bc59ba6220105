"""The metric registry and :func:`evaluate`.

``METRICS`` maps a metric name to a :class:`MetricSpec`: a callable
(``METRICS["MI"](ir, vi, fused, profile="tang")``) carrying the metric's metadata (direction,
range, units, one-line formula, and per profile the reference it reproduces).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterable, List, Literal, Mapping, Optional, Sequence, Tuple

import numpy as np

from diffmf.metrics import basic, gradient, information, perceptual, scd, structural, vif
from diffmf.metrics._common import ImageLike, ImageTooSmallError, prepare_triplet
from diffmf.metrics.profiles import DEFAULT_PROFILE, PROFILES, REFERENCE_METRICS, Variant, get_variant

logger = logging.getLogger(__name__)

__all__ = ["MetricSpec", "METRICS", "PAPER_METRICS", "evaluate", "evaluate_arrays", "resolve_metrics"]

Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its implementation and metadata. Call it as ``spec(ir, vi, fused, profile=...)``.

    Attributes:
        name: canonical name (``"MI"``).
        title: full name.
        direction: ``"higher"`` or ``"lower"`` is better.
        range: value range (the profile's :class:`Variant` may narrow or change it).
        units: units of the value.
        formula: the definition in one line.
        func: the public per-metric function (e.g. :func:`diffmf.metrics.mi`).
        needs_sources: False for no-reference metrics computed on F alone.
    """

    name: str
    title: str
    direction: Direction
    range: str
    units: str
    formula: str
    func: Callable[..., float]
    impl: Callable[..., float]
    needs_sources: bool = True
    uses_cache: bool = False

    @property
    def arrow(self) -> str:
        """``"↑"`` when higher is better, ``"↓"`` otherwise."""
        return "\u2191" if self.direction == "higher" else "\u2193"

    def variant(self, profile: str = DEFAULT_PROFILE) -> Variant:
        """How this metric is computed in ``profile``."""
        return get_variant(profile, self.name)

    def reference(self, profile: str = DEFAULT_PROFILE) -> str:
        """The reference implementation this metric follows in ``profile``."""
        return self.variant(profile).reference

    def range_in(self, profile: str = DEFAULT_PROFILE) -> str:
        return self.variant(profile).range or self.range

    def units_in(self, profile: str = DEFAULT_PROFILE) -> str:
        return self.variant(profile).units or self.units

    def compute(
        self, a: np.ndarray, b: np.ndarray, f: np.ndarray, profile: str = DEFAULT_PROFILE, cache: Optional[Dict[str, Any]] = None
    ) -> float:
        """Compute on prepared float64 0-255 gray arrays (see :func:`prepare_triplet`).

        An image smaller than the metric's window gives NaN (logged at debug level), not an error.
        """
        opts = dict(self.variant(profile).options)
        if self.uses_cache:
            opts["cache"] = cache
        try:
            if self.needs_sources:
                return float(self.impl(a, b, f, **opts))
            return float(self.impl(f, **opts))
        except ImageTooSmallError as exc:
            logger.debug("%s: %s; reporting NaN", self.name, exc)
            return math.nan

    def __call__(
        self, ir: ImageLike, vi: ImageLike, fused: ImageLike, *, profile: str = DEFAULT_PROFILE, data_range: float = 255.0
    ) -> float:
        a, b, f = prepare_triplet(ir, vi, fused, data_range=data_range)
        return self.compute(a, b, f, profile)


def _spec(name: str, title: str, direction: Direction, range_: str, units: str, formula: str, func, impl, **kw) -> MetricSpec:
    return MetricSpec(name, title, direction, range_, units, formula, func, impl, **kw)


_SPECS: List[MetricSpec] = [
    _spec("EN", "entropy", "higher", "[0, 8]", "bits", "-sum_k p_k log2 p_k over the 256-bin histogram of F",
          basic.en, basic._en, needs_sources=False),
    _spec("SD", "standard deviation", "higher", "[0, 127.5]", "gray levels", "sqrt(mean((F - mean F)^2))",
          basic.sd, basic._sd, needs_sources=False),
    _spec("SF", "spatial frequency", "higher", "[0, ~360]", "gray levels", "sqrt(mean(Dh^2) + mean(Dv^2)) of F",
          basic.sf, basic._sf, needs_sources=False),
    _spec("MI", "mutual information", "higher", "[0, 2 log 256]", "nats or bits (profile)", "I(F;ir) + I(F;vi), 256-level histograms",
          information.mi, information._mi),
    _spec("VIF", "visual information fidelity (VIFP-sum)", "higher", "[0, ~2]", "unitless",
          "VIFP(ir->F) + VIFP(vi->F), Sheikh-Bovik 4-scale pixel VIF, sigma_n^2 = 2",
          vif.vif, vif._vif, uses_cache=True),
    _spec("AG", "average gradient", "higher", "[0, ~255]", "gray levels", "sum sqrt((Gx^2 + Gy^2) / 2) / MN (cdd) or /(M-1)(N-1)",
          basic.ag, basic._ag, needs_sources=False),
    _spec("Qabf", "edge information transfer (Xydeas-Petrovic)", "higher", "[0, 0.9753]", "unitless",
          "sum(Q_AF g_A + Q_BF g_B) / sum(g_A + g_B), Sobel strength/orientation preservation",
          gradient.qabf, gradient._qabf),
    _spec("SCD", "sum of the correlations of differences", "higher", "[-2, 2]", "unitless", "corr(F - vi, ir) + corr(F - ir, vi)",
          scd.scd, scd._scd),
    _spec("CC", "correlation coefficient", "higher", "[-1, 1]", "unitless", "(corr(ir, F) + corr(vi, F)) / 2",
          basic.cc, basic._cc),
    _spec("SSIM", "structural similarity", "higher", "[-2, 2]", "unitless", "ssim(F, ir) + ssim(F, vi) (convention per profile)",
          structural.ssim, structural._ssim),
    _spec("MS_SSIM", "multi-scale structural similarity", "higher", "[0, 2]", "unitless",
          "Wang 5-level MS-SSIM summed over sources (cdd, vifb) or MEF-MS-SSIM (tang)",
          structural.ms_ssim, structural._ms_ssim),
    _spec("PSNR", "peak signal-to-noise ratio", "higher", "(-inf, inf)", "dB", "10 log10(peak^2 / MSE) (convention per profile)",
          basic.psnr, basic._psnr),
    _spec("MSE", "mean squared error", "lower", "[0, 65025]", "gray levels squared", "(mean((ir-F)^2) + mean((vi-F)^2)) / 2",
          basic.mse, basic._mse),
    _spec("RMSE", "root mean squared error", "lower", "[0, 255]", "gray levels", "sqrt(MSE) (cdd, tang) or VIFB's root-sum form",
          basic.rmse, basic._rmse),
    _spec("Nabf", "fusion artefacts (Kumar's modified Petrovic)", "lower", "[0, 1]", "unitless",
          "sum[1{gF>gA,gF>gB} ((1-Q_AF) w_A + (1-Q_BF) w_B)] / sum(w_A + w_B)",
          gradient.nabf, gradient._nabf),
    _spec("Qcb", "Chen-Blum perceptual contrast preservation", "higher", "[0, 1]", "unitless",
          "mean(lambda_A Q_AF + lambda_B Q_BF) of CSF-filtered local contrast",
          perceptual.qcb, perceptual._qcb),
    _spec("Qcv", "Chen-Varshney perceptual error", "lower", "[0, inf)", "gray levels squared",
          "sum(lambda_A D_A + lambda_B D_B) / sum(lambda_A + lambda_B) over 16x16 regions",
          perceptual.qcv, perceptual._qcv),
    _spec("CE", "cross entropy", "lower", "[-0.531, log2(MN)], usually [0, 3]", "bits", "(KL(p_vi||p_F) + KL(p_ir||p_F)) / 2 over common bins",
          information.ce, information._ce),
    _spec("EI", "edge intensity", "higher", "[0, ~1443]", "gray levels", "mean sqrt(Sx^2 + Sy^2), Sobel with replicate padding",
          basic.ei, basic._ei, needs_sources=False),
    _spec("VIFF", "VIFF (Han et al. 2013)", "higher", "[0, ~1]", "unitless",
          "sum_s p_s sum(VID_min-g + 1e-7) / sum(VIND_min-g + 1e-7), sigma_n^2 = 0.005 * 255^2",
          vif.viff, vif._viff, uses_cache=True),
]

#: name -> :class:`MetricSpec`, in the paper's order (EN SD SF MI VIF AG) then the others.
METRICS: Mapping[str, MetricSpec] = MappingProxyType({s.name: s for s in _SPECS})

#: The six metrics of the DIFF-MF paper's Table I, in its column order.
PAPER_METRICS: Tuple[str, ...] = ("EN", "SD", "SF", "MI", "VIF", "AG")

_ALIASES = {k.lower().replace("-", "_"): k for k in METRICS}
_ALIASES.update({"ms_ssim_mef": "MS_SSIM", "msssim": "MS_SSIM", "viff_han2013": "VIFF", "vifp": "VIF"})
_GROUPS = ("all", "paper", "reference")


def resolve_metrics(names: Optional[Iterable[str]] = None, profile: str = DEFAULT_PROFILE) -> List[str]:
    """Canonical metric names, in registry order, for user-given names or groups.

    ``None`` or ``"all"``: every metric; ``"paper"``: EN SD SF MI VIF AG; ``"reference"``: the
    metrics the profile's own reference computes. Names are case-insensitive and may be
    separated by commas. Unknown names raise ``ValueError`` listing the choices.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    if names is None:
        return list(METRICS)
    if isinstance(names, str):
        names = [names]
    wanted: List[str] = []
    for raw in names:
        for token in str(raw).split(","):
            token = token.strip()
            if not token:
                continue
            key = token.lower().replace("-", "_")
            if key == "all":
                wanted.extend(METRICS)
            elif key == "paper":
                wanted.extend(PAPER_METRICS)
            elif key == "reference":
                wanted.extend(REFERENCE_METRICS[profile])
            elif key in _ALIASES:
                wanted.append(_ALIASES[key])
            else:
                raise ValueError(f"unknown metric {token!r}; choose from {list(METRICS)} or a group {list(_GROUPS)}")
    seen = set(wanted)
    return [m for m in METRICS if m in seen]


def evaluate_arrays(
    a: np.ndarray, b: np.ndarray, f: np.ndarray, metrics: Sequence[str], profile: str = DEFAULT_PROFILE,
    timings: Optional[Dict[str, float]] = None,
) -> Dict[str, float]:
    """Compute canonical ``metrics`` on prepared arrays; optionally accumulate seconds per metric."""
    cache: Dict[str, Any] = {}
    out: Dict[str, float] = {}
    for name in metrics:
        spec = METRICS[name]
        t0 = time.perf_counter()
        value = spec.compute(a, b, f, profile, cache)
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        if not math.isfinite(value):
            logger.debug("%s is %s", name, value)
        out[name] = value
    return out


def evaluate(
    ir: ImageLike,
    vi: ImageLike,
    fused: ImageLike,
    metrics: Optional[Iterable[str]] = None,
    profile: str = DEFAULT_PROFILE,
    *,
    data_range: float = 255.0,
) -> Dict[str, float]:
    """Compute fusion metrics of one image triplet.

    Args:
        ir, vi, fused: numpy arrays, torch tensors or PIL images of equal size; gray or RGB
            (converted with MATLAB ``rgb2gray`` weights). uint8, or float in ``[0, data_range]``
            (rounded to the uint8 image it would be saved as).
        metrics: names or groups (see :func:`resolve_metrics`); default all metrics.
        profile: ``"cdd"`` (default; CDDFuse, as the DIFF-MF paper), ``"tang"`` or ``"vifb"``.
        data_range: 255 for 0-255 data, 1.0 for [0, 1] floats.
    Returns:
        ``{name: value}`` in the registry's order (EN SD SF MI VIF AG first). A metric that is
        undefined for valid inputs (constant images, images smaller than its window) gives NaN
        (documented per metric) rather than an exception; invalid inputs (size mismatch,
        16-bit or out-of-range data, unknown names) raise ``ValueError``.
    """
    names = resolve_metrics(metrics, profile)
    a, b, f = prepare_triplet(ir, vi, fused, data_range=data_range)
    return evaluate_arrays(a, b, f, names, profile)
