"""``diffmf eval``: score fused images against their infrared/visible sources.

Pairs files by name (stem) across ``--ir``, ``--vi`` and one or more ``--fused`` folders (one
per method), computes the metrics of :mod:`diffmf.metrics` on every triplet, writes a per-image
CSV and prints the mean of each metric per method in the DIFF-MF paper's layout (EN SD SF MI VIF
AG first), with the better direction as an arrow. Every missing, unreadable or size-mismatched
file is reported; the others are still evaluated and the exit code is 1.
"""
from __future__ import annotations

import argparse
import csv
import logging
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``diffmf eval`` on the main parser's sub-parsers."""
    from diffmf.metrics.profiles import DEFAULT_PROFILE, PROFILE_DESCRIPTIONS

    profiles = "; ".join(f"{k}: {v}" for k, v in PROFILE_DESCRIPTIONS.items())
    parser = subparsers.add_parser(
        "eval",
        help="compute fusion metrics (EN SD SF MI VIF AG Qabf ...) of fused images",
        description=(
            "Compute image-fusion metrics of the fused images in one or more folders against the "
            "infrared and visible sources, pairing files by name (stem). Prints the mean per method "
            "and writes per-image values with --csv. Exit code 1 if some files were missing, "
            "unreadable or of a different size (the others are still evaluated)."
        ),
        epilog=f"Profiles (which reference each metric reproduces): {profiles}. See docs/metrics.md.",
    )
    parser.add_argument("--ir", required=True, type=Path, metavar="DIR", help="folder of infrared (or MRI) images")
    parser.add_argument("--vi", required=True, type=Path, metavar="DIR", help="folder of visible (or CT/PET/SPECT) images")
    parser.add_argument(
        "--fused", required=True, type=Path, nargs="+", action="extend", metavar="DIR",
        help="folder(s) of fused images, one per method (--fused A B C, or repeat --fused)",
    )
    parser.add_argument(
        "--metrics", nargs="+", default=None, metavar="NAME",
        help="metrics or groups (all, paper, reference), space or comma separated; default: all",
    )
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILE_DESCRIPTIONS),
                        help=f"reference convention to reproduce (default: {DEFAULT_PROFILE})")
    parser.add_argument("--csv", type=Path, default=None, metavar="FILE", help="write per-image values to this CSV file")
    parser.add_argument("--16bit", dest="on_16bit", choices=("error", "scale"), default="error",
                        help="16-bit images: refuse (default) or map to 8 bit by round(x / 257)")
    parser.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.add_argument("--digits", type=int, default=4, metavar="N", help="significant digits in the printed table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway when stderr is not a terminal)")
    parser.set_defaults(func=run)
    return parser


# ------------------------------------------------------------------------------------ pairing


@dataclass
class Pairing:
    """Stems found in every folder, and what went wrong for the others."""

    stems: List[str]
    files: Dict[str, Dict[str, Path]]  # role ("ir", "vi", method) -> stem -> path
    problems: List[str] = field(default_factory=list)
    failed: Dict[str, set] = field(default_factory=dict)  # method -> stems that cannot be evaluated


