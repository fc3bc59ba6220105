"""CPU fusion benchmark: one 640x480 pair through the paper preset (issue: CPU speed).

Reports wall time, peak resident memory and the share of time spent in the selective scans
(every SS2D's scan op call: dt_proj, cross-scan, scan, cross-merge), and the load average
of the machine before and after and the CPU time other processes took during the runs (time
on a shared machine is only meaningful with it).
``--single-scan`` also times one full-resolution SS2D scan of the paper preset (256 scan
channels = 4 routes x 64, N = 16) on random inputs with Mamba-initialised step sizes.
Prints a table and writes JSON (``--json``). Run: ``python benchmarks/bench_cpu_fuse.py``.

Large tensors are backed by transparent huge pages (``THP_MEM_ALLOC_ENABLE=1``, read by
PyTorch's CPU allocator when torch is imported, so it is set here before the import):
every fresh multi-megabyte tensor otherwise costs about 0.25 ms per MB in page faults, a
few seconds over the network at 640x480. ``--no-thp`` measures without it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

if "--no-thp" not in sys.argv:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402

import diffmf.model.vss as vss_mod  # noqa: E402
from diffmf.model import build_model  # noqa: E402
from diffmf.ops import selective_scan_2d  # noqa: E402


def single_scan(h: int, w: int, repeats: int, routes: int = 4, d: int = 64, n: int = 16) -> float:
    """Seconds (best of ``repeats``) for one SS2D scan at H x W with the paper preset's sizes."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, d, h, w, generator=g)
    dt = torch.randn(1, routes, d, h, w, generator=g) * 0.5
    B = torch.randn(1, routes, n, h, w, generator=g)
    C = torch.randn(1, routes, n, h, w, generator=g)
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(routes * d, 1)  # S4D-real init
    D = torch.ones(routes * d)
    step = torch.exp(torch.rand(routes * d, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    bias = step + torch.log(-torch.expm1(-step))  # Mamba dt init: softplus(bias) in [1e-3, 0.1]
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats):
            t = time.perf_counter()
            selective_scan_2d(u, dt, A, B, C, D, bias, True)
            best = min(best, time.perf_counter() - t)
    return best


def _cpu_jiffies():
    """(busy, total) CPU time of the whole machine in seconds from /proc/stat (None elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / hz, sum(fields) / hz


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="diffmf_paper")
    ap.add_argument("--size", default="640x480", help="WxH")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=1, help="network runs; the fastest is reported")
    ap.add_argument("--single-scan", action="store_true", help="also time one full-resolution SS2D scan")
    ap.add_argument("--no-thp", action="store_true", help="do not back large tensors with huge pages")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    load_before = os.getloadavg()
    torch.manual_seed(0)
    model = build_model(args.model).eval()
    ir, vi = torch.rand(1, 1, h, w), torch.rand(1, 1, h, w)

    calls = []  # (positions scanned, seconds) per scan op call of the current run
    inner = vss_mod.selective_scan_2d_lowrank

    def timed_scan(u, *a, **k):
        t = time.perf_counter()
        out = inner(u, *a, **k)
        calls.append((u.shape[0] * u.shape[2] * u.shape[3], time.perf_counter() - t))
        return out

    vss_mod.selective_scan_2d_lowrank = timed_scan
    runs = []  # (seconds, scan seconds, full-resolution-equivalent scans)
    machine0, own0, wall0 = _cpu_jiffies(), _own_cpu(), time.perf_counter()
    try:
        with torch.inference_mode():
            for _ in range(args.repeats):
                calls.clear()
                t0 = time.perf_counter()
                y = model(ir, vi)
                runs.append((time.perf_counter() - t0, sum(c[1] for c in calls), sum(c[0] for c in calls) / (h * w)))
    finally:
        vss_mod.selective_scan_2d_lowrank = inner
    machine1, own1, wall1 = _cpu_jiffies(), _own_cpu(), time.perf_counter()
    seconds, scan_seconds, equivalent_scans = min(runs)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = {
        "model": args.model, "size": f"{w}x{h}", "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "thp": os.environ.get("THP_MEM_ALLOC_ENABLE") == "1",
        "seconds": seconds, "scan_seconds": scan_seconds, "scan_share": scan_seconds / seconds,
        "scan_calls": len(calls), "full_res_equivalent_scans": equivalent_scans,
        "all_runs_seconds": [r[0] for r in runs],
        "peak_rss_mb": peak_mb, "output": list(y.shape),
    }
    if args.single_scan:
        res["single_scan_seconds"] = single_scan(h, w, max(2, args.repeats))
    res["load_avg_before"], res["load_avg_after"] = load_before, os.getloadavg()
    if machine0 and machine1:  # CPU time the rest of the machine took while the network ran
        others = (machine1[0] - machine0[0]) - (own1 - own0)
        res["other_processes_cpus"] = max(0.0, others) / (wall1 - wall0)
    print(f"{'model':16s} {'size':>9s} {'threads':>7s} {'time s':>8s} {'scan s':>8s} {'scan %':>7s} {'peak MB':>8s}")
    print(
        f"{args.model:16s} {res['size']:>9s} {res['threads']:7d} {seconds:8.2f} {scan_seconds:8.2f} "
        f"{100 * res['scan_share']:6.1f}% {peak_mb:8.0f}"
    )
    print(f"{len(calls)} scans = {equivalent_scans:.2f} full-resolution equivalents; huge pages: {res['thp']}")
    if args.single_scan:
        print(f"one {w}x{h} SS2D scan (256 channels, N=16): {res['single_scan_seconds']:.2f} s")
    others = res.get("other_processes_cpus")
    print(
        f"load average before {load_before[0]:.2f}, after {res['load_avg_after'][0]:.2f} ({os.cpu_count()} CPUs)"
        + ("" if others is None else f"; other processes used {others:.2f} CPUs on average during the runs")
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
