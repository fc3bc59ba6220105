"""``diffmf info``: parameters and FLOPs per module, next to the paper's Table VII."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from diffmf.model import VARIANTS, build_model, list_models
from diffmf.model.flops import PAPER_TABLE_VII, count_costs


def parse_size(text: str) -> tuple:
    """'512x512' or '640x480' (W x H) -> (H, W)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x480 (W x H), got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "info", help="parameters and FLOPs per module",
        description="Print parameters and FLOPs per module of a DIFF-MF model for one input pair, "
        "next to the paper's Table VII (393.871 GFLOPs at 1x1x512x512, 32 channels).",
    )
    p.add_argument("--model", default="diffmf_paper", choices=list_models())
    p.add_argument("--variant", default="full", choices=sorted(VARIANTS))
    p.add_argument("--size", type=parse_size, default=(512, 512), help="W x H of the input pair (default 512x512)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    model = build_model(args.model, variant=args.variant)
    r = count_costs(model, args.size, args.batch)
    h, w = args.size
    if args.json:
        print(json.dumps({"model": args.model, "variant": args.variant, "config": asdict(model.config),
                          "size_hw": [h, w], "batch": args.batch, "params": r.params, "dense_flops": r.dense,
                          "scan_flops": r.scan, "total_flops": r.total, "paper_attention_flops": r.paper_attention}, indent=2))
        return 0
    print(f"{args.model} (variant {args.variant}), input {args.batch}x1x{h}x{w}")
    print(f"{'module':34s} {'params':>10s} {'dense GFLOPs':>13s} {'scan GFLOPs':>12s} {'total':>10s}")
    for name, params in r.params.items():
        dense, scan = r.dense.get(name, 0), r.scan.get(name, 0)
        if not (params or dense or scan):
            continue
        label = name or "TOTAL"
        print(f"{label:34s} {params:10,d} {dense / 1e9:13.3f} {scan / 1e9:12.3f} {(dense + scan) / 1e9:10.3f}")
    block = model.config.block
    paper = PAPER_TABLE_VII[block]
    print()
    print("FLOPs: 2 per multiply-add for convolutions, linear layers and matrix products (PyTorch's")
    print("FlopCounterMode); selective scans counted as VMamba does, 9*B*L*D*N + B*L*D per scan with")
    print("D over all routes and N the state size. Element-wise ops, norms and activations are not counted.")
    same = (h, w) == (512, 512) and args.batch == 1 and model.config.embed_dim == 32
    ref = f"paper Table VII ({'DIFF-MF using SSM' if block == 'vss' else 'DIFF-MF using pure transformer'}, 1x1x512x512, 32 ch): {paper / 1e9:,.3f} GFLOPs"
    print(ref + ("" if same else "  [different input/width: not comparable]"))
    if block == "restormer":
        print(f"paper's attention formula 4*B*(HW)^2*D over this model's attention calls: {r.paper_attention / 1e9:,.3f} GFLOPs")
        print("(Restormer's MDTA attends across channels and is linear in HW; the formula assumes spatial attention.)")
    return 0
