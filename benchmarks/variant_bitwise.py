"""Bitwise identity of the Triton scan under environment variants (schedules that must not
change a single bit: lane-layout load schedules, software-pipelining stages), on a CUDA GPU.

For each case (the per-channel and the rank-2 call, bf16 and fp32, a paper-size and a ragged
shape) the forward output and every gradient are computed once per variant and compared
bit for bit with the first variant (the defaults). Prints one line per case and variant;
``--out DIR`` writes ``variant_bitwise.json``. Exit status 1 if any differs.

    PYTHONPATH=src python3 benchmarks/variant_bitwise.py \
        --variant "DIFFMF_TRITON_LAYOUT_FWD=2,1,4,0,16,128,2" --out results/

Two source trees (a kernel change that must not change a bit): ``--save FILE`` writes the
defaults' outputs, and a run of the other tree with ``--against FILE`` compares with them;
``--network`` adds the paper network with the shipped weights fusing a random 640x480 pair
(bf16 autocast and float32):

    PYTHONPATH=old/src python3 benchmarks/variant_bitwise.py --network --save /tmp/old.pt
    PYTHONPATH=src python3 benchmarks/variant_bitwise.py --network --against /tmp/old.pt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

import torch

from bench_scan import env_overrides, parse_variant  # this folder is on sys.path when run as a script

from diffmf.ops.triton import selective_scan_2d_lowrank_triton, selective_scan_2d_triton

CASES = [  # (name, rank, dtype, batch, H, W)
    ("per-channel bf16 480x640", 0, torch.bfloat16, 1, 480, 640),
    ("rank-2 bf16 480x640", 2, torch.bfloat16, 1, 480, 640),
    ("rank-2 fp32 61x77", 2, torch.float32, 1, 61, 77),
    ("per-channel fp32 61x77", 0, torch.float32, 1, 61, 77),
    ("rank-2 bf16 2x33x130", 2, torch.bfloat16, 2, 33, 130),
]


def inputs(rank: int, dtype: torch.dtype, batch: int, h: int, w: int, dev: torch.device) -> List[torch.Tensor]:
    g = torch.Generator(device=dev).manual_seed(h * 1000 + w + rank)
    k, d, n = 4, 64, 16
    u = torch.randn(batch, d, h, w, device=dev, generator=g).to(dtype)
    A = -torch.exp(torch.randn(k * d, n, device=dev, generator=g) * 0.5)
    B = torch.randn(batch, k, n, h, w, device=dev, generator=g).to(dtype)
    C = torch.randn(batch, k, n, h, w, device=dev, generator=g).to(dtype)
    D = torch.randn(k * d, device=dev, generator=g)
    bias = torch.randn(k * d, device=dev, generator=g) * 0.5 - 2.0
    if rank:
        dts = torch.randn(batch, k, rank, h, w, device=dev, generator=g).to(dtype)
        W = (torch.randn(k, d, rank, device=dev, generator=g) * 0.5).to(dtype)
        return [u, dts, W, A, B, C, D, bias]
    dt = (torch.randn(batch, k, d, h, w, device=dev, generator=g) * 0.5).to(dtype)
    return [u, dt, A, B, C, D, bias]


def run(rank: int, ins: List[torch.Tensor]) -> List[torch.Tensor]:
    """[y without grad, y with grad, every input gradient]."""
    fn = selective_scan_2d_lowrank_triton if rank else selective_scan_2d_triton
    with torch.no_grad():
        y0 = fn(*ins, True)
    xs = [t.detach().clone().requires_grad_() for t in ins]
    y = fn(*xs, True)
    dy = torch.randn(y.shape, device=y.device, generator=torch.Generator(device=y.device).manual_seed(7))
    grads = torch.autograd.grad(y, xs, dy)
    return [y0, y.detach(), *grads]


def _compare(rows: List[dict], name: str, variant, out: List[torch.Tensor], ref: List[torch.Tensor]) -> bool:
    """Append and print one comparison row; True if every tensor is bitwise equal."""
    diffs = [float((a.double() - b.double()).abs().max()) for a, b in zip(out, ref)]
    same = len(out) == len(ref) and all(torch.equal(a, b) for a, b in zip(out, ref))
    rows.append(dict(case=name, variant=variant, bitwise_equal=same, max_abs_diff=diffs))
    print(f"{'SAME ' if same else 'DIFF '} {name:28s} {variant}  max|diff| {max(diffs):.3e}", flush=True)
    return same


def fuse_outputs(model: torch.nn.Module, ir: torch.Tensor, vi: torch.Tensor) -> List[torch.Tensor]:
    """The network's fuse of one pair, in bf16 autocast and in float32."""
    outs = []
    for bf16 in (True, False):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            outs.append(model(ir, vi).float().clone())
    return outs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", type=parse_variant, default=[], help='"ENV=VALUE[;ENV=VALUE]"')
    ap.add_argument("--network", action="store_true", help="add the shipped network's fuse (bf16, fp32)")
    ap.add_argument("--save", default=None, help="write the defaults' outputs to this file")
    ap.add_argument("--against", default=None, help="compare the defaults' outputs with this file (--save of another tree)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    dev = torch.device("cuda")
    variants: List[Dict[str, str]] = [{}] + args.variant
    rows, ok = [], True
    cases = [(*c, False) for c in CASES] + ([("network fuse 480x640 (bf16, fp32)", 0, None, 1, 480, 640, True)] if args.network else [])
    saved: Dict[str, List[torch.Tensor]] = {}
    other = torch.load(args.against, map_location=dev) if args.against else {}
    if args.network:  # loaded once: the kernel variants are read at launch, not at load
        from bench_network_variants import random_pair, shipped_model

        model = shipped_model(dev)
        ir, vi = random_pair(480, 640, dev)
    for name, rank, dtype, batch, h, w, network in cases:
        ins = None if network else inputs(rank, dtype, batch, h, w, dev)
        ref = None
        for v in variants:
            with env_overrides(v):
                try:
                    out = fuse_outputs(model, ir, vi) if network else run(rank, ins)
                    torch.cuda.synchronize()
                except Exception as exc:  # report, keep going
                    rows.append(dict(case=name, variant=v, error=repr(exc)[-300:]))
                    print(f"ERROR {name:28s} {v}: {repr(exc)[-200:]}", flush=True)
                    ok = False
                    continue
            if ref is None:
                ref = out
                saved[name] = [t.cpu() for t in out]
                if name in other:
                    ok &= _compare(rows, name, f"against {args.against}", out, other[name])
                elif args.against:
                    print(f"MISSING {name:28s} not in {args.against}", flush=True)
                    ok = False
                continue
            ok &= _compare(rows, name, v, out, ref)
    if args.save:
        torch.save(saved, args.save)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "variant_bitwise.json").write_text(json.dumps(dict(device=torch.cuda.get_device_name(), rows=rows), indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
