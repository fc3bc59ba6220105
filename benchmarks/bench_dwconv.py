"""SS2D's fused depthwise conv + SiLU (Triton) on a GPU, one call of the paper shape (B=1,
C=64 channels, 3x3, 640x480 unless --shape), per program tile (``DIFFMF_DWCONV_TILE`` =
"channels,columns,warps"; "32,64,4" was the default before the thirteenth session), replayed
from a CUDA graph. Per tile: microseconds per call, GB/s of
the bytes one call must move (input read once, output written once) and their fraction of a
device-to-device copy in the same run; outputs checked bit for bit against the default tile.
Prints a table; ``--out DIR`` writes ``bench_dwconv.json``.

    PYTHONPATH=src python3 benchmarks/bench_dwconv.py [--shape 480x640] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from bench_scan import copy_bandwidth, env_overrides, graph_replay_ms  # this folder is on sys.path when run as a script

TILES = ["", "32,64,4", "64,32,4", "64,64,8", "16,128,4", "32,128,8", "64,16,2", "32,32,2", "16,64,2"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="480x640", help="HxW")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    from diffmf.ops.triton.dwconv import TILE_ENV, dwconv_silu_triton

    h, w = (int(v) for v in a.shape.split("x"))
    c, k = 64, 3
    copy_gbs = copy_bandwidth(torch.device("cuda"))
    print(f"{torch.cuda.get_device_name()}, C={c} {k}x{k}, {w}x{h}; copy {copy_gbs:.0f} GB/s (read + write)")
    rows = []
    for dtype in (torch.bfloat16, torch.float32):
        g = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(1, h, w, c, device="cuda", generator=g).to(dtype)
        weight = torch.randn(c, 1, k, k, device="cuda", generator=g) * 0.3
        bias = torch.randn(c, device="cuda", generator=g) * 0.1
        nbytes = 2 * x.numel() * x.element_size()
        ref = None
        for tile in TILES:
            with env_overrides({TILE_ENV: tile} if tile else {}):
                try:
                    y = dwconv_silu_triton(x, weight, bias, dtype)
                    ref = y if ref is None else ref
                    us = statistics.median(graph_replay_ms(lambda: dwconv_silu_triton(x, weight, bias, dtype), a.reps, calls=10)) * 1e3
                    row = dict(dtype=str(dtype), tile=tile or "default", us=us, gbs=nbytes / us / 1e3, same=bool(torch.equal(y, ref)))
                    print(f"{row['dtype']:15s} {row['tile']:10s} {us:8.1f} us {row['gbs']:7.0f} GB/s {row['gbs'] / copy_gbs:6.1%}"
                          f"  bit-identical {row['same']}", flush=True)
                except Exception as exc:  # report, keep going
                    row = dict(dtype=str(dtype), tile=tile or "default", error=repr(exc)[-300:])
                    print(f"{row['dtype']:15s} {row['tile']:10s} ERROR {row['error'][:150]}", flush=True)
            rows.append(row)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "bench_dwconv.json").write_text(json.dumps(dict(device=torch.cuda.get_device_name(), shape=[h, w],
                                                                 copy_gbs=copy_gbs, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
