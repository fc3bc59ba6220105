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
from bench_scan import copy_bandwidth, env_overrides, graph_replay_ms  # this folder is on sys.path when run as a script

VARIANTS = {  # "" = the defaults; TILE=0,128,8,1 = the schedule before the thirteenth session
    torch.bfloat16: ["", "TILE=0,128,8,1", "TILE=0,32,2,1", "TILE=2,64,4,2"],
    torch.float32: ["", "TILE=0,128,8,1", "TILE=0,64,4,1", "TILE=4,32,2,3", "TILE=2,32,2,4", "F32=ieee", "F32=tf32"],
}


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
    copy_gbs = copy_bandwidth(torch.device("cuda"))
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
                    us = statistics.median(graph_replay_ms(lambda: x_proj_triton(x, weight, r, n), a.reps, calls=10)) * 1e3
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
