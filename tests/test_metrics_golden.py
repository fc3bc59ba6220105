"""Every value of ``shared/golden/metrics_golden.csv`` (profiles cdd, tang, vifb; synthetic and
TNO cases) reproduced within its row's rtol/atol.

The shared folder is ``../shared`` next to the repository (override with ``DIFFMF_SHARED``).
Without it every case is skipped; without ``shared/data/test/TNO25`` the TNO cases are skipped.
"""
from __future__ import annotations

import csv
import functools
import math
import os
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
from PIL import Image

from diffmf.metrics import METRICS, PROFILES, load_gray
from diffmf.metrics._common import as_gray255

SHARED = Path(os.environ.get("DIFFMF_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
GOLDEN_CSV = SHARED / "golden" / "metrics_golden.csv"
SYNTHETIC = SHARED / "golden" / "synthetic"
TNO25 = SHARED / "data" / "test" / "TNO25"

#: golden metric name -> our registry name (and the convention that name must use in its profile)
GOLDEN_NAMES = {"MS_SSIM_MEF": "MS_SSIM", "VIFF_Han2013": "VIFF"}


def _rows() -> List[Dict[str, str]]:
    if not GOLDEN_CSV.is_file():
        return []
    with GOLDEN_CSV.open(newline="") as fh:
        return list(csv.DictReader(fh))


ROWS = _rows()


@functools.lru_cache(maxsize=None)
def _triplet(case: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    if case.startswith("syn"):
        return tuple(as_gray255(load_gray(SYNTHETIC / f"{case}_{k}.png")) for k in ("ir", "vi", "fused"))
    # cddTNO01_mean: ir, vi = TNO25/{ir,vi}/01.png (3 identical channels: take channel 0)
    stem, kind = case[len("cddTNO") :].split("_")
    if not TNO25.is_dir():
        pytest.skip(f"TNO case {case}: {TNO25} is absent (set DIFFMF_SHARED to the shared folder)")
    ir = np.asarray(Image.open(TNO25 / "ir" / f"{stem}.png"))[..., 0].astype(np.int64)
    vi = np.asarray(Image.open(TNO25 / "vi" / f"{stem}.png"))[..., 0].astype(np.int64)
    fused = (ir + vi + 1) // 2 if kind == "mean" else np.maximum(ir, vi)
    return tuple(as_gray255(x.astype(np.uint8)) for x in (ir, vi, fused))


def _param(row: Dict[str, str]):
    return pytest.param(row, id=f"{row['case']}-{row['profile']}-{row['metric']}")


@pytest.mark.skipif(not ROWS, reason=f"golden values absent: {GOLDEN_CSV} not found (set DIFFMF_SHARED)")
@pytest.mark.parametrize("row", [_param(r) for r in ROWS] or [pytest.param(None, id="no-golden")])
def test_golden_value(row: Dict[str, str]) -> None:
    a, b, f = _triplet(row["case"])
    name = GOLDEN_NAMES.get(row["metric"], row["metric"])
    value = METRICS[name].compute(a, b, f, row["profile"])
    want = float(row["value"])
    rtol, atol = float(row["rtol"]), float(row["atol"])
    assert math.isfinite(value)
    assert abs(value - want) <= atol + rtol * abs(want), (
        f"{row['case']} {row['profile']} {row['metric']}: got {value!r}, golden {want!r} "
        f"(rel. error {(value - want) / want:.3g}, rtol {rtol:g}, atol {atol:g}; produced by {row['produced_by']})"
    )


@pytest.mark.skipif(not ROWS, reason=f"golden values absent: {GOLDEN_CSV} not found (set DIFFMF_SHARED)")
def test_every_golden_metric_and_profile_is_registered() -> None:
    for row in ROWS:
        assert row["profile"] in PROFILES, row
        assert GOLDEN_NAMES.get(row["metric"], row["metric"]) in METRICS, row
    # the renamed goldens check the convention the profile really uses
    assert PROFILES["tang"]["MS_SSIM"].options["convention"] == "mef"
    profiles = {r["profile"] for r in ROWS}
    assert profiles == {"cdd", "tang", "vifb"}
