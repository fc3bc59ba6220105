"""x_proj kernel schedules on a GPU (one call of the paper shape: B=1, D=64, K=4, R=2, N=16,
640x480 unless --shape), each replayed from a CUDA graph (GPU time without launch gaps).

Variants are environment overrides of :mod:`diffmf.ops.triton.xproj`
(``DIFFMF_XPROJ_F32``: float32 products, ``tf32`` being a single TF32 pass for scale only;
``DIFFMF_XPROJ_TILE``: "programs per SM,pixels,warps,stages", 0 programs per SM = one program
per pixel block).
Per variant: microseconds per call (median of --reps graph replays of 10 calls), GB/s of the
bytes one call must move (x read once, dt / B / C written once), their fraction of a
device-to-device copy measured in the same run, and the largest error of B / C / dt against
a float64 product of the same (rounded) inputs, relative to the largest magnitude. Prints a
table; ``--out DIR`` writes ``bench_xproj.json``.

    PYTHONPATH=src python3 benchmarks/bench_xproj.py [--shape 480x640] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from bench_scan import env_overrides  # this folder is on sys.path when run as a script

VARIANTS = {  # "" = the defaults; TILE=0,128,8,1 = the schedule before the thirteenth session
    torch.bfloat16: ["", "TILE=0,128,8,1", "TILE=0,32,2,1", "TILE=2,64,4,2"],
    torch.float32: ["", "TILE=0,128,8,1", "TILE=0,64,4,1", "TILE=4,32,2,3", "TILE=2,32,2,4", "F32=ieee", "F32=tf32"],
}


def graph_us(fn, reps: int, calls: int = 10) -> float:
    """Median microseconds per call of ``fn`` replayed ``calls`` times from one CUDA graph."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(calls):
            fn()
    g.replay()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        torch.cuda.synchronize()
        out.append(a.elapsed_time(b) * 1e3 / calls)
    return statistics.median(out)


def copy_bandwidth(reps: int) -> float:
    """GB/s (bytes read + written) of a 256 MiB device-to-device copy, replayed from a graph."""
    src = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return 2 * src.numel() / graph_us(lambda: dst.copy_(src), reps) / 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="480x640", help="HxW")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    from diffmf.ops.triton.xproj import x_proj_triton
    from diffmf.ops.xproj import x_proj_reference

    h, w = (int(v) for v in a.shape.split("x"))
    b, d, k, r, n = 1, 64, 4, 2, 16
    copy_gbs = copy_bandwidth(a.reps)
    print(f"{torch.cuda.get_device_name()}, B={b} D={d} K={k} R={r} N={n}, {w}x{h}; copy {copy_gbs:.0f} GB/s (read + write)")
    rows = []
    for dtype, variants in VARIANTS.items():
        g = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(b, d, h, w, device="cuda", generator=g).to(dtype)
        weight = (torch.randn(k, r + 2 * n, d, device="cuda", generator=g) * 0.125).to(dtype)
        ref = [t.double() for t in x_proj_reference(x.double(), weight.double(), r, n)]
        nbytes = x.numel() * x.element_size() * (1 + k * (r + 2 * n) / d)
        for v in variants:
            env = dict(("DIFFMF_XPROJ_" + item).split("=", 1) for item in v.split(";") if item)
            with env_overrides(env):
                try:
                    outs = [t.dense().double() for t in x_proj_triton(x, weight, r, n)]
                    err = max(float((o - e).abs().max() / e.abs().max()) for o, e in zip(outs, ref))
                    us = graph_us(lambda: x_proj_triton(x, weight, r, n), a.reps)
                    row = dict(dtype=str(dtype), variant=v or "default", us=us, gbs=nbytes / us / 1e3, err=err)
                except Exception as exc:  # report, keep going
                    row = dict(dtype=str(dtype), variant=v or "default", error=repr(exc)[-300:])
            rows.append(row)
            if "error" in row:
                print(f"{row['dtype']:15s} {row['variant']:28s} ERROR {row['error'][:150]}", flush=True)
            else:
                print(f"{row['dtype']:15s} {row['variant']:28s} {us:8.1f} us {row['gbs']:7.0f} GB/s {row['gbs'] / copy_gbs:6.1%}"
                      f"  max err {err:.2e}", flush=True)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "bench_xproj.json").write_text(json.dumps(dict(device=torch.cuda.get_device_name(), shape=[h, w],
                                                                copy_gbs=copy_gbs, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