def list_images(folder: Path) -> Tuple[Dict[str, Path], List[str]]:
    """``{stem: path}`` of the image files in ``folder`` (not recursive), plus ambiguity problems."""
    by_stem: Dict[str, List[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            by_stem.setdefault(p.stem, []).append(p)
    problems = [f"{folder}: several files named {stem!r}: {', '.join(q.name for q in ps)}"
                for stem, ps in by_stem.items() if len(ps) > 1]
    return {s: ps[0] for s, ps in by_stem.items() if len(ps) == 1}, problems


def method_names(folders: Sequence[Path]) -> List[str]:
    """A short unique label per fused folder: its name, or more of its path when names repeat."""
    names = [f.name or str(f) for f in folders]
    if len(set(names)) != len(names):
        names = [str(f) for f in folders]
    if len(set(names)) != len(names):  # the same folder given twice
        names = [f"{n}#{i + 1}" for i, n in enumerate(names)]
    return names


def pair_files(ir: Path, vi: Path, fused: Sequence[Path]) -> Pairing:
    """Match files by stem across the source folders and each fused folder."""
    methods = method_names(fused)
    roles = [("ir", ir), ("vi", vi)] + list(zip(methods, fused))
    files: Dict[str, Dict[str, Path]] = {}
    problems: List[str] = []
    for role, folder in roles:
        found, amb = list_images(folder)
        files[role] = found
        problems.extend(amb)
    sources = set(files["ir"]) & set(files["vi"])
    for a, b in (("ir", "vi"), ("vi", "ir")):
        for stem in sorted(set(files[a]) - set(files[b])):
            problems.append(f"{files[a][stem]}: no matching {b} image in {dict(roles)[b]}")
    failed: Dict[str, set] = {}
    for m, folder in zip(methods, fused):
        have = set(files[m])
        missing = sorted(sources - have)
        extra = sorted(have - sources)
        for stem in missing:
            problems.append(f"{folder}: fused image {stem!r} is missing")
        for stem in extra:
            problems.append(f"{files[m][stem]}: no matching ir/vi pair")
        failed[m] = set(missing) | set(extra)
    return Pairing(sorted(sources), files, problems, failed)


# ------------------------------------------------------------------------------------ evaluation


@dataclass
class ImageResult:
    stem: str
    values: Dict[str, Dict[str, float]]  # method -> metric -> value
    errors: List[Tuple[str, str]]  # (method or "", message)


def _evaluate_stem(task) -> ImageResult:
    """Evaluate one stem for every method (runs in a worker process when --jobs > 1)."""
    from diffmf.metrics._common import as_gray255, load_gray
    from diffmf.metrics.api import evaluate_arrays

    stem, ir_path, vi_path, fused_paths, names, profile, on_16bit = task
    values: Dict[str, Dict[str, float]] = {}
    errors: List[Tuple[str, str]] = []
    try:
        a = as_gray255(load_gray(ir_path, on_16bit=on_16bit))
        b = as_gray255(load_gray(vi_path, on_16bit=on_16bit))
    except Exception as exc:  # unreadable source: every method fails on this stem
        return ImageResult(stem, {}, [("", f"{stem}: cannot read the sources: {exc}")])
    if a.shape != b.shape:
        return ImageResult(stem, {}, [("", f"{stem}: size mismatch: ir {ir_path} is {a.shape[1]}x{a.shape[0]}, "
                                           f"vi {vi_path} is {b.shape[1]}x{b.shape[0]} (WxH)")])
    for method, fpath in fused_paths:
        try:
            f = as_gray255(load_gray(fpath, on_16bit=on_16bit))
        except Exception as exc:
            errors.append((method, f"{fpath}: cannot read: {exc}"))
            continue
        if f.shape != a.shape:
            errors.append((method, f"{fpath}: size mismatch: fused is {f.shape[1]}x{f.shape[0]}, "
                                   f"sources are {a.shape[1]}x{a.shape[0]} (WxH); images are never resized"))
            continue
        values[method] = evaluate_arrays(a, b, f, names, profile)
    return ImageResult(stem, values, errors)


def _run_tasks(tasks: list, jobs: int, progress: bool) -> Iterator[ImageResult]:
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), unit="img", desc="eval", disable=not progress, file=sys.stderr)
    try:
        if jobs <= 1:
            for t in tasks:
                yield _evaluate_stem(t)
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                for r in pool.map(_evaluate_stem, tasks):
                    yield r
                    bar.update(1)
    finally:
        bar.close()


# ------------------------------------------------------------------------------------ output


def _arrow(direction: str) -> str:
    arrow = "\u2191" if direction == "higher" else "\u2193"
    enc = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        arrow.encode(enc)
    except (UnicodeEncodeError, LookupError):
        arrow = "^" if direction == "higher" else "v"
    return arrow


