#!/usr/bin/env python3
"""GPU training benchmark: a few hundred steps on 1 GPU and on K GPUs (torchrun), then fuse a folder.

Reports training throughput (pairs/s, ms/step after a warm-up), peak GPU memory per process,
the loss curve, the time to fuse a test folder (including model load) and the fused images'
default-profile metrics. Everything goes to ``--out``: ``results.json``, one log per phase,
each run's ``train.log``/``scalars.jsonl``/``weights.safetensors``, and the fused images.

Run from the repository root, with or without the package installed::

    PYTHONPATH=src python3 benchmarks/gpu_train.py --out "$OUT/gpu_train"
    # data defaults: .data/train/RoadScene171 .data/train/MSRS8 (train), .data/test/TNO25 (fuse)
    PYTHONPATH=src python3 benchmarks/gpu_train.py --phases single --steps 200 --batch 16 --out out/b

CPU smoke test (what the test-suite machine can do)::

    PYTHONPATH=src python3 benchmarks/gpu_train.py --synthetic --preset diffmf_tiny --device cpu \
        --steps 4 --warmup 1 --batch 4 --crop 32 --out out/smoke

Phases: ``single`` (1 process), ``ddp`` (``torchrun --nproc_per_node=--nproc``; skipped with a
warning when fewer GPUs are visible), ``fuse`` (with the weights of the single run, else the ddp
run). Each training run stops after ``--max-minutes`` (default 2.5) even if ``--steps`` are not
done, so the three phases fit in about 8 minutes; run them in separate calls with ``--phases``
when needed (outputs of earlier phases in the same ``--out`` are reused by ``fuse``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

log = logging.getLogger("gpu_train")


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def run_logged(cmd, log_path: Path, timeout: float) -> int:
    """Run ``cmd`` (output to ``log_path``), killing its whole process group after ``timeout`` s."""
    import signal

    log.info("$ %s", " ".join(map(str, cmd)))
    with open(log_path, "w", encoding="utf-8") as f:
        proc = subprocess.Popen(list(map(str, cmd)), stdout=f, stderr=subprocess.STDOUT, text=True, env=child_env(),
                                cwd=REPO, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # the trainer checkpoints and exits on SIGTERM
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            f.write(f"\nkilled after {timeout} s\n")
    tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
    sys.stdout.write("\n".join(tail) + "\n")
    return rc


# ----------------------------------------------------------------------------- worker
def worker(args: argparse.Namespace) -> int:
    """One training run (one process, or one rank under torchrun); rank 0 writes ``<run>/bench.json``."""
    import torch

    from diffmf.engine import distributed as D
    from diffmf.engine.config import load_config
    from diffmf.engine.trainer import Trainer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_dir = Path(args.run_dir)
    sets = [
        f"data.roots=[{', '.join(args.data)}]", f"out_dir={run_dir}", f"data.batch_size={args.batch}",
        f"data.crop_size={args.crop}", f"data.num_workers={args.workers}", f"train.steps={args.steps}",
        f"train.checkpoint_every={args.steps}", "train.keep_checkpoints=1", "train.log_every=10",
        f"train.image_every={args.steps}", f"train.amp={args.amp}", f"train.device={args.device}", "train.resume=none",
        f"optim.lr={args.lr}", "val.every=0",
    ] + list(args.set or [])
    cfg = load_config(args.preset, sets)
    marks = {}
    budget = args.max_minutes * 60.0
    start = time.perf_counter()

    prof_from, prof_to = (int(v) for v in args.profile_steps.split(",")) if args.profile_steps else (0, 0)
    prof = None

    def on_step(trainer, step):
        nonlocal prof
        cuda = trainer.device.type == "cuda"
        if prof_to and step == prof_from:  # torch.profiler over steps prof_from + 1 .. prof_to
            from torch.profiler import ProfilerActivity, profile

            if cuda:
                torch.cuda.synchronize(trainer.device)
            prof = profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []))
            prof.__enter__()
        elif prof is not None and step == prof_to:
            if cuda:
                torch.cuda.synchronize(trainer.device)
            prof.__exit__(None, None, None)
            avg = prof.key_averages()
            n = prof_to - prof_from
            name = "profile.txt" if trainer.info.rank == 0 else f"profile_rank{trainer.info.rank}.txt"
            (run_dir / name).write_text(
                f"# {n} trainer steps ({prof_from + 1}..{prof_to}), rank {trainer.info.rank}\n"
                + avg.table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=70)
                + "\n(by own host time)\n" + avg.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=70))
            prof = None
        if step == args.warmup or step == args.steps:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize(trainer.device)
            marks[step] = time.perf_counter()
        if step == args.warmup and trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)
        if time.perf_counter() - start > budget:
            trainer.request_stop()

    trainer = Trainer(cfg, on_step=on_step)
    summary = trainer.fit()
    dev = trainer.device
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    end_step = summary["step"]
    marks.setdefault(end_step, time.perf_counter())
    timed = end_step - args.warmup
    secs = marks[end_step] - marks[args.warmup] if args.warmup in marks and timed > 0 else float("nan")
    mem = {
        "max_allocated_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None,
        "max_reserved_gib": torch.cuda.max_memory_reserved(dev) / 2**30 if dev.type == "cuda" else None,
    }
    mems = D.all_gather_objects(mem)
    if trainer.info.is_main:
        from diffmf.ops.dispatch import resolve_backend

        res = {
            "world_size": trainer.info.world_size,
            "preset": args.preset,
            "steps_done": end_step,
            "warmup_steps": args.warmup,
            "timed_steps": timed,
            "global_batch": args.batch,
            "crop": args.crop,
            "amp": str(trainer.amp_dtype),
            "seconds_timed": secs,
            "ms_per_step": 1000.0 * secs / timed if timed > 0 else None,
            "pairs_per_s": args.batch * timed / secs if timed > 0 and secs == secs else None,
            "memory_per_rank": mems,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
            "scan_backend": resolve_backend(dev),
            "ranks_in_sync": summary["ranks_in_sync"],
            "stopped_by_time_budget": summary["stopped"],
            "loss_curve": [(h["step"], h["loss"]) for h in trainer.history],
            "torch": torch.__version__,
        }
        (run_dir / "bench.json").write_text(json.dumps(res, indent=1))
        log.info("%s", json.dumps({k: v for k, v in res.items() if k != "loss_curve"}))
    D.cleanup()
    return 0


# ----------------------------------------------------------------------------- phases
def fuse_phase(args, weights: Path, out: Path) -> dict:
    """Fuse the test folder with ``diffmf fuse`` (timed as a user sees it) and evaluate the results."""
    test = Path(args.test)
    fused_dir = out / f"fused_{test.name}"
    cmd = [sys.executable, "-m", "diffmf", "fuse", "--ir", test / "ir", "--vi", test / "vi", "-o", fused_dir,
           "--weights", weights, "--device", "cuda" if args.device in ("auto", "cuda") and _cuda() else args.device,
           "--quiet"]
    t0 = time.perf_counter()
    rc = run_logged(cmd, out / "fuse.log", args.timeout)
    secs = time.perf_counter() - t0
    res = {"folder": str(test), "returncode": rc, "seconds_including_load": secs,
           "images": len(list(fused_dir.glob("*"))) if fused_dir.is_dir() else 0}
    try:
        import numpy as np

        from diffmf.data.pairs import pair_folders
        from diffmf.metrics import evaluate, load_gray

        pairs, _, _ = pair_folders(test / "ir", test / "vi")
        rows = []
        for p in pairs:
            f = fused_dir / p.vi.name
            if f.is_file():
                rows.append(evaluate(load_gray(p.ir), load_gray(p.vi), load_gray(f), metrics=["EN", "SD", "SF", "MI", "VIF", "AG"]))
        if rows:
            res["metrics_mean_cdd"] = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
    except Exception as exc:  # noqa: BLE001 - metrics are a bonus here
        res["metrics_error"] = repr(exc)
    return res


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="results folder (e.g. $OUT/gpu_train)")
    p.add_argument("--data", nargs="+", default=[".data/train/RoadScene171", ".data/train/MSRS8"],
                   help="training roots with ir/ and vi/ (relative to the repo root)")
    p.add_argument("--test", default=".data/test/TNO25", help="folder with ir/ and vi/ to fuse")
    p.add_argument("--synthetic", action="store_true", help="train and fuse synthetic pairs instead (smoke test)")
    p.add_argument("--phases", nargs="+", default=["single", "ddp", "fuse"], choices=["single", "ddp", "fuse"])
    p.add_argument("--preset", default="diffmf_paper", help="shipped config name or YAML")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20, help="steps excluded from the timing")
    p.add_argument("--batch", type=int, default=16, help="global batch (split over processes)")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--workers", type=int, default=6, help="data-loader workers per process")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--amp", default="auto", help="auto | bf16 | fp16 | none")
    p.add_argument("--device", default="auto")
    p.add_argument("--nproc", type=int, default=2, help="processes for the ddp phase")
    p.add_argument("--max-minutes", type=float, default=2.5,
                   help="stop a training run after this long (it still writes its results)")
    p.add_argument("--timeout", type=float, default=330.0, help="kill a phase after this many seconds")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="extra config overrides")
    p.add_argument("--profile-steps", default="", metavar="A,B",
                   help="torch.profiler over trainer steps A+1..B; tables in <run>/profile.txt (rank 0; "
                        "profile_rank<r>.txt for the others; the timing rows include the profiler)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.synthetic:
        from diffmf.data.synthetic import make_synthetic_pairs

        args.data = [str(make_synthetic_pairs(out / "synthetic" / "train", 24, (160, 192)))]
        args.test = str(make_synthetic_pairs(out / "synthetic" / "test", 4, (131, 157), seed=1))
    args.data = [str((REPO / d).resolve()) if not Path(d).is_absolute() else d for d in args.data]
    args.test = str((REPO / args.test).resolve()) if not Path(args.test).is_absolute() else args.test
    for d in args.data + ([args.test] if "fuse" in args.phases else []):
        if not Path(d).is_dir():
            log.error("data folder %s not found (copy the shared data to .data/ or pass --data/--test)", d)
            return 2
    common = ["--preset", args.preset, "--steps", args.steps, "--warmup", args.warmup, "--batch", args.batch,
              "--crop", args.crop, "--workers", args.workers, "--lr", args.lr, "--amp", args.amp, "--device", args.device,
              "--max-minutes", args.max_minutes, "--data", *args.data]
    if args.profile_steps:
        common += ["--profile-steps", args.profile_steps]
    if args.set:
        common += ["--set", *args.set]
    me = Path(__file__).resolve()
    results = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node()}
    try:
        import torch

        results["torch"] = torch.__version__
        results["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    rc_all = 0
    if "single" in args.phases:
        run = out / "single"
        rc = run_logged([sys.executable, me, "--worker", "--out", out, "--run-dir", run, *common], out / "single.log", args.timeout)
        results["single"] = json.loads((run / "bench.json").read_text()) if (run / "bench.json").is_file() else {"returncode": rc}
        rc_all |= rc
    if "ddp" in args.phases and args.device in ("auto", "cuda") and _cuda():
        import torch

        if torch.cuda.device_count() < args.nproc:
            log.warning("ddp phase skipped: %d GPU(s) visible, --nproc %d", torch.cuda.device_count(), args.nproc)
            results[f"ddp{args.nproc}"] = {"skipped": f"{torch.cuda.device_count()} GPU(s) visible"}
            args.phases = [ph for ph in args.phases if ph != "ddp"]
    if "ddp" in args.phases:
        run = out / f"ddp{args.nproc}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}", me,
               "--worker", "--out", out, "--run-dir", run, *common]
        rc = run_logged(cmd, out / f"ddp{args.nproc}.log", args.timeout)
        results[f"ddp{args.nproc}"] = json.loads((run / "bench.json").read_text()) if (run / "bench.json").is_file() else {"returncode": rc}
        rc_all |= rc
    if "fuse" in args.phases:
        weights = next((w for w in (out / "single" / "weights.safetensors", out / f"ddp{args.nproc}" / "weights.safetensors")
                        if w.is_file()), None)
        if weights is None:
            log.error("no trained weights to fuse with (run the single or ddp phase first)")
            rc_all |= 2
        else:
            results["fuse"] = fuse_phase(args, weights, out)
            rc_all |= results["fuse"]["returncode"]
    (out / "results.json").write_text(json.dumps(results, indent=1))
    for key in ("single", f"ddp{args.nproc}"):
        r = results.get(key, {})
        if "pairs_per_s" in r:
            # A CUDA-graphed step keeps its tensors in the graph's private pool: reserved, not
            # "allocated" outside the capture; the reserved peak is the comparable number.
            m = r["memory_per_rank"][0]
            log.info("%-6s %d proc: %s pairs/s, %s ms/step, peak memory %s GiB allocated / %s GiB reserved (rank 0)",
                     key, r["world_size"], _fmt(r["pairs_per_s"]), _fmt(r["ms_per_step"]), _fmt(m["max_allocated_gib"]),
                     _fmt(m["max_reserved_gib"]))
    if "fuse" in results:
        log.info("fuse %s: %d images in %.1f s (with load); metrics %s", results["fuse"]["folder"], results["fuse"]["images"],
                 results["fuse"]["seconds_including_load"], results["fuse"].get("metrics_mean_cdd"))
    log.info("results: %s", out / "results.json")
    return rc_all


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


if __name__ == "__main__":
    raise SystemExit(main())
