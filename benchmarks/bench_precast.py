"""Autocast inference with the weights rounded once (``diffmf.engine.precast``, an experiment)
against autocast's per-call casts: the whole network's bf16 fuse, graph replays and eager.

    python3 benchmarks/bench_precast.py [--sizes 480x640,768x1024] [--rounds 3] [--out results/]

Paper preset with the shipped weights, one random pair per size; each round captures the
batch-1 fuse (inference mode, bf16 autocast) of the model as loaded and of its
:func:`~diffmf.engine.precast.precast_for_autocast` copy and replays each ``--reps`` times
(interleaved rounds), then calls it ``--reps`` times eagerly (host call to GPU end). The
table gives the medians per round, the kernels one fuse launches (torch.profiler) and whether
the two outputs are bitwise equal. Writes ``precast.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scan  # noqa: E402  (graph_replay_ms)
from bench_network_variants import eager_fuse_ms, random_pair, shipped_model  # noqa: E402


def kernels_per_call(fn) -> int:
    """GPU kernels one call of ``fn`` launches (torch.profiler, after one warm-up call)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="480x640,768x1024", help="comma list of HxW")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2

    from diffmf.engine.precast import precast_for_autocast

    dev = torch.device("cuda")
    model = shipped_model(dev)
    nets = {"autocast casts": model, "precast": precast_for_autocast(model, torch.bfloat16)}
    rows: List[Dict] = []
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        ir, vi = random_pair(h, w, dev)
        outs: Dict[str, torch.Tensor] = {}

        def fuse_fn(net, name):
            def fuse() -> None:
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                    outs[name] = net(ir, vi)
            return fuse

        times: Dict[str, List[float]] = {n: [] for n in nets}
        eager: Dict[str, List[float]] = {n: [] for n in nets}
        for _ in range(args.rounds):
            for name, net in nets.items():
                times[name].append(statistics.median(bench_scan.graph_replay_ms(fuse_fn(net, name), args.reps)))
                eager[name].append(eager_fuse_ms(net, ir, vi, True, args.reps)[0])
        launches = {n: kernels_per_call(fuse_fn(net, n)) for n, net in nets.items()}
        equal = torch.equal(outs["precast"], outs["autocast casts"])
        for name in nets:
            rows.append({"size": f"{w}x{h}", "variant": name, "ms": times[name], "eager_ms": eager[name],
                         "kernels": launches[name], "bitwise_equal": equal})
    print(f"{'size':>9}  {'variant':<15} {'kernels':>7}  {'graph ms per round':<24} {'eager ms per round':<24} bitwise")
    for r in rows:
        ms, ems = (" / ".join(f"{t:.2f}" for t in r[k]) for k in ("ms", "eager_ms"))
        print(f"{r['size']:>9}  {r['variant']:<15} {r['kernels']:>7}  {ms:<24} {ems:<24} {r['bitwise_equal']}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
        (args.out / "precast.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
