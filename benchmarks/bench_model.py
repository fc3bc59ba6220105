"""Whole-network benchmark of DIFF-MF (``diffmf.build_model(preset)``) on a CUDA GPU.

* Latency of fusing one pair (batch 1, bf16 autocast, no grad) at 640x480 and 1024x768:
  median over repeats after warm-up (CUDA events), with peak GPU memory; eager and replayed
  from a CUDA graph (bitwise-compared with eager).
* Scaling from 256x256 to 2048x2048: time and peak memory (allocated, and reserved by the
  caching allocator from an emptied cache), and their ratios to the 256x256 run next to the
  pixel-count ratio (linear scaling means the ratios match).
* Training throughput: pairs/s of full steps (forward, the paper's loss, backward, AdamW
  step) on 128x128 crops, batch 16, bf16 autocast; eager and with forward + loss + backward
  replayed from a CUDA graph (the trainer's default).

The active selective-scan backend is reported (``auto`` picks Triton on CUDA). Prints a table;
``--out DIR`` writes ``bench_model.json``.

    PYTHONPATH=src python3 benchmarks/bench_model.py --out results/
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch

import diffmf
from diffmf.engine.graphs import GraphedCall
from diffmf.ops.dispatch import get_backend, resolve_backend
from diffmf.ops.dwconv import get_conv_backend, set_conv_backend


def time_ms(fn, reps: int, warmup: int) -> List[float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        out.append(s.elapsed_time(e))
    return out


def fuse_latency(model, h: int, w: int, dev, reps: int, warmup: int, graphs: bool = False) -> Dict:
    """Median latency of one batch-1 fusion; with ``graphs`` also replayed from a CUDA graph
    (:class:`diffmf.engine.graphs.GraphedCall`, what ``diffmf fuse`` does for repeated sizes),
    checked bitwise against the eager output."""
    ir = torch.rand(1, 1, h, w, device=dev)
    vi = torch.rand(1, 1, h, w, device=dev)

    def forward(a, b):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(a, b)

    def run():
        with torch.no_grad():
            return forward(ir, vi)

    torch.cuda.empty_cache()  # the reserved peak below is this size's own footprint
    ref = run()  # compile / allocate
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time_ms(run, reps, warmup)
    res = dict(h=h, w=w, ms=statistics.median(t), ms_min=min(t), peak_mem_MiB=torch.cuda.max_memory_allocated() / 2**20,
               peak_reserved_MiB=torch.cuda.max_memory_reserved() / 2**20)
    if graphs:
        g = GraphedCall(forward)

        def replay():
            with torch.no_grad():
                return g(ir, vi)

        replay(), replay()  # eager run, capture (+ first replay)
        tg = time_ms(replay, reps, warmup)
        res.update(graph_ms=statistics.median(tg), graph_equal=bool(torch.equal(replay(), ref)), graph_replays=g.replays)
    return res


def train_step_fn(model, dev, batch: int, crop: int, graphed: bool = False) -> Callable[[], None]:
    """One training step on random ``batch x 1 x crop x crop`` pairs (forward under bf16
    autocast, the paper's loss, backward, AdamW); puts ``model`` in train mode and turns
    ``torch.backends.cudnn.benchmark`` on, as the trainer does. ``graphed``:
    forward + loss + backward replayed from a CUDA graph, as the trainer does by default
    (:class:`diffmf.engine.graphed_step.GraphedTrainStep`)."""
    from diffmf.engine.graphed_step import GraphedTrainStep
    from diffmf.losses import FusionLoss

    loss_fn = FusionLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    # cuDNN autotuning, as the trainer sets it (diffmf.engine.trainer): without it the bf16
    # depthwise convs and the loss's 11 x 11 filter take other, slower kernels
    torch.backends.cudnn.benchmark = True
    ir = torch.rand(batch, 1, crop, crop, device=dev)
    vi = torch.rand(batch, 1, crop, crop, device=dev)
    fwd_bwd = GraphedTrainStep(model, loss_fn, list(model.parameters()), autocast=torch.bfloat16, strict=True,
                               graphs=graphed)

    def step() -> None:
        fwd_bwd(ir, vi)
        opt.step()

    return step


def conv_check(model, dev, h: int = 480, w: int = 640) -> Dict:
    """The network's output with SS2D's depthwise conv + SiLU on the Triton kernel (what
    ``auto`` runs at inference) against the PyTorch path, and the latency of each."""
    ir, vi = torch.rand(1, 1, h, w, device=dev), torch.rand(1, 1, h, w, device=dev)
    res = {}
    for name in ("triton", "torch"):
        set_conv_backend(name)
        try:
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                res[name] = model(ir, vi).float()
                res[name + "_ms"] = statistics.median(time_ms(lambda: model(ir, vi), 5, 2))
        finally:
            set_conv_backend(None)
    diff = (res["triton"] - res["torch"]).abs()
    return dict(max_abs=float(diff.max()), mean_abs=float(diff.mean()), triton_ms=res["triton_ms"], torch_ms=res["torch_ms"])


def train_throughput(model, dev, batch: int, crop: int, steps: int, warmup: int, graphed: bool = False) -> Dict:
    """Median step time; peak memory is the reserved peak (a graph's tensors live in its
    private pool, which "allocated" stops counting once the capture is over)."""
    step = train_step_fn(model, dev, batch, crop, graphed)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t = time_ms(step, steps, warmup)
    ms = statistics.median(t)
    model.eval()
    return dict(batch=batch, crop=crop, graphed=graphed, ms_per_step=ms, pairs_per_s=batch / (ms * 1e-3),
                peak_reserved_MiB=torch.cuda.max_memory_reserved() / 2**20)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="diffmf_paper")
    ap.add_argument("--latency", default="480x640,768x1024", help="HxW list for the fuse latency")
    ap.add_argument("--scaling", default="256x256,512x512,1024x1024,2048x2048")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--train-crop", type=int, default=128)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--no-graphs", action="store_true", help="no CUDA-graph replay timings in the scaling table")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import triton

    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    model = diffmf.build_model(args.preset).to(dev).eval()
    info = dict(
        gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
        python=platform.python_version(), date=time.strftime("%Y-%m-%d"), preset=args.preset,
        params=sum(p.numel() for p in model.parameters()),
        scan_backend=f"{get_backend()} -> {resolve_backend(dev)}",
        conv_backend=get_conv_backend(),
        command="PYTHONPATH=src python3 benchmarks/bench_model.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    print(info, flush=True)
    out: Dict = dict(info=info, latency=[], scaling=[], train=None)
    print(f"{'fuse (bf16, batch 1)':>22s} {'ms':>9s} {'peak MiB':>9s} {'graph ms':>9s} {'== eager':>8s}")
    for shape in args.latency.split(","):
        h, w = (int(v) for v in shape.split("x"))
        r = fuse_latency(model, h, w, dev, args.reps, args.warmup, graphs=True)
        out["latency"].append(r)
        print(f"{f'{w}x{h}':>22s} {r['ms']:9.2f} {r['peak_mem_MiB']:9.0f} {r['graph_ms']:9.2f} {str(r['graph_equal']):>8s}", flush=True)
    out["conv_check"] = conv_check(model, dev)
    print(f"depthwise conv + SiLU, Triton vs PyTorch path, whole network 640x480 bf16: {out['conv_check']}", flush=True)
    print(f"{'scaling':>22s} {'ms':>9s} {'peak MiB':>9s} {'px ratio':>9s} {'t ratio':>8s} {'mem ratio':>9s} {'graph ms':>9s}"
          f" {'reserved':>9s} {'res ratio':>9s}")
    base = None
    for shape in args.scaling.split(","):
        h, w = (int(v) for v in shape.split("x"))
        try:
            r = fuse_latency(model, h, w, dev, max(3, args.reps // 2), 1, graphs=not args.no_graphs)
        except torch.cuda.OutOfMemoryError as exc:
            out["scaling"].append(dict(h=h, w=w, error="out of memory"))
            print(f"{f'{w}x{h}':>22s} out of memory: {str(exc)[:80]}")
            torch.cuda.empty_cache()
            continue
        base = base or r
        px = (h * w) / (base["h"] * base["w"])
        r.update(px_ratio=px, t_ratio=r["ms"] / base["ms"], mem_ratio=r["peak_mem_MiB"] / base["peak_mem_MiB"],
                 reserved_ratio=r["peak_reserved_MiB"] / base["peak_reserved_MiB"])
        out["scaling"].append(r)
        print(f"{f'{w}x{h}':>22s} {r['ms']:9.2f} {r['peak_mem_MiB']:9.0f} {px:9.1f} {r['t_ratio']:8.1f} {r['mem_ratio']:9.1f} "
              f"{r.get('graph_ms', float('nan')):9.2f} {r['peak_reserved_MiB']:9.0f} {r['reserved_ratio']:9.1f}", flush=True)
        torch.cuda.empty_cache()
    if not args.skip_train:
        out["train"] = []
        for graphed in (False, True):
            r = train_throughput(model, dev, args.train_batch, args.train_crop, args.train_steps, args.warmup, graphed)
            out["train"].append(r)
            print(f"train {r['crop']}x{r['crop']} batch {r['batch']} ({'CUDA graph' if graphed else 'eager'}): "
                  f"{r['ms_per_step']:.1f} ms/step, {r['pairs_per_s']:.0f} pairs/s, peak reserved "
                  f"{r['peak_reserved_MiB']:.0f} MiB", flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "bench_model.json"), "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
