"""Merge a training run's ``scalars.jsonl`` into ``docs/training_curve.csv`` (one row per step).

The shipped-weights run is resumed across device calls, each of which returns the scalars it
logged (``trainlogs.tar.gz`` of ``benchmarks/gpu_ship_train.sh``); rows of steps already in the
CSV are replaced, the rest appended, in step order.

    python benchmarks/append_curve.py runs/ship/scalars.jsonl [--csv docs/training_curve.csv]
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Dict


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scalars", type=Path, nargs="+")
    ap.add_argument("--csv", type=Path, default=Path("docs/training_curve.csv"))
    args = ap.parse_args(argv)
    with args.csv.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows: Dict[int, Dict[str, str]] = {int(r["step"]): r for r in reader}
    for path in args.scalars:
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            step = int(rec["step"])
            row = rows.setdefault(step, {k: "" for k in fields} | {"step": str(step)})
            for k, v in rec.items():
                if k in fields and k != "step":
                    row[k] = f"{v:.5g}" if isinstance(v, float) else str(v)
    with args.csv.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for step in sorted(rows):
            w.writerow(rows[step])
    print(f"{args.csv}: {len(rows)} steps, last {max(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
