"""CPU fusion benchmark: one 640x480 pair through the paper preset (issue: CPU speed).

Reports wall time, peak resident memory and the share of time spent in the selective scan.
Prints a table and writes JSON (``--json``). Run: ``python benchmarks/bench_cpu_fuse.py``.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

import importlib
from diffmf.model import build_model

scan_mod = importlib.import_module("diffmf.ops.selective_scan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="diffmf_paper")
    ap.add_argument("--size", default="640x480", help="WxH")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    torch.manual_seed(0)
    model = build_model(args.model).eval()
    ir, vi = torch.rand(1, 1, h, w), torch.rand(1, 1, h, w)

    scan_time = [0.0]
    inner = scan_mod.selective_scan

    def timed_scan(*a, **k):
        t = time.perf_counter()
        out = inner(*a, **k)
        scan_time[0] += time.perf_counter() - t
        return out

    scan_mod.selective_scan = timed_scan
    times = []
    with torch.inference_mode():
        for _ in range(args.repeats):
            scan_time[0] = 0.0
            t0 = time.perf_counter()
            y = model(ir, vi)
            times.append(time.perf_counter() - t0)
    scan_mod.selective_scan = inner
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = {
        "model": args.model, "size": f"{w}x{h}", "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "seconds": min(times), "scan_seconds": scan_time[0], "scan_share": scan_time[0] / times[-1],
        "peak_rss_mb": peak_mb, "output": list(y.shape),
    }
    print(f"{'model':16s} {'size':>9s} {'threads':>7s} {'time s':>8s} {'scan s':>8s} {'scan %':>7s} {'peak MB':>8s}")
    print(f"{args.model:16s} {res['size']:>9s} {res['threads']:7d} {res['seconds']:8.2f} {res['scan_seconds']:8.2f} {100*res['scan_share']:6.1f}% {peak_mb:8.0f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
