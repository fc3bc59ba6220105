"""Where the GPU time goes: per-kernel profiles of the whole network and a scan call for ncu.

``model``: torch.profiler over one 640x480 fuse (paper preset, batch 1, bf16 autocast,
inference mode) and one training step (batch 16, 128x128 crops, the paper's loss, AdamW);
prints the kernels sorted by total GPU time (top ``--top``; ``--by-cpu``: the training
step's ops by host time too), the step's wall time at batch 16, 8 and 4, and writes the
tables to ``--out``.

``scan``: one forward + backward (``--forward-only``: forward) of the fused 2-D scan at 640x480 (K=4, D=64, N=16, bf16)
between ``cudaProfilerStart``/``Stop``, after warm-up, for Nsight Compute::

    ncu --profile-from-start off --clock-control none --section WarpStateStats ... \\
        python3 benchmarks/gpu_profile.py scan

    PYTHONPATH=src python3 benchmarks/gpu_profile.py model --out results/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def _table(prof, top: int, by_cpu: bool = False) -> str:
    """Kernels by GPU time; with ``by_cpu`` also the ops by their own host time (where a
    host-bound step spends it)."""
    t = prof.key_averages().table(sort_by="cuda_time_total", row_limit=top, max_name_column_width=70)
    if by_cpu:
        t += "\n(by host time)\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=70)
    return t


def _wall_ms(fn, reps: int = 10) -> str:
    """Median wall time of ``fn`` (synchronised), for comparison with the profiled GPU total."""
    import statistics
    import time

    out = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) * 1e3)
    return f"wall time per call (median of {reps}, no profiler): {statistics.median(out):.1f} ms\n"


def _profiled(fn, warmup: int = 3, shapes: bool = False):
    """torch.profiler (CPU + CUDA) over one call of ``fn`` after ``warmup`` calls (recording
    the ops' input shapes with ``shapes``)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=shapes) as prof:
        fn()
        torch.cuda.synchronize()
    return prof


def profile_model(args) -> str:
    import diffmf
    from bench_model import train_step_fn  # this folder is on sys.path when run as a script

    dev = torch.device("cuda")
    model = diffmf.build_model(args.preset).to(dev).eval()
    h, w = args.size
    ir, vi = torch.rand(1, 1, h, w, device=dev), torch.rand(1, 1, h, w, device=dev)

    def fuse():
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            model(ir, vi)

    def fuse_fp32():  # what `diffmf fuse` runs by default (no autocast)
        with torch.inference_mode():
            model(ir, vi)

    out = [f"# fuse {w}x{h}, batch 1, bf16, inference\n", _table(_profiled(fuse), args.top)]
    if args.shapes:  # the ops (not kernels) by their own GPU time, per input shape
        avg = _profiled(fuse, shapes=True).key_averages(group_by_input_shape=True)
        out += [f"\n# fuse {w}x{h}, bf16: ops by self GPU time, per input shape\n",
                avg.table(sort_by="self_cuda_time_total", row_limit=args.shapes, max_name_column_width=40,
                          max_shapes_column_width=90)]
    out += [f"\n# fuse {w}x{h}, batch 1, fp32 (diffmf fuse default), inference\n", _table(_profiled(fuse_fp32), args.top)]
    if args.no_train:
        return "".join(out)

    step = train_step_fn(model, dev, batch=16, crop=128)
    out += ["\n# training step, batch 16, 128x128, bf16\n", _table(_profiled(step), args.top, args.by_cpu), _wall_ms(step)]
    for b in (8, 4):  # a step that takes as long with fewer crops is limited by the host
        out.append(f"batch {b}: " + _wall_ms(train_step_fn(model, dev, batch=b, crop=128)))
    return "".join(out)


def profile_scan(args) -> None:
    from diffmf.ops.triton import selective_scan_2d_triton

    dev = torch.device("cuda")
    h, w = args.size
    k, d, n, dt_ = 4, 64, 16, torch.bfloat16
    u = torch.randn(1, d, h, w, device=dev).to(dt_).requires_grad_()
    dt = (torch.randn(1, k, d, h, w, device=dev) * 0.5 - 2.0).to(dt_).requires_grad_()
    A = (-torch.arange(1, n + 1, device=dev, dtype=torch.float32).repeat(k * d, 1)).requires_grad_()
    B = torch.randn(1, k, n, h, w, device=dev).to(dt_).requires_grad_()
    C = torch.randn(1, k, n, h, w, device=dev).to(dt_).requires_grad_()
    D = torch.ones(k * d, device=dev, requires_grad=True)
    bias = (torch.randn(k * d, device=dev) * 0.5 - 3.0).requires_grad_()
    gy = torch.randn(1, d, h, w, device=dev)

    def run():
        if args.forward_only:
            with torch.no_grad():
                selective_scan_2d_triton(u, dt, A, B, C, D, bias, True)
            return
        y = selective_scan_2d_triton(u, dt, A, B, C, D, bias, True)
        y.backward(gy)

    for _ in range(3):
        run()
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    run()
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["model", "scan"])
    ap.add_argument("--preset", default="diffmf_paper")
    ap.add_argument("--size", default="480x640", help="HxW")
    ap.add_argument("--top", type=int, default=45)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--forward-only", action="store_true", help="scan: the forward alone (no grad)")
    ap.add_argument("--no-train", action="store_true", help="model: skip the training-step profile")
    ap.add_argument("--shapes", type=int, default=0, metavar="ROWS",
                    help="model: also list the bf16 fuse's ops by self GPU time per input shape (ROWS rows)")
    ap.add_argument("--by-cpu", action="store_true", help="model: also list the training step's ops by host time")
    args = ap.parse_args(argv)
    args.size = tuple(int(v) for v in args.size.lower().split("x"))
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    if args.what == "scan":
        profile_scan(args)
        return 0
    text = profile_model(args)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "profile_model.txt").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
