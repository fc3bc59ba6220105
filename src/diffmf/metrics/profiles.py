"""Profiles: which convention of each metric reproduces which reference evaluator.

* ``cdd`` (default): the CDDFuse Python evaluator ``utils/Evaluator.py``
  (Zhaozixiang1228/MMIF-CDDFuse @ fd8da1f). The DIFF-MF paper's Table I follows it (its MI is in
  nats; ``../shared/golden/METRICS.md`` end of section 5).
* ``tang``: Tang's MATLAB evaluation (Linfeng-Tang/Evaluation-for-Image-Fusion, current float
  version, 2023-03 and later), used by the SeAFusion / SwinFusion / MambaDFuse lineage.
* ``vifb``: VIFB's MATLAB ``metrics/*.m`` (xingchenzhang/VIFB @ 22b2ea9) plus Han 2013
  ``VIFF_Public.m``.

A reference that has no such metric gets the closest documented convention; its
:class:`Variant` says so in ``reference`` (e.g. "not in CDDFuse; follows VIFB").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["Variant", "PROFILES", "PROFILE_DESCRIPTIONS", "DEFAULT_PROFILE", "REFERENCE_METRICS", "get_variant"]

DEFAULT_PROFILE = "cdd"


@dataclass(frozen=True)
class Variant:
    """How one metric is computed in one profile.

    Attributes:
        options: keyword options passed to the metric's implementation.
        reference: the reference code this follows (or which convention stands in for it).
        native: True when the profile's own reference implements the metric.
        range: value range when it differs from the metric's default.
        units: units when they differ from the metric's default.
    """

    options: Mapping[str, Any] = field(default_factory=dict)
    reference: str = ""
    native: bool = True
    range: Optional[str] = None
    units: Optional[str] = None


def _v(reference: str, native: bool = True, range: Optional[str] = None, units: Optional[str] = None, **options: Any) -> Variant:
    return Variant(MappingProxyType(dict(options)), reference, native, range, units)


_C = "CDDFuse utils/Evaluator.py"
_T = "Tang MATLAB Evaluation-for-Image-Fusion"
_V = "VIFB metrics/"
_H = "Han 2013 VIFF_Public.m"

_CDD: Dict[str, Variant] = {
    "EN": _v(f"{_C} Evaluator.EN"),
    "SD": _v(f"{_C} Evaluator.SD"),
    "SF": _v(f"{_C} Evaluator.SF", norm="per_direction"),
    "MI": _v(f"{_C} Evaluator.MI (sklearn mutual_info_score, nats)", units="nats", range="[0, 11.09] nats", base="e", binning="exact"),
    "VIF": _v(f"{_C} Evaluator.VIFF (VIFP-sum; NaN -> 1.0)", nan_as_one=True),
    "AG": _v(f"{_C} Evaluator.AG (divides by MN)", norm="mn"),
    "Qabf": _v(f"{_C} Evaluator.Qabf"),
    "SCD": _v(f"{_C} Evaluator.SCD"),
    "CC": _v(f"{_C} Evaluator.CC"),
    "SSIM": _v(f"{_C} Evaluator.SSIM (skimage defaults, data_range=2, summed)", range="[-2, 2]", convention="cdd"),
    "MS_SSIM": _v("not in CDDFuse; Python Metric.py lineage (pytorch_msssim, summed)", native=False, range="[0, 2]", convention="wang"),
    "PSNR": _v(f"{_C} Evaluator.PSNR (10 log10(max(F)^2 / MSE))", convention="cdd"),
    "MSE": _v(f"{_C} Evaluator.MSE (0-255 data)", scale=255.0),
    "RMSE": _v("not in CDDFuse; sqrt of its MSE (0-255 data)", native=False, convention="root_mse", scale=255.0),
    "Nabf": _v(f"not in CDDFuse; follows {_T} analysis_nabf", native=False),
    "Qcb": _v(f"not in CDDFuse; follows {_V}metricsQcb.m", native=False),
    "Qcv": _v(f"not in CDDFuse; follows {_V}metricsQcv.m", native=False),
    "CE": _v(f"not in CDDFuse; follows {_V}metricsCross_entropy.m", native=False),
    "EI": _v(f"not in CDDFuse; follows {_V}metricsEdge_intensity.m", native=False),
    "VIFF": _v(f"not in CDDFuse; follows {_H}", native=False),
}

_TANG: Dict[str, Variant] = {
    "EN": _v(f"{_T} entropy()"),
    "SD": _v(f"{_T} SD_evaluation (0-255)"),
    "SF": _v(f"{_T} SF_evaluation", norm="per_direction"),
    "MI": _v(f"{_T} MI_evaluation (bits, 254/255 joint-bin merge of Hab.m)", units="bits", range="[0, 16] bits", base=2.0, binning="tang_sat"),
    "VIF": _v(f"{_T} vifp_mscale(ir,F) + vifp_mscale(vi,F)", nan_as_one=False),
    "AG": _v(f"{_T} AG_evaluation (divides by (M-1)(N-1))", norm="m1n1"),
    "Qabf": _v(f"{_T} analysis_Qabf"),
    "SCD": _v(f"{_T} analysis_SCD"),
    "CC": _v(f"{_T} CC_evaluation"),
    "SSIM": _v(f"{_T} (easy=0) 0.5 ssim(F,ir) + 0.5 ssim(F,vi), MATLAB built-in ssim; not golden-checked", range="[-1, 1]", convention="tang"),
    "MS_SSIM": _v(f"{_T} analysis_ms_ssim (MEF-MS-SSIM, Ma et al. 2015)", range="[0, 1]", convention="mef"),
    "PSNR": _v(f"{_T} PSNR_evaluation (20 log10(255 / sqrt(MSE on [0,1])))", convention="tang"),
    "MSE": _v(f"{_T} MSE_evaluation ([0, 1] data)", range="[0, 1]", units="[0,1]-scaled gray levels squared", scale=1.0),
    "RMSE": _v("not in Tang; sqrt of its MSE ([0, 1] data)", native=False, range="[0, 1]", units="[0,1]-scaled gray levels", convention="root_mse", scale=1.0),
    "Nabf": _v(f"{_T} analysis_nabf (0-255)"),
    "Qcb": _v(f"not in Tang; follows {_V}metricsQcb.m", native=False),
    "Qcv": _v(f"not in Tang; follows {_V}metricsQcv.m", native=False),
    "CE": _v(f"not in Tang; follows {_V}metricsCross_entropy.m", native=False),
    "EI": _v(f"not in Tang; follows {_V}metricsEdge_intensity.m", native=False),
    "VIFF": _v(f"not in Tang; follows {_H}", native=False),
}

_VIFB: Dict[str, Variant] = {
    "EN": _v(f"{_V}metricsEntropy.m"),
    "SD": _v(f"{_V}metricsVariance.m (a standard deviation)"),
    "SF": _v(f"{_V}metricsSpatial_frequency.m (divides by MN)", norm="mn"),
    "MI": _v(f"{_V}metricsMutinf.m (nats, min-max renormalised)", units="nats", range="[0, 11.09] nats", base="e", binning="vifb_minmax"),
    "VIF": _v("not in VIFB; VIFP-sum as in Tang/CDDFuse", native=False, nan_as_one=False),
    "AG": _v(f"{_V}metricsAvg_gradient.m (divides by (M-1)(N-1))", norm="m1n1"),
    "Qabf": _v(f"{_V}metricsQabf.m"),
    "SCD": _v("not in VIFB; follows Tang/CDDFuse", native=False),
    "CC": _v("not in VIFB; follows Tang/CDDFuse", native=False),
    "SSIM": _v(f"{_V}metricsSsim.m (Gaussian 11/1.5 'valid', L=255, summed)", range="[-2, 2]", convention="vifb"),
    "MS_SSIM": _v("not in VIFB; Python Metric.py lineage (pytorch_msssim, summed)", native=False, range="[0, 2]", convention="wang"),
    "PSNR": _v(f"{_V}metricsPsnr.m (20 log10(255 / sqrt(RMSE_vifb)))", convention="vifb"),
    "MSE": _v("not in VIFB; CDDFuse's MSE (0-255 data)", native=False, scale=255.0),
    "RMSE": _v(f"{_V}metricsRmse.m (sqrt(sum d^2) / MN, averaged)", range="[0, 255/sqrt(MN)]", convention="vifb"),
    "Nabf": _v(f"not in VIFB; follows {_T} analysis_nabf", native=False),
    "Qcb": _v(f"{_V}metricsQcb.m"),
    "Qcv": _v(f"{_V}metricsQcv.m"),
    "CE": _v(f"{_V}metricsCross_entropy.m"),
    "EI": _v(f"{_V}metricsEdge_intensity.m"),
    "VIFF": _v(f"{_H} (run beside VIFB in the goldens)"),
}

PROFILES: Mapping[str, Mapping[str, Variant]] = MappingProxyType(
    {"cdd": MappingProxyType(_CDD), "tang": MappingProxyType(_TANG), "vifb": MappingProxyType(_VIFB)}
)

PROFILE_DESCRIPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "cdd": "CDDFuse Python evaluator (utils/Evaluator.py); the DIFF-MF paper's Table I follows it (MI in nats)",
        "tang": "Tang's MATLAB Evaluation-for-Image-Fusion, current float version (MI in bits)",
        "vifb": "VIFB MATLAB metrics (13) plus Han 2013 VIFF",
    }
)

#: The metrics each reference itself computes (the rest are filled in from other references).
REFERENCE_METRICS: Mapping[str, Tuple[str, ...]] = MappingProxyType(
    {p: tuple(name for name, var in table.items() if var.native) for p, table in PROFILES.items()}
)


def get_variant(profile: str, metric: str) -> Variant:
    """The :class:`Variant` of ``metric`` in ``profile``; ``ValueError`` with the choices otherwise."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    table = PROFILES[profile]
    if metric not in table:
        raise ValueError(f"unknown metric {metric!r}; choose from {list(table)}")
    return table[metric]
