"""Helper of benchmarks/gpu_ablation.sh (the paper's Table II at a reduced, equal budget).

    python3 benchmarks/ablation_table.py overrides --config diffmf_paper_roadscene --steps 180 [--preset diffmf_tiny]
        prints the schedule overrides scaled to STEPS (one `key=value` per line): one cosine
        cycle over STEPS, the config's first (its warm-up scaled by STEPS / the first cycle's
        length; warm restarts dropped), and with --preset the model fields of that preset
        (CPU smoke tests).

    python3 benchmarks/ablation_table.py report --root runs/ablation --steps 180 --out-md T.md --out-json R.json
        reads each run folder (final_state.json, scalars.jsonl, config.yaml), the runs.tsv and
        fuse.tsv written by the shell script, the per-image CSVs of `diffmf eval`
        (<root>/eval_<SET>.csv) and <root>/meta.tsv, and writes the Table II markdown and a
        JSON with everything.

    python3 benchmarks/ablation_table.py pixels DIR
        total pixels of the images in DIR (whether another test set still fits in the time left).

No torch import unless --preset is given (the report runs in a fraction of a second).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional

import yaml

REPO = Path(__file__).resolve().parents[1]
METRICS = ["EN", "SD", "SF", "MI", "VIF", "AG"]  # Table II columns, all "higher is better"
# Table II rows, in the paper's order: variant -> row label
ROWS = [
    ("wo_feature_extraction", "w/o feature extract"),
    ("wo_channel_exchange", "w/o channel-exchange"),
    ("wo_spatial_exchange", "w/o spatial-exchange"),
    ("wo_difference_guidance", "w/o difference guidance"),
    ("full", "DIFF-MF"),
]
LABELS = dict(ROWS)


# ------------------------------------------------------------------------------ overrides
def _config_path(name: str) -> Path:
    p = Path(name)
    if p.is_file():
        return p
    return REPO / "src" / "diffmf" / "configs" / f"{p.stem if p.suffix in ('.yaml', '.yml') else p.name}.yaml"


def _yaml_value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def cmd_overrides(args: argparse.Namespace) -> int:
    cfg = yaml.safe_load(_config_path(args.config).read_text()) or {}
    optim, train = cfg.get("optim") or {}, cfg.get("train") or {}
    warm, total = int(optim.get("warmup_steps", 0) or 0), int(train.get("steps", 40000) or 40000)
    restarts = optim.get("restarts") or []
    if restarts:  # one cosine cycle: the config's first, scaled to STEPS
        total = int(restarts[0])
    if args.warmup is not None:
        wu = args.warmup
    elif warm > 0:
        wu = max(1, round(args.steps * warm / total))
    else:
        wu = 0
    out = [f"train.steps={args.steps}", f"optim.warmup_steps={wu}"]
    if restarts:
        out.append("optim.restarts=[]")
    if args.preset:
        sys.path.insert(0, str(REPO / "src"))
        from dataclasses import asdict

        from diffmf.model.config import PRESETS

        if args.preset not in PRESETS:
            print(f"unknown preset {args.preset}; one of {sorted(PRESETS)}", file=sys.stderr)
            return 2
        out += [f"model.{k}={_yaml_value(v)}" for k, v in asdict(PRESETS[args.preset]).items() if k != "variant"]
    print("\n".join(out))
    return 0


# ------------------------------------------------------------------------------ report
def _read_tsv(path: Path) -> List[Dict[str, str]]:
    if not path.is_file():
        return []
    lines = [ln.rstrip("\n").split("\t") for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        return []
    head = lines[0]
    return [dict(zip(head, row)) for row in lines[1:]]


def _num(x: Optional[str]):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return int(v) if v.is_integer() and "." not in str(x) else v


def run_stats(run_dir: Path) -> Dict[str, object]:
    """Steps done, interruption, loss and throughput of one run folder."""
    st: Dict[str, object] = {"dir": str(run_dir)}
    fs = run_dir / "final_state.json"
    if fs.is_file():
        state = json.loads(fs.read_text())
        st["steps_done"] = int(state.get("step", 0))
        st["interrupted"] = bool(state.get("stopped", False))
    cfg_file = run_dir / "config.yaml"
    batch = None
    if cfg_file.is_file():
        cfg = yaml.safe_load(cfg_file.read_text()) or {}
        batch = int((cfg.get("data") or {}).get("batch_size", 0)) or None
        st["config"] = {k: cfg.get(k) for k in ("model", "data", "optim", "ema", "train", "seed")}
    recs = []
    sj = run_dir / "scalars.jsonl"
    if sj.is_file():
        for ln in sj.read_text().splitlines():
            try:
                r = json.loads(ln)
            except json.JSONDecodeError:
                continue
            if "train/loss" in r:
                recs.append(r)
    if recs:
        last = recs[-1]
        st["last_logged_step"] = int(last["step"])
        st["final_loss"] = last["train/loss"]
        st["final_loss_terms"] = {k.split("/", 1)[1]: last[k] for k in ("train/ssim", "train/text", "train/int") if k in last}
        st["final_lr"] = last.get("train/lr")
        done = int(last["step"])
        tail = [r["train/loss"] for r in recs if r["step"] > done - max(1, done // 5)] or [last["train/loss"]]
        st["loss_tail_mean"] = sum(tail) / len(tail)  # the logged losses of the last 20 % of the steps
        st["loss_tail_points"] = len(tail)
        st["curve"] = [{"step": r["step"], "loss": r["train/loss"], "lr": r.get("train/lr"),
                        "pairs_per_s": r.get("train/pairs_per_s")} for r in recs]
        if batch:
            windows, prev = [], 0
            for r in recs:
                rate = r.get("train/pairs_per_s")
                pairs = (int(r["step"]) - prev) * batch
                prev = int(r["step"])
                if rate and rate > 0 and pairs > 0:
                    windows.append((pairs, pairs / rate))
            if windows:
                st["train_loop_s"] = sum(t for _, t in windows)
                steady = windows[1:] or windows  # the first window holds start-up (cuDNN, workers)
                st["pairs_per_s"] = sum(p for p, _ in steady) / sum(t for _, t in steady)
                st["pairs_per_s_incl_first_window"] = sum(p for p, _ in windows) / sum(t for _, t in windows)
    st["has_weights"] = (run_dir / "weights.safetensors").is_file()
    return st


def set_means(csv_path: Path) -> Dict[str, Dict[str, object]]:
    """method -> {metric: mean (NaN left out), 'n': images} from a `diffmf eval --csv` file."""
    per: Dict[str, Dict[str, List[float]]] = {}
    if not csv_path.is_file():
        return {}
    with csv_path.open() as fh:
        for row in csv.DictReader(fh):
            m = per.setdefault(row["method"], {k: [] for k in METRICS})
            for k in METRICS:
                if k in row:
                    m[k].append(float(row[k]))
    out: Dict[str, Dict[str, object]] = {}
    for method, vals in per.items():
        res: Dict[str, object] = {"n": max(len(v) for v in vals.values())}
        for k, v in vals.items():
            good = [x for x in v if not math.isnan(x)]
            res[k] = sum(good) / len(good) if good else None
        out[method] = res
    return out


def _fmt(x: Optional[float], digits: int = 4) -> str:
    """4 significant digits, as the tables of docs/results.md."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    text = f"{x:#.{digits}g}"
    return text[:-1] if text.endswith(".") else text


def _status(run: Dict[str, object], steps: int) -> str:
    if run.get("status") in ("skipped", "not run"):
        return str(run["status"])
    if not run.get("has_weights"):
        return "failed"
    done = run.get("steps_done")
    if run.get("interrupted") or (done is not None and done < steps):
        return "interrupted"
    return "ok"


def markdown(report: Dict[str, object]) -> str:
    meta = report["meta"]
    steps = int(meta["steps"])
    runs: Dict[str, Dict[str, object]] = report["runs"]
    lines = [f"# Table II ablation, equal reduced budget: {steps} steps per variant", ""]
    recipe = meta.get("recipe", "")
    lines += [f"Recipe (every variant): {recipe}", ""]
    notes: List[str] = []
    marks: Dict[str, str] = {}
    for v, label in ROWS:
        r = runs.get(v, {})
        s = _status(r, steps)
        if s != "ok":
            mark = ["\u2020", "\u2021", "\u00a7", "\u00b6", "#"][len(notes) % 5]
            marks[v] = mark
            what = {"interrupted": f"interrupted at step {r.get('steps_done')} of {steps} (per-run time limit "
                                   f"{r.get('timeout_s')} s, rc {r.get('rc')}); scored with the weights it had",
                    "failed": f"no weights (rc {r.get('rc')}); see its console.log in the logs tar",
                    "skipped": "not trained: no time left in the budget",
                    "not run": "not in this call's ORDER"}[s]
            notes.append(f"{mark} {label}: {what}.")
    for s in meta.get("sets_done", []):
        n = meta.get("set_sizes", {}).get(s)
        lines += [f"## {s}" + (f" ({n} pair{'s' if n != 1 else ''})" if n else ""), ""]
        lines += ["| Method | " + " | ".join(f"{k} \u2191" for k in METRICS) + " |",
                  "|---|" + "---|" * len(METRICS)]
        means = report["metrics"].get(s, {})
        best = {}
        for k in METRICS:
            vals = [means[v][k] for v, _ in ROWS if v in means and means[v].get(k) is not None]
            best[k] = max(vals) if vals else None
        for v, label in ROWS:
            m = means.get(v, {})
            cells = []
            for k in METRICS:
                x = m.get(k)
                c = _fmt(x)
                if x is not None and best[k] is not None and x == best[k]:
                    c = f"**{c}**"
                cells.append(c)
            n_set = meta.get("set_sizes", {}).get(s)
            short = ""
            if v not in means:
                short = " (not fused)" if runs.get(v, {}).get("has_weights") else ""
            elif n_set and m.get("n", n_set) < n_set:
                short = f" ({m['n']} of {n_set} images)"
            lines.append(f"| {label}{marks.get(v, '')}{short} | " + " | ".join(cells) + " |")
        lines.append("")
    for s, why in meta.get("sets_skipped", {}).items():
        lines += [f"{s}: not scored ({why}).", ""]
    lines += ["Bold: best per column. Scores: `diffmf eval --profile cdd --metrics paper` (MI in nats) on the "
              "outputs of `diffmf fuse` with each run's final EMA weights.", ""]
    lines += ["## Runs", "",
              "| Method | steps | train loop s | process s | pairs/s | final loss | loss, mean of last 20 % | final lr |",
              "|---|---|---|---|---|---|---|---|"]
    for v, label in ROWS:
        r = runs.get(v, {})
        lines.append("| {}{} | {} | {} | {} | {} | {} | {} | {} |".format(
            label, marks.get(v, ""), r.get("steps_done", "-"),
            _fmt(r.get("train_loop_s"), 3) if r.get("train_loop_s") else "-",
            r.get("wall_s") if r.get("wall_s") is not None else "-", _fmt(r.get("pairs_per_s"), 3) if r.get("pairs_per_s") else "-",
            _fmt(r.get("final_loss")), _fmt(r.get("loss_tail_mean")),
            f"{r['final_lr']:.2e}" if r.get("final_lr") is not None else "-"))
    lines.append("")
    lines += ["pairs/s: steady rate of the training loop (first log window left out); process s: the whole "
              "`diffmf train` process (start-up and checkpoint included). The final loss is the one logged "
              "batch at the last step, so it is noisy: compare the mean of the last 20 %.", ""]
    if notes:
        lines += notes + [""]
    t = meta.get("timeline", {})
    if t:
        lines += ["Wall time (s): " + ", ".join(f"{k} {v}" for k, v in t.items()), ""]
    return "\n".join(lines)


def read_meta(path: Path) -> Dict[str, object]:
    """``key<TAB>value`` lines written by the shell script. ``timeline.X`` -> meta["timeline"][X],
    ``set_done`` "SET N" (repeatable), ``set_skipped`` "SET<TAB>reason", anything else verbatim
    (a string); a repeated key keeps its last value."""
    meta: Dict[str, object] = {"timeline": {}, "sets_done": [], "set_sizes": {}, "sets_skipped": {}}
    if not path.is_file():
        return meta
    for ln in path.read_text().splitlines():
        if "\t" not in ln:
            continue
        key, val = ln.split("\t", 1)
        if key.startswith("timeline."):
            meta["timeline"][key[9:]] = _num(val) if _num(val) is not None else val
        elif key == "set_done":
            name, _, n = val.partition(" ")
            if name not in meta["sets_done"]:
                meta["sets_done"].append(name)
            meta["set_sizes"][name] = _num(n)
        elif key == "set_skipped":
            name, _, why = val.partition("\t")
            meta["sets_skipped"][name] = why
        else:
            meta[key] = val
    return meta


def cmd_report(args: argparse.Namespace) -> int:
    root = Path(args.root)
    meta = read_meta(root / "meta.tsv")
    meta["steps"] = args.steps
    tsv = {r["variant"]: r for r in _read_tsv(root / "runs.tsv")}
    runs: Dict[str, Dict[str, object]] = {}
    for v, label in ROWS:
        r: Dict[str, object] = {"variant": v, "label": label, "steps_target": args.steps}
        row = tsv.get(v)
        if row:
            r.update({k: _num(row.get(k)) for k in ("rc", "wall_s", "timeout_s", "started_s")})
            r["status"] = row.get("status", "")
            if (root / v).is_dir():
                r.update(run_stats(root / v))
        else:
            r["status"] = "not run"
        r["status"] = _status(r, args.steps)
        runs[v] = r
    metrics: Dict[str, Dict[str, Dict[str, object]]] = {}
    for s in meta.get("sets_done", []):
        metrics[s] = set_means(root / f"eval_{s}.csv")
    fuse_rows = [{**r, "rc": _num(r.get("rc"))} for r in _read_tsv(root / "fuse.tsv")]
    report = {"meta": meta, "runs": runs, "metrics": metrics, "fuse": fuse_rows}
    Path(args.out_json).write_text(json.dumps(report, indent=1, default=str))
    Path(args.out_md).write_text(markdown(report))
    return 0


def cmd_pixels(args: argparse.Namespace) -> int:
    """Total pixels of the images in a folder (image headers only): the fusion work of a test set."""
    from PIL import Image

    total = 0
    for p in sorted(Path(args.folder).iterdir()):
        try:
            with Image.open(p) as im:
                total += im.size[0] * im.size[1]
        except Exception:
            continue
    print(total)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("overrides", help="schedule (and preset) overrides scaled to STEPS")
    o.add_argument("--config", required=True)
    o.add_argument("--steps", type=int, required=True)
    o.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: the config's, scaled)")
    o.add_argument("--preset", default="", help="model preset whose fields override the config's model")
    o.set_defaults(func=cmd_overrides)
    r = sub.add_parser("report", help="Table II markdown + JSON from the run folders")
    r.add_argument("--root", required=True)
    r.add_argument("--steps", type=int, required=True)
    r.add_argument("--out-md", required=True)
    r.add_argument("--out-json", required=True)
    r.set_defaults(func=cmd_report)
    x = sub.add_parser("pixels", help="total pixels of the images in a folder")
    x.add_argument("folder")
    x.set_defaults(func=cmd_pixels)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
