"""How much contrast and detail the sources of each test set hold: the ceilings of SD, SF, AG
and EN that an image built from the sources' own local structure can reach (`cdd` definitions).

DIFF-MF's loss (eq. 12-14) pulls the fused image towards max(ir, vi) in intensity and towards
max(|grad ir|, |grad vi|) in gradient magnitude. An image whose every local difference equals
the stronger source's difference at that place reaches:

* SF ceiling = sqrt(mean_h max(Dh_ir^2, Dh_vi^2) + mean_v max(Dv_ir^2, Dv_vi^2)), with Dh, Dv
  the horizontal / vertical forward differences of the SF definition;
* AG ceiling = sum over pixels of sqrt((max(gx_ir^2, gx_vi^2) + max(gy_ir^2, gy_vi^2)) / 2) / (M N),
  with gx, gy numpy's (MATLAB's) central-difference gradient, as AG is defined;

Any image whose differences are, one by one, no larger in magnitude than the larger of the two
sources' (pixel-max is one: max is 1-Lipschitz) scores at most these; a fused image above them
has local differences larger than both sources (sharpened or contrast-stretched beyond the
inputs). SD and EN are given for ir, vi and the intensity target
max(ir, vi) of eq. 13. Means over the pairs of a set, like the evaluator's scores.

    python benchmarks/target_ceilings.py --test .data/test --out ceilings.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

import numpy as np

from diffmf.data.pairs import pair_folders
from diffmf.metrics._common import load_gray
from diffmf.metrics.basic import _ag, _en, _sd, _sf

SETS = ("TNO25", "RoadScene50", "MSRS36")
# DIFF-MF's TNO row of Table I (55 TNO pairs), for the comparison column.
PAPER_TNO = {"EN": 7.10, "SD": 63.03, "SF": 14.672, "AG": 5.393}


def pair_ceilings(ir: np.ndarray, vi: np.ndarray) -> Dict[str, float]:
    """``(H, W)`` float64 0-255 sources -> ceilings and source statistics of one pair."""
    dh = np.maximum(np.diff(ir, axis=1) ** 2, np.diff(vi, axis=1) ** 2)
    dv = np.maximum(np.diff(ir, axis=0) ** 2, np.diff(vi, axis=0) ** 2)
    (gy_ir, gx_ir), (gy_vi, gx_vi) = np.gradient(ir), np.gradient(vi)
    g = np.sqrt((np.maximum(gx_ir ** 2, gx_vi ** 2) + np.maximum(gy_ir ** 2, gy_vi ** 2)) / 2.0)
    target = np.maximum(ir, vi)
    return {
        "SF_ceiling": float(np.sqrt(dh.mean() + dv.mean())),
        "AG_ceiling": float(g.sum() / ir.size),
        "SF_ir": _sf(ir), "SF_vi": _sf(vi), "SF_max": _sf(target),
        "AG_ir": _ag(ir), "AG_vi": _ag(vi), "AG_max": _ag(target),
        "SD_ir": _sd(ir), "SD_vi": _sd(vi), "SD_max": _sd(target),
        "EN_ir": _en(ir), "EN_vi": _en(vi), "EN_max": _en(target),
    }


def set_ceilings(root: Path) -> Dict[str, float]:
    pairs, _, _ = pair_folders(root / "ir", root / "vi")
    if not pairs:
        raise FileNotFoundError(f"{root}: no ir/vi pairs")
    rows: List[Dict[str, float]] = []
    for p in pairs:
        ir, vi = (load_gray(x).astype(np.float64) for x in (p.ir, p.vi))
        if ir.shape != vi.shape:
            raise ValueError(f"{p.name}: infrared {ir.shape} and visible {vi.shape} differ in size")
        rows.append(pair_ceilings(ir, vi))
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["pairs"] = len(rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test", type=Path, default=Path(".data/test"), help="folder holding TNO25/, RoadScene50/, MSRS36/")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    result = {s: set_ceilings(args.test / s) for s in args.sets}
    print("| set | SF ceiling | SF ir / vi / max | AG ceiling | AG ir / vi / max | SD ir / vi / max | EN ir / vi / max |")
    print("|---|---|---|---|---|---|---|")
    for s, r in result.items():
        print(f"| {s} ({r['pairs']}) | {r['SF_ceiling']:.2f} | {r['SF_ir']:.2f} / {r['SF_vi']:.2f} / {r['SF_max']:.2f} "
              f"| {r['AG_ceiling']:.3f} | {r['AG_ir']:.3f} / {r['AG_vi']:.3f} / {r['AG_max']:.3f} "
              f"| {r['SD_ir']:.2f} / {r['SD_vi']:.2f} / {r['SD_max']:.2f} "
              f"| {r['EN_ir']:.3f} / {r['EN_vi']:.3f} / {r['EN_max']:.3f} |")
    print("paper's DIFF-MF TNO row (55 pairs): " + ", ".join(f"{k} {v}" for k, v in PAPER_TNO.items()))
    if args.out:
        args.out.write_text(json.dumps({"sets": result, "paper_tno": PAPER_TNO}, indent=2))


if __name__ == "__main__":
    main()
