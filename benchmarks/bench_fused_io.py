"""SS2D's inference I/O around the scan on a GPU, old path against fused forms (one call of
the paper shape: B=1, D=64, K=4, R=2, N=16, 640x480 unless --shape):

* x_proj: the bmm + the scan's copies of B, C (relayout) and of the rows routes' dt
  (transposes), against the x_proj kernel writing the frame layouts (float32: ``tf32x3`` and
  ``ieee`` products);
* the output norm: the scan's merge pass + the gated layer norm of the merged map, against
  the merged form (route slots summed on load) for several pixel tiles;
* a device-to-device copy of the same bytes as the merged form moves, for scale.

CUDA events, median of --reps after warm-up; prints a table and writes JSON (--out).

    PYTHONPATH=src python3 benchmarks/bench_fused_io.py [--shape 480x640] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import torch
from bench_model import time_ms  # this folder is on sys.path when run as a script


def timed(fn, reps: int, warmup: int = 5) -> float:
    """Median microseconds of ``fn`` (CUDA events, after ``warmup`` calls)."""
    return statistics.median(time_ms(fn, reps, warmup)) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="480x640", help="HxW")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--tiles", default="8,16,8;16,16,8;16,16,16;4,32,8;32,8,8;8,32,16;16,8,8",
                    help="merged-norm pixel tiles rows,cols,warps separated by ';'")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    from diffmf.ops.cross_scan import RouteSums
    from diffmf.ops.layernorm import layer_norm
    from diffmf.ops.triton import scan as S
    from diffmf.ops.triton.layernorm import MERGE_TILES_ENV, merged_layer_norm_fwd
    from diffmf.ops.triton.xproj import F32_ENV, x_proj_triton
    from diffmf.ops.xproj import x_proj_reference

    h, w = (int(v) for v in a.shape.split("x"))
    b, d, k, r, n = 1, 64, 4, 2, 16
    rows = []

    def row(what, us, note=""):
        rows.append(dict(what=what, us=us, note=note))
        print(f"{what:58s} {us:9.1f} us  {note}", flush=True)

    print(f"{torch.cuda.get_device_name()}, B={b} D={d} K={k} R={r} N={n}, {w}x{h}, median of {a.reps}")
    for dtype in (torch.bfloat16, torch.float32):
        x = torch.randn(b, d, h, w, device="cuda").to(dtype)
        weight = torch.randn(k, r + 2 * n, d, device="cuda") * 0.125

        def old():
            dts, Bs, Cs = x_proj_reference(x, weight, r, n)
            for t in (Bs, Cs):
                S.state_major(t[:, 0::2], True)
                S.state_major(t[:, 1::2], False)
            dt_t = torch.empty(b, 2, r, w, h, device="cuda", dtype=dtype)
            for j, kk in enumerate((0, 2)):
                S.transpose_planes(dts[:, kk], dt_t[:, j])

        row(f"x_proj {dtype}: bmm + relayouts + dt transposes", timed(old, a.reps))
        row(f"x_proj {dtype}: bmm alone", timed(lambda: x_proj_reference(x, weight, r, n), a.reps))
        precisions = ("tf32x3", "ieee") if dtype == torch.float32 else ("",)
        for prec in precisions:
            os.environ[F32_ENV] = prec or "tf32x3"
            row(f"x_proj {dtype}: kernel {prec}".rstrip(), timed(lambda: x_proj_triton(x, weight, r, n), a.reps))
        os.environ.pop(F32_ENV, None)

    sums = RouteSums(torch.randn(2, b, d, h, w, device="cuda"), torch.randn(2, b, d, w, h, device="cuda"))
    ln_w, ln_b = torch.randn(d, device="cuda"), torch.randn(d, device="cuda")
    z = torch.randn(b, h, w, d, device="cuda").bfloat16()

    def old_norm():
        y = torch.empty(b, d, h, w, device="cuda")
        S._merge_slots([sums.rows, sums.cols], y)
        layer_norm(y.permute(0, 2, 3, 1), ln_w, ln_b, 1e-5, gate=z, backend="triton")

    row("norm: merge pass + gated LN of the merged map", timed(old_norm, a.reps))
    nbytes = sums.rows.numel() * 4 * 2 + z.numel() * 2 * 2
    for spec in [""] + a.tiles.split(";"):
        if spec:
            os.environ[MERGE_TILES_ENV] = spec
        us = timed(lambda: merged_layer_norm_fwd(sums, ln_w, ln_b, 1e-5, z, torch.bfloat16), a.reps)
        row(f"norm: merged form, tile {spec or 'default'}", us, f"{nbytes / us / 1e3:.0f} GB/s")
        os.environ.pop(MERGE_TILES_ENV, None)
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    us = timed(lambda: dst.copy_(src), a.reps)
    row("copy of the merged form's bytes (read + write)", us, f"{nbytes / us / 1e3:.0f} GB/s")
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "bench_fused_io.json").write_text(json.dumps(dict(device=torch.cuda.get_device_name(), shape=[h, w], rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
