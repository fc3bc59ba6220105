"""Benchmark of the fused 2-D selective scan (Triton) on a CUDA GPU.

For each shape: forward and backward time (CUDA events, after warm-up, median of repeats,
inputs rotated among several copies so no run starts from a warm L2), the bytes moved,
achieved GB/s, and the fraction of a device-to-device copy's bandwidth measured in the same
run. Two byte counts are reported:

* ``issue`` -- the floor stated in the issue for the unfused layout (4x-expanded u, per-route
  fp32 outputs, fp32 everything): 1.1 GB forward / 1.9 GB backward at 640x480, D=64, N=16;
* ``min`` -- what this fused op must move at the given dtype: each input read once, each
  output written once (forward: u, delta, B, C in, y float32 out; backward: those + dy in,
  du, ddelta, dB, dC out).

Each shape also reports the forward replayed as one CUDA graph (the GPU time without the
host's launch gaps) and the host time to issue one eager forward.

``--lowrank R`` also times the network's call with rank-R step inputs: expand_delta + the
scan against the dt_proj applied inside the sweeps.

``--sweep`` also times alternative lane layouts / segment lengths (environment overrides of
:mod:`diffmf.ops.triton.scan`: the built-in list, or ``--variant "ENV=VALUE[;ENV=VALUE]"``
repeated), in ``--rounds`` interleaved rounds; kernels are compiled in parallel processes
first. ``--profile`` prints per-kernel times. Prints a table; ``--out DIR`` writes
``bench_scan.json``.

    PYTHONPATH=src python3 benchmarks/bench_scan.py --out results/ [--sweep] [--profile]
    PYTHONPATH=src python3 benchmarks/bench_scan.py --shapes 480x640 --sweep --rounds 3 \
        --variant "DIFFMF_TRITON_LAYOUT_FWD=2,1,4,1,16,0" --out results/
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Dict, List

import torch

from diffmf.ops.triton import selective_scan_2d_triton

ISSUE_BYTES = {"fwd": 1.1e9, "bwd": 1.9e9}  # at 640x480, K=4, D=64, N=16 (issue 5)


def make_inputs(batch, k, d, n, h, w, dtype, dev, copies):
    sets = []
    for _ in range(copies):
        u = torch.randn(batch, d, h, w, device=dev).to(dtype)
        dt = (torch.randn(batch, k, d, h, w, device=dev) * 0.5 - 2.0).to(dtype)
        A = -torch.arange(1, n + 1, device=dev, dtype=torch.float32).repeat(k * d, 1) * torch.exp(torch.randn(k * d, 1, device=dev) * 0.1)
        B = torch.randn(batch, k, n, h, w, device=dev).to(dtype)
        C = torch.randn(batch, k, n, h, w, device=dev).to(dtype)
        D = torch.ones(k * d, device=dev)
        bias = torch.randn(k * d, device=dev) * 0.5 - 3.0
        sets.append([u, dt, A, B, C, D, bias])
    return sets


def time_ms(fn, reps: int, warmup: int = 3) -> List[float]:
    for i in range(warmup):
        fn(i)
    torch.cuda.synchronize()
    out = []
    for i in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn(i)
        e.record()
        torch.cuda.synchronize()
        out.append(s.elapsed_time(e))
    return out


def copy_bandwidth(dev) -> float:
    """Device-to-device copy, GB/s counting bytes read + written (1 GiB buffers)."""
    n = 1 << 28
    a = torch.empty(n, dtype=torch.float32, device=dev).normal_()
    b = torch.empty_like(a)
    t = statistics.median(time_ms(lambda i: b.copy_(a), 20))
    return 2 * a.numel() * 4 / (t * 1e-3) / 1e9


def min_bytes(batch, k, d, n, h, w, dtype) -> Dict[str, float]:
    e = torch.empty(0, dtype=dtype).element_size()
    L = batch * h * w
    ins = L * (d + k * d + 2 * k * n) * e
    fwd = ins + L * d * 4
    bwd = ins + L * d * 4 + L * d * e + L * k * d * e + 2 * L * k * n * e
    return {"fwd": fwd, "bwd": bwd}


def host_ms(fn, reps: int) -> float:
    """Host time per call of ``fn(i)`` to enqueue its work (no synchronisation between the
    timed calls; the GPU is drained before and after)."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(reps):
        fn(i)
    t = (time.perf_counter() - t0) / reps * 1e3
    torch.cuda.synchronize()
    return t


def launch_split(fwd, reps: int) -> Dict[str, float]:
    """The forward's GPU time without launch gaps (replayed as one CUDA graph) and the host
    time to enqueue one eager call (no synchronisation inside the timed calls)."""
    cpu = host_ms(fwd, reps)
    t_g = graph_replay_ms(lambda: fwd(0), reps)
    return {"fwd_graph_ms": statistics.median(t_g), "fwd_enqueue_ms": cpu}


