"""Benchmark: every metric of a profile on the 25 TNO pairs, with the pixel-mean fusion.

    python benchmarks/bench_metrics.py [--profile cdd] [--json out.json] [--data DIR]

The fused image is ``(ir + vi + 1) // 2`` in integer arithmetic. Images are read before timing;
each metric is timed on its own (wall clock, one process), and the total includes everything
``diffmf.metrics.evaluate_arrays`` does. Target: under 30 s for the default profile on a 2-core
CPU. VIFF reuses the local statistics VIF computed for the same triplet (as in ``evaluate``).
The data folder defaults to ``../shared/data/test/TNO25`` next to the repository
(``$DIFFMF_SHARED/data/test/TNO25`` when set).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

logger = logging.getLogger("bench_metrics")

BUDGET_S = 30.0


def default_data() -> Path:
    shared = Path(os.environ.get("DIFFMF_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
    return shared / "data" / "test" / "TNO25"


def load_pairs(folder: Path) -> List[Tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    from diffmf.metrics import load_gray
    from diffmf.metrics._common import as_gray255

    pairs = []
    for ir_path in sorted((folder / "ir").iterdir()):
        vi_path = folder / "vi" / ir_path.name
        if not vi_path.is_file():
            logger.warning("%s has no visible partner; skipped", ir_path)
            continue
        ir = load_gray(ir_path).astype(np.int64)
        vi = load_gray(vi_path).astype(np.int64)
        fused = ((ir + vi + 1) // 2).astype(np.uint8)
        pairs.append((ir_path.stem, as_gray255(ir.astype(np.uint8)), as_gray255(vi.astype(np.uint8)), as_gray255(fused)))
    return pairs


def main(argv=None) -> int:
    from diffmf.metrics import DEFAULT_PROFILE, METRICS, PROFILES
    from diffmf.metrics.api import evaluate_arrays

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=default_data(), help="folder with ir/ and vi/ (default: shared TNO25)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES))
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if not (args.data / "ir").is_dir():
        logger.error("data folder %s not found (pass --data or set DIFFMF_SHARED)", args.data)
        return 2
    t0 = time.perf_counter()
    pairs = load_pairs(args.data)
    load_s = time.perf_counter() - t0
    names = list(METRICS)
    timings: Dict[str, float] = {}
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for _, a, b, f in pairs:
        evaluate_arrays(a, b, f, names, args.profile, timings=timings)
    total_s = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    n_pixels = int(sum(a.size for _, a, _, _ in pairs))

    print(f"{len(pairs)} pairs ({n_pixels / 1e6:.2f} Mpixel), profile {args.profile}, fused = (ir + vi + 1) // 2")
    print(f"{'metric':8s} {'total s':>8s} {'ms/pair':>8s} {'share':>6s}")
    for name in sorted(names, key=lambda n: -timings[n]):
        t = timings[name]
        print(f"{name:8s} {t:8.3f} {1000 * t / len(pairs):8.1f} {100 * t / total_s:5.1f}%")
    verdict = "PASS" if total_s < BUDGET_S else "FAIL"
    print(f"{'total':8s} {total_s:8.3f} {1000 * total_s / len(pairs):8.1f}  (CPU {cpu_s:.2f} s; image loading {load_s:.2f} s, "
          f"not counted) -> {verdict} (budget {BUDGET_S:.0f} s)")

    if args.json is not None:
        import scipy

        result = {
            "benchmark": "bench_metrics",
            "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "profile": args.profile,
            "data": str(args.data),
            "pairs": len(pairs),
            "pixels": n_pixels,
            "fused": "(ir + vi + 1) // 2",
            "per_metric_s": {n: timings[n] for n in names},
            "total_s": total_s,
            "cpu_s": cpu_s,
            "load_s": load_s,
            "budget_s": BUDGET_S,
            "passed": total_s < BUDGET_S,
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "python": sys.version.split()[0],
                "numpy": np.__version__,
                "scipy": scipy.__version__,
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        logger.info("results written to %s", args.json)
    return 0 if total_s < BUDGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
