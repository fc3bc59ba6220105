"""What a fresh ``diffmf fuse`` process pays before and around its first image, step by step.

Prints the wall time of each step in order: ``import torch``, diffmf's fuse modules, the
CUDA context, the first cuBLAS matmul, the first cuDNN convolution, the first Triton scan
(32x32), loading the shipped weights, the first network call at 64x64, then the first and
second calls at ``--size`` (fp32, as ``diffmf fuse`` runs). Run it twice on a machine: the
first run may compile Triton kernels, the second shows a warm disk cache.

    PYTHONPATH=src python3 benchmarks/bench_startup.py [--size 576x768] [--exit fast]
"""
from __future__ import annotations

import time

T0 = time.perf_counter()
STEPS = []


def step(name: str, t_prev: list) -> None:
    now = time.perf_counter()
    STEPS.append((name, now - t_prev[0]))
    print(f"{name:<44} {1e3 * (now - t_prev[0]):9.1f} ms", flush=True)
    t_prev[0] = now


def main() -> int:
    import argparse
    import os
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="576x768", help="HxW of the first real image")
    ap.add_argument("--exit", default="normal", choices=["normal", "fast"], help="fast: os._exit after flushing")
    args = ap.parse_args()
    t = [T0]
    import torch
    step("import torch", t)
    import diffmf.cli.fuse  # noqa: F401
    import diffmf.engine.fuse  # noqa: F401
    step("import diffmf fuse modules", t)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    torch.zeros(1, device=dev)
    torch.cuda.synchronize()
    step("CUDA context", t)
    a = torch.randn(64, 64, device=dev)
    (a @ a).sum().item()
    step("first matmul (cuBLAS)", t)
    x = torch.randn(1, 8, 32, 32, device=dev)
    torch.nn.functional.conv2d(x, torch.randn(8, 8, 3, 3, device=dev), padding=1).sum().item()
    step("first conv2d (cuDNN)", t)
    from diffmf.ops.triton import selective_scan_2d_triton
    step("import triton + diffmf kernels", t)
    u = torch.randn(1, 4, 32, 32, device=dev)
    dl = torch.randn(1, 4, 4, 32, 32, device=dev)
    Bm = torch.randn(1, 4, 4, 32, 32, device=dev)
    with torch.no_grad():
        selective_scan_2d_triton(u, dl, -torch.ones(16, 4, device=dev), Bm, Bm, None, None, True).sum().item()
    step("first Triton scan (32x32)", t)
    from diffmf.engine.fuse import Fuser

    fuser = Fuser.from_weights(None, "cuda", cuda_graphs=False)
    torch.cuda.synchronize()
    step("load shipped weights", t)
    fuser.fuse_y(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
    torch.cuda.synchronize()
    step("first network call 64x64", t)
    h, w = (int(v) for v in args.size.split("x"))
    for i in range(2):
        fuser.fuse_y(torch.rand(1, 1, h, w), torch.rand(1, 1, h, w))
        torch.cuda.synchronize()
        step(f"network call {i + 1} at {w}x{h} (fp32)", t)
    print(f"{'total to here':<44} {1e3 * (time.perf_counter() - T0):9.1f} ms (from the script's first line)", flush=True)
    if args.exit == "fast":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
