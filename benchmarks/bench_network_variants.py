"""The whole network's fuse under environment variants (kernel schedules), replayed from CUDA graphs.

    python3 benchmarks/bench_network_variants.py --variant "DIFFMF_TRITON_CHAIN=1,4,2048,8" \\
        --variant "DIFFMF_MERGE_LN_TILES=8,16,4" [--size 480x640] [--rounds 3] [--out results/]

One model (paper preset, shipped weights) and one random 640x480 pair; for each round and
each variant (the defaults first, then the ``--variant`` list in order, so rounds interleave)
the batch-1 fuse is captured in a CUDA graph with the variant's environment set
(``bench_scan.env_overrides``) and replayed ``--reps`` times (``--eager``: called eagerly
``--reps`` times, host call to GPU end, and the peak memory one call allocates on top of
what is allocated before it); the caching allocator's reserved memory over the whole timing
(from an emptied cache; for graphs the capture's pool and its warm-up call) is reported for
both; the table gives the median per
round, in bf16 autocast and in float32 (what ``diffmf fuse`` runs by default), and whether the
output is bitwise equal to the defaults' (a schedule must not change the image). Writes
``network_variants[_eager]_<size>.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scan  # noqa: E402  (env_overrides, graph_replay_ms, parse_variant)


def shipped_model(dev: torch.device) -> torch.nn.Module:
    """The paper preset with the shipped weights, in eval mode on ``dev``."""
    from diffmf.engine.checkpoint import load_weights
    from diffmf.weights import resolve

    return load_weights(resolve(None)).to(dev).eval()


def random_pair(h: int, w: int, dev: torch.device, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """One random (1, 1, h, w) infrared / visible pair in [0, 1]."""
    gen = torch.Generator(device=dev).manual_seed(seed)
    return torch.rand(1, 1, h, w, device=dev, generator=gen), torch.rand(1, 1, h, w, device=dev, generator=gen)


def graphed_fuse_ms(model, ir: torch.Tensor, vi: torch.Tensor, bf16: bool, reps: int) -> Tuple[float, torch.Tensor, None]:
    """Median ms of one batch-1 fuse (inference mode, bf16 autocast if ``bf16``) captured in a
    CUDA graph and replayed ``reps`` times (:func:`bench_scan.graph_replay_ms`), and a copy of
    its output."""
    box: Dict[str, torch.Tensor] = {}

    def fuse() -> None:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            box["y"] = model(ir, vi)

    ms = statistics.median(bench_scan.graph_replay_ms(fuse, reps))
    return ms, box["y"].clone(), None


def eager_fuse_ms(model, ir: torch.Tensor, vi: torch.Tensor, bf16: bool, reps: int) -> Tuple[float, torch.Tensor, float]:
    """Median ms of one eager batch-1 fuse (what ``diffmf fuse`` runs above its CUDA-graph
    size limit), from the host call to the GPU's end (synchronised), its output, and the peak
    MiB one call allocates on top of what was allocated before it."""
    import time

    def fuse() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            return model(ir, vi)

    for _ in range(3):
        y = fuse()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    y = fuse()
    torch.cuda.synchronize()
    peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        y = fuse()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), y.clone(), peak_mib


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", default=[], type=bench_scan.parse_variant,
                    help='"ENV=VALUE[;ENV=VALUE...]" (repeatable)')
    ap.add_argument("--size", default="480x640", help="HxW")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--eager", action="store_true", help="time eager calls (host to GPU end) instead of graph replays")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    dev = torch.device("cuda")
    h, w = (int(v) for v in args.size.split("x"))
    model = shipped_model(dev)
    ir, vi = random_pair(h, w, dev)
    variants: List[Dict[str, str]] = [{}] + args.variant
    names = ["defaults"] + [";".join(f"{k}={v}" for k, v in var.items()) for var in args.variant]
    rows: List[Dict] = []
    for dtype in args.dtypes.split(","):
        ref = None
        times: Dict[str, List[float]] = {n: [] for n in names}
        equal: Dict[str, bool] = {}
        peaks: Dict[str, float] = {}
        reserved: Dict[str, float] = {}
        for _ in range(args.rounds):
            for name, env in zip(names, variants):
                with bench_scan.env_overrides(env):
                    timer = eager_fuse_ms if args.eager else graphed_fuse_ms
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_reserved()
                    ms, y, peak = timer(model, ir, vi, dtype == "bf16", args.reps)
                    # the caching allocator's footprint of the call (graph: its pool + the warm-up)
                    reserved[name] = (torch.cuda.max_memory_reserved() - base) / 2**20
                times[name].append(ms)
                if peak is not None:
                    peaks[name] = peak
                ref = y if ref is None else ref
                equal[name] = equal.get(name, True) and bool(torch.equal(y, ref))
                torch.cuda.empty_cache()
        for name in names:
            rows.append(dict(dtype=dtype, variant=name, ms=times[name], bitwise_equal=equal[name], peak_mib=peaks.get(name),
                             reserved_mib=reserved[name]))
    how = f"eagerly, median of {args.reps} calls" if args.eager else f"as a CUDA graph, median of {args.reps} replays"
    print(f"# {torch.cuda.get_device_name(dev)}, fuse {w}x{h} batch 1 {how} per round")
    print(f"{'dtype':5}  {'variant':60}  {'ms per round':30}  bitwise  reserved MiB  {'peak MiB' if args.eager else ''}")
    for r in rows:
        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else ""
        print(f"{r['dtype']:5}  {r['variant'][:60]:60}  {' / '.join(f'{t:.3f}' for t in r['ms']):30}  {r['bitwise_equal']!s:7}"
              f"  {r['reserved_mib']:12.0f}  {peak}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = dict(device=torch.cuda.get_device_name(dev), torch=torch.__version__, size=args.size, reps=args.reps,
                    eager=args.eager)
        (args.out / f"network_variants{'_eager' if args.eager else ''}_{args.size}.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
