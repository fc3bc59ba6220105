"""Per-image differences between two folders of fused images (same file names), in grey
levels: max, mean and the share of pixels that differ; the A/B scripts' last step.

    python3 benchmarks/compare_fused.py /tmp/fused_old /tmp/fused_new
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(argv=None) -> int:
    old, new = (Path(p) for p in (argv or sys.argv[1:]))
    diffs = []
    for f in sorted(old.iterdir()):
        a = np.asarray(Image.open(f)).astype(int)
        b = np.asarray(Image.open(new / f.name)).astype(int)
        d = np.abs(a - b)
        diffs.append((f.name, int(d.max()), float(d.mean()), float((d > 0).mean())))
    for name, mx, mean, frac in diffs:
        print(f"  {name:24s} max |new - old| {mx} grey levels, mean {mean:.4f}, pixels differing {100 * frac:.3f}%")
    print(f"{new} vs {old}: worst max difference {max(d[1] for d in diffs)} grey levels over {len(diffs)} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