def graph_replay_ms(fn, reps: int, calls: int = 1) -> List[float]:
    """Milliseconds per call of ``fn()`` captured ``calls`` times in one CUDA graph, for each of
    ``reps`` replays (:func:`time_ms`; one warm-up call on the capture stream first). Several
    calls per graph amortise the replay's own launch for kernels of a few microseconds."""
    g = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()  # warm-up on the capture stream
        with torch.cuda.graph(g, stream=side):
            for _ in range(calls):
                fn()
    torch.cuda.current_stream().wait_stream(side)
    return [t / calls for t in time_ms(lambda i: g.replay(), reps)]


def bench_shape(batch, k, d, n, h, w, dtype, dev, reps, profile=False, graph=False) -> Dict:
    copies = 3
    sets = make_inputs(batch, k, d, n, h, w, dtype, dev, copies)
    dys = [torch.randn(batch, d, h, w, device=dev) for _ in range(copies)]

    def fwd(i):
        with torch.no_grad():
            selective_scan_2d_triton(*sets[i % copies], True)

    graphs = []
    for i in range(copies):
        xs = [t.detach().clone().requires_grad_() for t in sets[i]]
        graphs.append((xs, selective_scan_2d_triton(*xs, True)))

    def bwd(i):
        xs, y = graphs[i % copies]
        torch.autograd.grad(y, xs, dys[i % copies], retain_graph=True)

    t_f = time_ms(fwd, reps)
    t_b = time_ms(bwd, reps)
    res = dict(batch=batch, k=k, d=d, n=n, h=h, w=w, dtype=str(dtype).replace("torch.", ""),
               fwd_ms=statistics.median(t_f), bwd_ms=statistics.median(t_b),
               fwd_ms_min=min(t_f), bwd_ms_min=min(t_b), exps=k * d * n * batch * h * w)
    if graph:
        res.update(launch_split(fwd, reps))
    res["bytes_min"] = min_bytes(batch, k, d, n, h, w, dtype)
    if profile:
        from torch.profiler import ProfilerActivity, profile as prof
        with prof(activities=[ProfilerActivity.CUDA]) as p:
            fwd(0)
            bwd(0)
            torch.cuda.synchronize()
        kt: Dict[str, float] = {}
        for ev in p.key_averages():
            if ev.device_type.name == "CUDA" or getattr(ev, "device_time_total", 0) > 0:
                kt[ev.key[:40]] = getattr(ev, "device_time_total", getattr(ev, "cuda_time_total", 0.0)) / 1e3
        res["kernels_ms"] = dict(sorted(kt.items(), key=lambda kv: -kv[1])[:16])
    return res


