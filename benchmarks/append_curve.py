"""Merge a training run's ``scalars.jsonl`` into ``docs/training_curve.csv`` (one row per step).

The shipped-weights run is resumed across device calls, each of which returns the scalars it
logged (``trainlogs.tar.gz`` of ``benchmarks/gpu_ship_train.sh``); rows of steps already in the
CSV are replaced, the rest appended, in step order.

    python benchmarks/append_curve.py runs/ship/scalars.jsonl [--csv docs/training_curve.csv]

A ``.log`` file (the trainer's console output or ``train.log``) is read instead when a call's
scalars did not come back: the same values, rounded as logged (losses to 4-5 digits).
"""
from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path
from typing import Dict, Iterator

_STEP = re.compile(r"step (\d+)/\d+ epoch \d+ loss (\S+) \(ssim (\S+) text (\S+) int (\S+)\) lr (\S+) (\S+) pairs/s")
_VAL = re.compile(r"validation step (\d+): (.*)$")


def records(path: Path) -> Iterator[Dict[str, float]]:
    """The scalar records of a ``scalars.jsonl`` or, for ``*.log``/``*.txt``, of the trainer's log lines."""
    for line in path.read_text().splitlines():
        if path.suffix == ".jsonl":
            yield json.loads(line)
        elif m := _STEP.search(line):
            keys = ("loss", "ssim", "text", "int", "lr", "pairs_per_s")
            yield {"step": int(m[1]), **{f"train/{k}": float(v) for k, v in zip(keys, m.groups()[1:])}}
        elif m := _VAL.search(line):
            pairs = re.findall(r"(\w+) (\S+)", m[2])
            yield {"step": int(m[1]), **{f"val/{k}": float(v) for k, v in pairs}}


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
        for rec in records(path):
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
