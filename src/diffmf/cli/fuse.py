"""`diffmf fuse --ir PATH --vi PATH -o OUT`: fuse infrared / visible images (files or folders).

Files are paired by name (stem) when folders are given. Each output has the input's size and is
named like the visible input (`--ext` changes the format); an RGB visible image gives an RGB
result with its own colour (Cb, Cr), `--gray` writes the fused luminance only. OUT is a file
when `--ir`/`--vi` are files and OUT has an image extension, else a folder. Inputs are never
overwritten: an OUT that would write over an input is refused. Exit codes: 0 all pairs fused;
1 some pairs failed (listed at the end; the others were written); 2 nothing done (bad
arguments, missing weights, OUT would overwrite an input).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import List, Tuple

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("fuse", help="fuse infrared and visible images", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ir", required=True, type=Path, help="infrared image or folder")
    p.add_argument("--vi", required=True, type=Path, help="visible image or folder (gray or RGB)")
    p.add_argument("-o", "--out", required=True, type=Path, help="output file or folder")
    p.add_argument("--weights", default=None, help="registered weights name or a .safetensors/.pt file "
                                                    "(default: the shipped diffmf_paper.roadscene)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--tile", type=int, default=0, help="fuse in N x N tiles when an image side exceeds N (0: whole)")
    p.add_argument("--tile-overlap", type=int, default=32, help="overlap of neighbouring tiles, blended (default 32)")
    p.add_argument("--gray", action="store_true", help="write the fused luminance only (no colour restoration)")
    p.add_argument("--amp", action="store_true", help="bf16/fp16 autocast on CUDA")
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                   help="on CUDA, do not replay the network from CUDA graphs for repeated image sizes")
    p.add_argument("--ext", default=None, help="output format by extension, e.g. png (default: the visible input's)")
    p.add_argument("--stretch16", action="store_true", help="stretch 16-bit inputs to their own min..max")
    p.add_argument("--normalize", choices=("none", "minmax"), default="none",
                   help="minmax: stretch each fused luminance to its own min..max, as CDDFuse's test script "
                        "does before saving (raises SD/SF/AG; for comparing with numbers made that way). "
                        "Default none: the network's output as is")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--io-threads", type=int, default=2, help="threads that read the next pairs and write outputs "
                                                            "while a pair is fused (0: one pair after the other; default 2)")
    p.set_defaults(func=run)
    return p


def _out_name(vi: Path, ext: str | None) -> str:
    return vi.stem + ("." + ext.lstrip(".") if ext else vi.suffix)


def plan_jobs(ir: Path, vi: Path, out: Path, ext: str | None = None):
    """`(jobs, missing)`: `[(Pair, out_path)]` to fuse and `[(name, reason)]` of files without a partner."""
    from diffmf.data.io import IMAGE_EXTENSIONS
    from diffmf.data.pairs import Pair, pair_folders

    if ir.is_file() and vi.is_file():
        target = out if out.suffix.lower() in IMAGE_EXTENSIONS else out / _out_name(vi, ext)
        return [(Pair(vi.stem, ir, vi), target)], []
    if ir.is_dir() and vi.is_dir():
        pairs, lonely_ir, lonely_vi = pair_folders(ir, vi)
        missing = [(p.stem, f"{p}: no visible image with the same name in {vi}") for p in lonely_ir]
        missing += [(p.stem, f"{p}: no infrared image with the same name in {ir}") for p in lonely_vi]
        return [(p, out / _out_name(p.vi, ext)) for p in pairs], missing
    for p in (ir, vi):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
    raise ValueError(f"--ir and --vi must both be files or both be folders (got {ir} and {vi})")


def check_no_overwrite(ir: Path, vi: Path, out: Path, jobs) -> None:
    """Refuse an OUT that is an input folder/file or would write over any input file."""
    inputs = {ir.resolve(), vi.resolve()}
    if out.resolve() in inputs:
        raise ValueError(f"output {out} is an input {'folder' if out.is_dir() else 'file'}; choose another -o")
    sources = {p.resolve() for pair, _ in jobs for p in (pair.ir, pair.vi)}
    for _, target in jobs:
        if target.resolve() in sources or target.resolve() in inputs:
            raise ValueError(f"output {target} would overwrite an input image; choose another -o")


def first_use_notice(device) -> None:
    """Log that Triton is about to compile the GPU kernels when its cache has none of diffmf's
    scan kernels for this GPU and Triton version (a new machine's first fuse of TNO25 on an H100:
    15-17 s with the kernels compiled on 8 threads, 30-41 s one by one)."""
    if getattr(device, "type", None) != "cuda":
        return
    from diffmf.ops.dispatch import resolve_backend
    from diffmf.ops.triton_cache import scan_kernels_cached, triton_cache_dir

    if resolve_backend(device) != "triton":
        return
    import torch
    import triton

    major, minor = torch.cuda.get_device_capability(device)
    if not scan_kernels_cached(10 * major + minor, triton.__version__):
        from diffmf.ops.triton.precompile import describe

        logger.info("first use of diffmf's GPU kernels with this GPU and Triton %s: Triton compiles them for each new "
                    "image size class (%s; TNO25 took 15-17 s on a 16-core H100 host); later runs load them from %s",
                    triton.__version__, describe(), triton_cache_dir())


def run(args: argparse.Namespace) -> int:
    from diffmf.engine.checkpoint import WeightsMismatchError
    from diffmf.engine.fuse import Fuser, fuse_pairs
    from diffmf.weights import WeightsNotFoundError

    try:
        jobs, missing = plan_jobs(args.ir, args.vi, args.out, args.ext)
        check_no_overwrite(args.ir, args.vi, args.out, jobs)
    except (FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    if not jobs:
        logger.error("no pairs to fuse between %s and %s (files are paired by name)", args.ir, args.vi)
        for _, reason in missing:
            logger.error("  %s", reason)
        return 1 if missing else 2
    t_load = time.perf_counter()
    try:
        fuser = Fuser.from_weights(args.weights, args.device, tile=args.tile, tile_overlap=args.tile_overlap, amp=args.amp,
                                   cuda_graphs=getattr(args, "cuda_graphs", True),
                                   normalize=getattr(args, "normalize", "none"))
    except (WeightsNotFoundError, WeightsMismatchError, RuntimeError) as exc:
        logger.error("%s", exc)
        return 2
    for name, reason in missing:
        logger.error("%s", reason)
    first_use_notice(fuser.device)
    t_fuse = time.perf_counter()
    report = fuse_pairs(fuser, jobs, gray=args.gray, stretch16=args.stretch16, progress=False if args.quiet else None,
                        workers=getattr(args, "io_threads", 2))
    t_end = time.perf_counter()
    failures: List[Tuple[str, str]] = missing + report.failed
    logger.info("fused %d of %d pair(s) into %s in %.2f s (model load %.2f s on %s)", len(report.written),
                len(jobs) + len(missing), args.out, t_end - t_fuse, t_fuse - t_load, fuser.device)
    if failures:
        logger.error("%d failure(s):", len(failures))
        for name, reason in failures:
            logger.error("  %s: %s", name, reason)
        return 1
    return 0