def _fmt(x: float, digits: int) -> str:
    """``digits`` significant digits, without exponent for large values."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if abs(x) >= 10**digits:
        return f"{x:.0f}"
    text = f"{x:#.{digits}g}"  # keep trailing zeros: 1.000, not 1
    return text[:-1] if text.endswith(".") else text


def mean_table(means: Dict[str, Dict[str, float]], names: Sequence[str], digits: int = 4) -> str:
    """Plain-text table: one row per method, one column per metric (header ``EN↑``); ``*`` marks
    the best method per column when there are several."""
    from diffmf.metrics.api import METRICS

    header = ["method"] + [f"{n}{_arrow(METRICS[n].direction)}" for n in names]
    rows = []
    best: Dict[str, float] = {}
    if len(means) > 1:
        for n in names:
            vals = [m[n] for m in means.values() if not math.isnan(m.get(n, math.nan))]
            if vals:
                best[n] = max(vals) if METRICS[n].direction == "higher" else min(vals)
    for method, vals in means.items():
        row = [method]
        for n in names:
            v = vals.get(n, math.nan)
            cell = _fmt(v, digits)
            if n in best and v == best[n]:
                cell += "*"
            row.append(cell)
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def _nanmean(xs: List[float]) -> Tuple[float, int]:
    good = [x for x in xs if not math.isnan(x)]
    return (sum(good) / len(good) if good else math.nan), len(xs) - len(good)


def write_csv(path: Path, rows: List[Tuple[str, str, Dict[str, float]]], names: Sequence[str], profile: str) -> None:
    """Per-image CSV: ``method, image, profile, <metrics...>`` (full precision)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "image", "profile"] + list(names))
        for method, stem, vals in rows:
            w.writerow([method, stem, profile] + [repr(float(vals[n])) for n in names])


# ------------------------------------------------------------------------------------ entry


def run(args: argparse.Namespace) -> int:
    """Run ``diffmf eval``; returns 0 when every image was evaluated, 1 when some failed, 2 on usage errors."""
    from diffmf.metrics.api import METRICS, resolve_metrics

    try:
        names = resolve_metrics(args.metrics, args.profile)
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    for label, folder in [("--ir", args.ir), ("--vi", args.vi)] + [("--fused", f) for f in args.fused]:
        if not folder.is_dir():
            logger.error("%s %s: not a folder", label, folder)
            return 2
    pairing = pair_files(args.ir, args.vi, args.fused)
    methods = method_names(args.fused)
    for msg in pairing.problems:
        logger.error("%s", msg)
    if not pairing.stems:
        logger.error("no image pairs found (files are paired by name across --ir and --vi)")
        return 2

    tasks = []
    for stem in pairing.stems:
        fused_paths = [(m, pairing.files[m][stem]) for m in methods if stem in pairing.files[m]]
        tasks.append((stem, pairing.files["ir"][stem], pairing.files["vi"][stem], fused_paths, names, args.profile, args.on_16bit))
    if args.on_16bit == "scale":
        logger.warning("16-bit images will be mapped to 8 bit by round(x / 257)")
    progress = not args.no_progress and sys.stderr.isatty()
    per_method: Dict[str, Dict[str, Dict[str, float]]] = {m: {} for m in methods}
    n_errors = len(pairing.problems)
    for res in _run_tasks(tasks, max(1, args.jobs), progress):
        for method, msg in res.errors:
            logger.error("%s", msg)
            n_errors += 1
        for method, vals in res.values.items():
            per_method[method][res.stem] = vals

    csv_rows = [(m, s, per_method[m][s]) for m in methods for s in pairing.stems if s in per_method[m]]
    if args.csv is not None:
        write_csv(args.csv, csv_rows, names, args.profile)
        logger.info("per-image values written to %s (%d rows)", args.csv, len(csv_rows))

    means: Dict[str, Dict[str, float]] = {}
    nan_notes: List[str] = []
    for m in methods:
        vals = per_method[m]
        if not vals:
            continue
        means[m] = {}
        for n in names:
            mean, n_nan = _nanmean([v[n] for v in vals.values()])
            means[m][n] = mean
            if n_nan:
                nan_notes.append(f"{m}: {n} undefined (NaN) for {n_nan} image(s), left out of the mean "
                                 "(see 'Undefined values' in docs/metrics.md)")
    if not means:
        logger.error("nothing could be evaluated")
        return 1
    counts = ", ".join(f"{m}: {len(per_method[m])}" for m in methods)
    units = {n: METRICS[n].units_in(args.profile) for n in ("MI",) if n in names}
    print(f"profile {args.profile}; mean over images ({counts}; images {len(pairing.stems)})"
          + (f"; MI in {units['MI']}" if units else ""))
    print(mean_table(means, names, args.digits))
    for note in nan_notes:
        print(f"note: {note}")
    if n_errors:
        logger.error("%d problem(s) with the input files; see the messages above", n_errors)
        return 1
    return 0
