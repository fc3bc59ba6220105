"""State elements the network's scan calls process for one fuse (CPU, no scan is run).

    PYTHONPATH=src python benchmarks/scan_work.py --sizes 480x640,768x1024

Builds the paper preset, replaces the SS2D scan (``selective_scan_2d_lowrank`` as
``diffmf.model.vss`` calls it) with a recorder that returns zeros, runs one batch-1 fuse per
size and prints each call's shape and the total of batch x routes x channels x states x
pixels: the number of state elements (and exponentials) of one sweep over all calls, which
``sol_sweeps.py``'s per-scan times scale to the whole network (docs/benchmarks-log.md, run 20).
"""
from __future__ import annotations

import argparse
from typing import List, Tuple
from unittest import mock

import torch

import diffmf
import diffmf.model.vss as vss


def scan_calls(h: int, w: int, preset: str = "diffmf_paper") -> List[Tuple[int, int, int, int, int, int]]:
    """(batch, routes x channels, states, channels, H, W) of every scan call of one fuse."""
    calls = []

    def record(u, dts, dt_weight, A, B, C, *args, **kwargs):
        b, d, hh, ww = u.shape
        calls.append((b, A.shape[0], A.shape[1], d, hh, ww))
        return torch.zeros(b, d, hh, ww, dtype=torch.float32)

    model = diffmf.build_model(preset).eval()
    with mock.patch.object(vss, "selective_scan_2d_lowrank", record), torch.no_grad():
        model(torch.rand(1, 1, h, w), torch.rand(1, 1, h, w))
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="480x640,768x1024", help="H x W, comma list")
    ap.add_argument("--preset", default="diffmf_paper")
    args = ap.parse_args()
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        calls = scan_calls(h, w, args.preset)
        total = sum(b * kd * n * hh * ww for b, kd, n, _, hh, ww in calls)
        ref = 4 * 64 * 16 * 480 * 640
        print(f"{size}: {len(calls)} scan calls, {total:.4e} state elements per sweep "
              f"= {total / ref:.2f} x the 480x640 scan of 4 routes x 64 channels x 16 states")
        for b, kd, n, d, hh, ww in calls:
            print(f"    batch {b}  routes x channels {kd}  states {n}  {hh} x {ww}")


if __name__ == "__main__":
    main()
