"""What limits SS2D's merged output norm: the route slots' layout and dtype (GPU experiment).

The merged norm (``diffmf.ops.triton.layernorm._merge_ln_fwd_kernel``) reads two columns slots
(B, D, H, W) and two rows slots stored transposed (B, D, W, H), float32, sums them per pixel,
normalises over D and writes the gated product channels-last. This script times a copy of that
kernel (generalised to any slot count and dtype) on the paper shape (D = 64, 640x480 unless
--shape) for: the slots as now; all four in the image layout (no transposed read); the slots in
bf16 (the dtype mamba-ssm's kernel gives a bf16 scan); and a device-to-device copy of the same
bytes. CUDA events around 5 back-to-back launches, median of --reps; prints a table, writes ``merge_ln_layouts.json`` to --out.

    PYTHONPATH=src python3 benchmarks/bench_merge_ln_layouts.py [--shape 480x640] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import time_ms  # noqa: E402

CALLS = 5  # launches per timed interval (back to back: the host's launch time is hidden)


@triton.jit
def _merge_ln(Cs, Rs, W, Bias, Z, Y, H, Wd, C, sc_slot, sr_slot, eps,
              NC: tl.constexpr, NR: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr, BLOCK_C: tl.constexpr):
    b = tl.program_id(2).to(tl.int64)
    h = tl.program_id(0) * BH + tl.arange(0, BH)[:, None, None]
    w = tl.program_id(1) * BW + tl.arange(0, BW)[None, :, None]
    c = tl.arange(0, BLOCK_C)[None, None, :]
    cmask = c < C
    mask = (h < H) & (w < Wd) & cmask
    plane = (b * C + c) * (H * Wd)
    x = tl.zeros((BH, BW, BLOCK_C), tl.float32)
    if NR > 0:
        x = tl.load(Rs + plane + w * H + h, mask=mask, other=0.0).to(tl.float32)
        for i in tl.static_range(1, NR):
            x += tl.load(Rs + i * sr_slot + plane + w * H + h, mask=mask, other=0.0).to(tl.float32)
    if NC > 0:
        cs = tl.load(Cs + plane + h * Wd + w, mask=mask, other=0.0).to(tl.float32)
        for i in tl.static_range(1, NC):
            cs += tl.load(Cs + i * sc_slot + plane + h * Wd + w, mask=mask, other=0.0).to(tl.float32)
        x = cs + x
    mean = tl.sum(x, axis=2) / C
    xc = tl.where(mask, x - mean[:, :, None], 0.0)
    var = tl.sum(xc * xc, axis=2) / C
    rstd = 1.0 / tl.sqrt(var + eps)
    n = xc * rstd[:, :, None]
    n = n * tl.load(W + c, mask=cmask, other=0.0) + tl.load(Bias + c, mask=cmask, other=0.0)
    z = tl.load(Z + ((b * H + h) * Wd + w) * C + c, mask=mask, other=0.0).to(tl.float32)
    n = n * (z * tl.sigmoid(z))
    tl.store(Y + ((b * H + h) * Wd + w) * C + c, n.to(Y.dtype.element_ty), mask=mask)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="480x640", help="HxW")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--tiles", default="8,16,8;16,16,8;4,32,8;2,64,8;16,32,8;32,16,8;8,32,8")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    h, w = (int(v) for v in a.shape.split("x"))
    d, dev = 64, torch.device("cuda")
    ln_w, ln_b = torch.randn(d, device=dev), torch.randn(d, device=dev)
    z = torch.randn(1, h, w, d, device=dev).bfloat16()
    y = torch.empty_like(z)
    rows = []
    print(f"{torch.cuda.get_device_name()}, D={d}, {w}x{h}, median of {a.reps} (CUDA events)")
    for dtype in (torch.float32, torch.bfloat16):
        for nc, nr in ((2, 2), (4, 0)):
            cs = torch.randn(nc, 1, d, h, w, device=dev).to(dtype)
            rs = torch.randn(max(nr, 1), 1, d, w, h, device=dev).to(dtype)
            nbytes = (nc + nr) * cs[0].numel() * cs.element_size() + 2 * z.numel() * 2
            for spec in a.tiles.split(";"):
                bh, bw, warps = (int(v) for v in spec.split(","))
                grid = (triton.cdiv(h, bh), triton.cdiv(w, bw), 1)

                def run():
                    _merge_ln[grid](cs, rs, ln_w, ln_b, z, y, h, w, d, cs.stride(0), rs.stride(0), 1e-5,
                                    NC=nc, NR=nr, BH=bh, BW=bw, BLOCK_C=64, num_warps=warps)

                us = statistics.median(time_ms(lambda: [run() for _ in range(CALLS)], a.reps, 2)) * 1e3 / CALLS
                r = dict(dtype=str(dtype).split(".")[-1], cols=nc, rows=nr, tile=spec, us=us, gbs=nbytes / us / 1e3)
                rows.append(r)
                print(f"{r['dtype']:9s} cols {nc} rows {nr} tile {spec:9s} {us:8.1f} us {r['gbs']:6.0f} GB/s", flush=True)
            src = torch.empty(nbytes // 2, dtype=torch.uint8, device=dev)
            dst = torch.empty_like(src)
            us = statistics.median(time_ms(lambda: [dst.copy_(src) for _ in range(CALLS)], a.reps, 2)) * 1e3 / CALLS
            rows.append(dict(dtype=str(dtype).split(".")[-1], cols=nc, rows=nr, tile="copy", us=us, gbs=nbytes / us / 1e3))
            print(f"{'':9s} copy of the same bytes      {us:8.1f} us {nbytes / us / 1e3:6.0f} GB/s", flush=True)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "merge_ln_layouts.json").write_text(json.dumps(dict(device=torch.cuda.get_device_name(), shape=[h, w], rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