def bench_lowrank(batch, k, d, n, h, w, rank, dtype, dev, reps) -> Dict:
    """The network's call: rank-R step inputs and dt_proj weights. "expanded" = expand_delta
    (one bmm writing the (B, K, D, H, W) map) + the fused scan (which transposes that map for
    routes 0/2); "fused" = dt_proj inside the sweeps (no map). Forward as one CUDA
    graph, forward + backward eager; the two forwards' outputs compared."""
    from diffmf.ops.selective_scan import expand_delta
    from diffmf.ops.triton import selective_scan_2d_lowrank_triton

    copies = 3
    sets = []
    for base in make_inputs(batch, k, d, n, h, w, dtype, dev, copies):
        u, _, A, B, C, D, bias = base
        dts = (torch.randn(batch, k, rank, h, w, device=dev) * 0.5).to(dtype)
        W = (torch.randn(k, d, rank, device=dev) * rank ** -0.5).to(dtype)
        sets.append([u, dts, W, A, B, C, D, bias])
    dys = [torch.randn(batch, d, h, w, device=dev) for _ in range(copies)]
    paths = {
        "expanded": lambda u, dts, W, *r: selective_scan_2d_triton(u, expand_delta(dts, W), *r, True),
        "fused": lambda u, dts, W, *r: selective_scan_2d_lowrank_triton(u, dts, W, *r, True),
    }
    res: Dict = dict(batch=batch, k=k, d=d, n=n, h=h, w=w, rank=rank, dtype=str(dtype).replace("torch.", ""))
    outs = {}
    for name, fn in paths.items():
        def fwd(i, fn=fn):
            with torch.no_grad():
                return fn(*sets[i % copies])

        def fwd_bwd(i, fn=fn):
            xs = [t.detach().requires_grad_(t.is_floating_point()) for t in sets[i % copies]]
            y = fn(*xs)
            torch.autograd.grad(y, [x for x in xs if x.requires_grad], dys[i % copies])

        outs[name] = fwd(0)
        res[f"{name}_fwd_graph_ms"] = launch_split(fwd, reps)["fwd_graph_ms"]
        res[f"{name}_fwd_bwd_ms"] = statistics.median(time_ms(fwd_bwd, max(5, reps // 2)))
    res["max_abs_diff"] = float((outs["fused"] - outs["expanded"]).abs().max())
    res["bitwise_equal"] = bool(torch.equal(outs["fused"], outs["expanded"]))
    return res


def torch_reference_ms(batch, k, d, n, h, w, dtype, dev) -> float:
    from diffmf.ops import selective_scan_2d

    ins = make_inputs(batch, k, d, n, h, w, dtype, dev, 1)[0]
    with torch.no_grad():
        return statistics.median(time_ms(lambda i: selective_scan_2d(*ins, True, backend="torch"), 3, warmup=1))


SWEEP = [
    {},
    {"DIFFMF_TRITON_PHASES": "2"},  # both routes of an axis in one program: half the output slots
    {"DIFFMF_TRITON_SEGLEN": "96"},
    {"DIFFMF_TRITON_LAYOUT_FWD": "4,1,4,1,16"},  # 4 channels per lane share the B/C loads
    {"DIFFMF_TRITON_LAYOUT_BWD": "2,2,4,1"},  # 8 states per lane
]


@contextlib.contextmanager
def env_overrides(env: Dict[str, str]):
    """Set the environment variables ``env`` for the duration of the block, then restore them."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, val in saved.items():
            if val is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = val


def parse_variant(text: str) -> Dict[str, str]:
    """"ENV=VALUE[;ENV=VALUE...]" -> environment overrides of one sweep variant."""
    out = {}
    for item in filter(None, text.split(";")):
        key, sep, val = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"variant item {item!r} is not ENV=VALUE")
        out[key.strip()] = val.strip()
    return out


def warm_cache(variants: List[Dict[str, str]], args) -> None:
    """Compile every variant's kernels in parallel processes (Triton's on-disk cache), so the
    timing process below only loads them."""
    procs = []
    for v in variants:
        cmd = [sys.executable, __file__, "--warm-only", "--dtype", args.dtype, "--routes", str(args.routes),
               "--channels", str(args.channels), "--states", str(args.states)]
        procs.append(subprocess.Popen(cmd, env=dict(os.environ, **v), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            print(f"  warm-up failed: {err[-300:]}", flush=True)


def sweep_variants(args) -> List[Dict[str, str]]:
    """The default configuration first, then ``--variant``s if given, else :data:`SWEEP`."""
    return [{}] + args.variant if args.variant else SWEEP


def run_sweep(args, dev, dtype) -> List[Dict]:
    """Alternative layouts / segment lengths (environment overrides read at each call), timed
    in ``--rounds`` interleaved rounds (machine drift hits every variant alike); each variant
    reports the median over rounds of its per-round medians."""
    h, w = (int(v) for v in args.shapes.split(",")[0].split("x"))
    variants = sweep_variants(args)
    runs: List[List[Dict]] = [[] for _ in variants]
    for _ in range(args.rounds):
        for i, v in enumerate(variants):
            with env_overrides(v):
                try:
                    runs[i].append(bench_shape(args.batch, args.routes, args.channels, args.states, h, w, dtype, dev, args.reps, graph=True))
                except Exception as exc:  # report the failure, keep sweeping
                    runs[i].append({"error": repr(exc)[-400:]})
    out = []
    for v, rs in zip(variants, runs):
        ok = [r for r in rs if "error" not in r]
        res = dict(variant=v, rounds=len(ok))
        if ok:
            for key in ("fwd_ms", "bwd_ms", "fwd_graph_ms"):
                res[key] = statistics.median(r[key] for r in ok)
                res[f"{key}_rounds"] = [r[key] for r in ok]
        else:
            res["error"] = rs[-1]["error"]
        out.append(res)
        print(f"  sweep {str(v):46s} fwd {res.get('fwd_ms', float('nan')):7.3f} ms (graph {res.get('fwd_graph_ms', float('nan')):6.3f})"
              f"  bwd {res.get('bwd_ms', float('nan')):7.3f} ms" + (f"  ERROR {res['error'][:120]}" if "error" in res else ""), flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="480x640,768x1024", help="HxW list")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--routes", type=int, default=4)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--states", type=int, default=16)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", default=None)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--rounds", type=int, default=1, help="sweep: interleaved rounds over the variants")
    ap.add_argument("--variant", action="append", type=parse_variant, default=[],
                    help='sweep this "ENV=VALUE[;ENV=VALUE]" instead of the built-in list (repeatable)')
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--torch-ref", action="store_true", help="also time the plain PyTorch path once")
    ap.add_argument("--lowrank", type=int, default=0, metavar="R",
                    help="also time the network's rank-R call: expand_delta + scan against dt_proj inside the sweeps")
    ap.add_argument("--warm-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--warm-sweep", action="store_true", help="only compile the sweep's kernels (in parallel) and exit")
    args = ap.parse_args(argv)
    import triton

    dev = torch.device("cuda")
    dtype = getattr(torch, args.dtype)
    info = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                python=platform.python_version(), date=time.strftime("%Y-%m-%d"),
                command="PYTHONPATH=src python3 benchmarks/bench_scan.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    if args.warm_only:  # compile this environment's kernels (tiny shape) and exit
        bench_shape(1, args.routes, args.channels, args.states, 24, 40, dtype, dev, 1)
        return 0
    t0 = time.time()
    warm_cache(sweep_variants(args) if (args.sweep or args.warm_sweep) else [{}], args)
    if args.warm_sweep:
        print(f"kernels compiled in {time.time() - t0:.0f} s")
        return 0
    print(f"kernels compiled in {time.time() - t0:.0f} s", flush=True)
    results = []
    for shape in args.shapes.split(","):
        h, w = (int(v) for v in shape.split("x"))
        results.append(bench_shape(args.batch, args.routes, args.channels, args.states, h, w, dtype, dev, args.reps, args.profile, graph=True))
    bw = copy_bandwidth(dev)
    info["copy_GBps"] = bw
    print(f"{info['gpu']}  torch {info['torch']}  triton {info['triton']}  copy {bw:.0f} GB/s (read+write)")
    hdr = f"{'shape':>11s} {'dtype':>8s} {'pass':>4s} {'ms':>8s} {'GB min':>7s} {'GB/s':>7s} {'%copy':>6s} {'GB issue':>8s} {'GB/s':>7s} {'%copy':>6s} {'Gexp/s':>7s}"
    print(hdr)
    for r in results:
        for ps in ("fwd", "bwd"):
            ms = r[f"{ps}_ms"]
            gb_min = r["bytes_min"][ps] / 1e9
            scale = (r["h"] * r["w"] * r["batch"]) / (480 * 640)
            gb_issue = ISSUE_BYTES[ps] * scale / 1e9
            exps = r["exps"] * (2 if ps == "fwd" else 3)  # exponentials evaluated by the passes
            r[f"{ps}_GBps_min"] = gb_min / (ms * 1e-3)
            r[f"{ps}_GBps_issue"] = gb_issue / (ms * 1e-3)
            print(f"{r['h']:>5d}x{r['w']:<5d} {r['dtype']:>8s} {ps:>4s} {ms:8.3f} {gb_min:7.3f} {gb_min / ms * 1e3:7.0f} {100 * gb_min / ms * 1e3 / bw:5.1f}% "
                  f"{gb_issue:8.3f} {gb_issue / ms * 1e3:7.0f} {100 * gb_issue / ms * 1e3 / bw:5.1f}% {exps / ms / 1e6:7.0f}")
        print(f"      forward as one CUDA graph {r['fwd_graph_ms']:.3f} ms; host time to enqueue one eager forward {r['fwd_enqueue_ms']:.3f} ms")
        if "kernels_ms" in r:
            for kname, kms in r["kernels_ms"].items():
                print(f"      {kname:40s} {kms:8.3f} ms")
    if args.lowrank:
        info["lowrank"] = []
        for shape in args.shapes.split(","):
            h, w = (int(v) for v in shape.split("x"))
            r = bench_lowrank(args.batch, args.routes, args.channels, args.states, h, w, args.lowrank, dtype, dev, args.reps)
            info["lowrank"].append(r)
            print(f"rank-{r['rank']} step inputs {h}x{w}: forward (graph) expanded {r['expanded_fwd_graph_ms']:.3f} ms, "
                  f"fused {r['fused_fwd_graph_ms']:.3f} ms; forward+backward {r['expanded_fwd_bwd_ms']:.3f} / "
                  f"{r['fused_fwd_bwd_ms']:.3f} ms; outputs max |diff| {r['max_abs_diff']:.2e} (bitwise {r['bitwise_equal']})", flush=True)
    if args.torch_ref:
        r0 = results[0]
        info["torch_ref_fwd_ms"] = torch_reference_ms(args.batch, args.routes, args.channels, args.states, r0["h"], r0["w"], dtype, dev)
        print(f"plain PyTorch path (backend='torch'), forward {r0['h']}x{r0['w']}: {info['torch_ref_fwd_ms']:.1f} ms")
    sweep = run_sweep(args, dev, dtype) if args.sweep else []
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "bench_scan.json"), "w") as f:
            json.dump(dict(info=info, results=results, sweep=sweep), f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
