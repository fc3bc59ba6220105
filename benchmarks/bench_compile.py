"""First use on a fresh Triton cache: kernels compiled one by one, or in parallel first.

    PYTHONPATH=src python3 benchmarks/bench_compile.py --out results/ [--folder .data/test/TNO25]
        [--size 480x640] [--threads N] [--rounds 1]

Every measurement is a new process with its own ``TRITON_CACHE_DIR``:

* ``single``: one random pair of ``--size`` through ``Fuser`` (shipped weights, fp32, CUDA):
  seconds of the first call (compilation included), of the second, and how many Triton
  kernels the real pass still compiled after :mod:`diffmf.ops.triton.precompile` ran (0 when
  the dry pass recorded every kernel under the key the launches use);
* ``folder``: ``python -m diffmf fuse`` of ``--folder`` from start to exit;
* ``train``: ``python -m diffmf train diffmf_paper`` on ``--train-root`` for 3 steps (batch 16 of
  128x128 crops, bf16, CUDA-graphed), start to exit; the training step's kernels (forward and
  backward) are compiled ahead from a dry step (``GraphedTrainStep``).

Each runs cold (empty cache) with ``DIFFMF_COMPILE_THREADS=0`` (one by one, as before) and with
the parallel default (or ``--threads``), then warm (the cache the parallel run left) both ways.
The warm run with 0 threads also counts the cache entries it adds: 0 means the parallel
compilations were filed under the keys the plain JIT computes. Outputs are compared bitwise.
Prints a table, writes ``bench_compile.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent


def _child(size: str, save: Path) -> None:
    """One random pair of ``size`` through Fuser; prints a JSON line of timings and counts.

    The first call's precompile step is split into its dry pass and its compilations (with the
    CPU seconds this process and its ptxas children spent on them); after it, a hook counts the
    kernels the real pass still compiles.
    """
    import resource

    import torch
    from triton import knobs

    from diffmf.engine.fuse import Fuser
    from diffmf.ops.triton import precompile as P

    h, w = (int(v) for v in size.split("x"))
    counts = {"real_pass_compiles": 0}
    times: Dict[str, float] = {}

    def cpu() -> float:
        return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                   for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))

    def timed(name: str, fn):
        def run(*args, **kwargs):
            t, c = time.perf_counter(), cpu()
            out = fn(*args, **kwargs)
            times.setdefault(name + "_s", time.perf_counter() - t)
            times.setdefault(name + "_cpu_s", cpu() - c)
            return out
        return run

    def counting_hook(**_: object) -> None:
        counts["real_pass_compiles"] += 1
        return None  # do not skip: the kernel compiles and runs

    kernels: List[Dict[str, object]] = []

    def listener(*, src, metadata, times, cache_hit, **_: object) -> None:  # Triton's compilation listener
        if not cache_hit:
            kernels.append({"name": getattr(src, "name", "?"), "end": time.time(),
                            "init_us": times.ir_initialization, "stages_us": dict(times.lowering_stages)})

    knobs.compilation.listener = listener
    P.record = timed("dry", P.record)
    P.compile_all = timed("compile", P.compile_all)
    orig = Fuser._precompile_shapes

    def wrapped(self: Fuser, shapes):
        out = orig(self, shapes)
        knobs.runtime.jit_cache_hook = counting_hook
        return out

    Fuser._precompile_shapes = wrapped
    t0 = time.perf_counter()
    fuser = Fuser.from_weights(device="cuda")
    g = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(2, 1, 1, h, w, generator=g)
    torch.cuda.synchronize()
    times["load_s"] = time.perf_counter() - t0
    t, c = time.perf_counter(), cpu()
    out = fuser.fuse_y(ir, vi)
    torch.cuda.synchronize()
    times["first_s"], times["first_cpu_s"] = time.perf_counter() - t, cpu() - c
    knobs.runtime.jit_cache_hook = None
    t = time.perf_counter()
    fuser.fuse_y(ir, vi)
    torch.cuda.synchronize()
    times["second_s"] = time.perf_counter() - t
    np.save(save, out.cpu().numpy())
    stages: Dict[str, float] = {}
    for k in kernels:
        for name, us in [("init", k["init_us"]), *k["stages_us"].items()]:
            stages[name] = stages.get(name, 0.0) + us / 1e6
    longest = max((k["init_us"] + sum(k["stages_us"].values())) / 1e6 for k in kernels) if kernels else 0.0
    print("RESULT " + json.dumps({**times, **counts, "compiled": len(kernels), "longest_kernel_s": longest,
                                  "stage_s": {k: round(v, 3) for k, v in stages.items()}, "kernels": kernels}), flush=True)


def _entries(cache: Path) -> int:
    return sum(1 for p in cache.iterdir() if p.is_dir()) if cache.exists() else 0


def _run(cmd: List[str], env: Dict[str, str], cache: Path, timeout: int) -> Dict[str, object]:
    before = _entries(cache)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t
    rec: Dict[str, object] = {"wall_s": round(wall, 3), "rc": proc.returncode,
                              "cache_entries_added": _entries(cache) - before}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            rec.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in json.loads(line[7:]).items()})
    rec["log"] = [line[-160:] for line in proc.stderr.splitlines() if "compiled" in line and "Triton" in line]
    if proc.returncode != 0:
        rec["stderr_tail"] = proc.stderr[-2000:]
    return rec


def _same_images(a: Path, b: Path) -> Optional[bool]:
    from PIL import Image

    files = sorted(p.name for p in a.iterdir())
    if not files or files != sorted(p.name for p in b.iterdir()):
        return None
    return all(np.array_equal(np.asarray(Image.open(a / f)), np.asarray(Image.open(b / f))) for f in files)


def _same_weights(a: Path, b: Path) -> Optional[bool]:
    """Whether two training runs ended with the same weights (``final_state.json``'s digests)."""
    try:
        da, db = (json.loads((run / "final_state.json").read_text())["params_sha256"] for run in (a, b))
    except (OSError, KeyError, ValueError):
        return None
    return da == db


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", default="480x640", help="HxW of the single pair")
    ap.add_argument("--folder", type=Path, default=None, help="a folder with ir/ and vi/ (e.g. .data/test/TNO25)")
    ap.add_argument("--threads", type=int, default=None, help="parallel compile threads (default: diffmf's default)")
    ap.add_argument("--what", default="single,folder",
                    help="which of single,folder,train to run (folder needs --folder, train --train-root)")
    ap.add_argument("--train-root", type=Path, default=None, help="a training folder with ir/ and vi/ (e.g. .data/train/LLVIP32)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--sweep", default=None, metavar="N,N,...",
                    help="instead: the single pair cold with each of these thread counts (1 = one by one)")
    ap.add_argument("--timeout", type=int, default=280)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--save", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        _child(a.child, a.save)
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_compile_"))
    base = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"), PYTHONUNBUFFERED="1")
    par = "" if a.threads is None else str(a.threads)
    rows: List[Dict[str, object]] = []
    if a.sweep:
        print(f"{'threads':>4} {'cache':4} {'first s':>8} {'dry s':>6} {'compile s':>9} {'compile cpu s':>13} {'first cpu s':>11} "
              f"{'kernels':>7} {'longest s':>9}  summed seconds per stage")
        for r in range(a.rounds):
            for n in a.sweep.split(","):
                cache = work / f"sweep_{n}_{r}"
                for label in ("cold", "warm"):  # the warm run reuses the cold run's cache
                    env = dict(base, TRITON_CACHE_DIR=str(cache), DIFFMF_COMPILE_THREADS=n)
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--out", str(a.out),
                           "--child", a.size, "--save", str(work / f"sweep_{n}_{label}_{r}.npy")]
                    rec = _run(cmd, env, cache, a.timeout)
                    rec.update(what="sweep", cache=label, threads=n, round=r)
                    rec.pop("kernels", None) if label == "warm" else None
                    rows.append(rec)
                    nan = float("nan")
                    print(f"{n:>4} {label:4} {rec.get('first_s', nan):8.2f} {rec.get('dry_s', nan):6.2f} "
                          f"{rec.get('compile_s', nan):9.2f} {rec.get('compile_cpu_s', nan):13.2f} "
                          f"{rec.get('first_cpu_s', nan):11.2f} {rec.get('compiled', -1):7d} "
                          f"{rec.get('longest_kernel_s', nan):9.2f}  {rec.get('stage_s')}", flush=True)
        (a.out / "bench_compile_sweep.json").write_text(json.dumps(
            {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:], "cpus": os.cpu_count(), "rows": rows}, indent=1))
        return 0
    for r in range(a.rounds):
        caches = {mode: work / f"cache_{mode}_{r}" for mode in ("serial", "parallel")}
        for what in [w for w in a.what.split(",") if w == "single" or (w == "folder" and a.folder)
                     or (w == "train" and a.train_root)]:
            outs = {}
            # cold serial, cold parallel, then both warm on the parallel run's cache
            for label, threads, cache in (("cold", "0", caches["serial"]), ("cold", par, caches["parallel"]),
                                          ("warm", "0", caches["parallel"]), ("warm", par, caches["parallel"])):
                env = dict(base, TRITON_CACHE_DIR=str(cache))
                if threads:
                    env["DIFFMF_COMPILE_THREADS"] = threads
                else:
                    env.pop("DIFFMF_COMPILE_THREADS", None)
                tag = f"{what}.{label}.t{threads or 'default'}.{r}"
                if what == "single":
                    out = work / f"{tag}.npy"
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--out", str(a.out),
                           "--child", a.size, "--save", str(out)]
                elif what == "folder":
                    out = work / tag
                    cmd = [sys.executable, "-m", "diffmf", "fuse", "--ir", str(a.folder / "ir"),
                           "--vi", str(a.folder / "vi"), "-o", str(out), "--device", "cuda", "--quiet"]
                else:
                    out = work / tag
                    cmd = [sys.executable, "-m", "diffmf", "train", "diffmf_paper", "--set",
                           f"data.roots=[{a.train_root}]", f"out_dir={out}", "train.steps=3", "data.batch_size=16",
                           "data.num_workers=4", "train.amp=bf16", "train.cuda_graph=on", "train.log_every=1",
                           "train.checkpoint_every=0", "train.image_every=0", "train.tensorboard=false",
                           "train.device=cuda", "train.deterministic=true", "val.every=0", "val.roots=[]"]
                rec = _run(cmd, env, cache, a.timeout)
                rec.update(what=what, cache=label, threads=threads or "default", round=r)
                outs[(label, threads)] = out
                rows.append(rec)
                print(json.dumps(rec), flush=True)
            ref, new = outs[("cold", "0")], outs[("cold", par)]
            if what == "train":
                same = _same_weights(ref, new)
            else:
                same = (bool(np.array_equal(np.load(ref), np.load(new))) if what == "single"
                        else _same_images(ref, new))
            rows.append({"what": what, "round": r, "bitwise_equal_serial_vs_parallel": same})
    print(f"\n{'what':7} {'cache':5} {'threads':8} {'wall s':>8} {'first s':>8} {'dry s':>6} {'compile s':>9} "
          f"{'2nd s':>6} {'compiles after':>14} {'new entries':>11}")
    for rec in rows:
        if "wall_s" not in rec:
            print(f"{rec['what']:7} round {rec['round']}: outputs bitwise equal (serial vs parallel): "
                  f"{rec['bitwise_equal_serial_vs_parallel']}")
            continue
        print(f"{rec['what']:7} {rec['cache']:5} {rec['threads']:8} {rec['wall_s']:8.2f} "
              f"{rec.get('first_s', float('nan')):8.2f} {rec.get('dry_s', float('nan')):6.2f} {rec.get('compile_s', float('nan')):9.2f} "
              f"{rec.get('second_s', float('nan')):6.3f} {str(rec.get('real_pass_compiles', '-')):>14} "
              f"{rec['cache_entries_added']:11d}" + ("" if rec["rc"] == 0 else f"  rc={rec['rc']}"))
        for line in rec.get("log", []):
            print(f"        {line}")
    (a.out / "bench_compile.json").write_text(json.dumps(
        {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:], "cpus": os.cpu_count(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
