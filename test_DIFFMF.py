#!/usr/bin/env python3
"""Compatibility entry point for the authors' test command.

    python test_DIFFMF.py --model_path=./ckpt --iter_number=48000 --dataset=VIF --A_dir=ir --B_dir=vi

fuses ``<root_path>/<dataset>/<A_dir>`` (infrared) with ``<root_path>/<dataset>/<B_dir>`` (visible)
into ``<save_dir>`` (default ``results/DIFFMF_<dataset>``) using the weights of iteration
``iter_number`` found in ``model_path``: ``<iter>_G.safetensors`` (what ``diffmf train`` writes
to ``<out>/models/``), then ``<iter>_E.pth`` / ``<iter>_G.pth`` (KAIR). ``--model_path`` may also
be a weights file. It is the same as ``diffmf fuse --ir ... --vi ... -o ... --weights ...``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

try:
    import diffmf  # noqa: F401
except ImportError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))


def find_weights(model_path: Path, iter_number: str) -> Path:
    if model_path.is_file():
        return model_path
    names = [f"{iter_number}_G.safetensors", f"{iter_number}_E.pth", f"{iter_number}_G.pth"]
    tried = [d / n for d in (model_path, model_path / "models") for n in names]
    for p in tried:
        if p.is_file():
            return p
    raise FileNotFoundError(f"no weights for iteration {iter_number} in {model_path}; looked for "
                            + ", ".join(str(p) for p in tried))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", default="./ckpt")
    p.add_argument("--iter_number", default="48000")
    p.add_argument("--dataset", default="TNO")
    p.add_argument("--A_dir", default="ir", help="infrared folder name inside the dataset")
    p.add_argument("--B_dir", default="vi", help="visible folder name inside the dataset")
    p.add_argument("--root_path", default="dataset/test", help="folder holding the datasets")
    p.add_argument("--save_dir", default=None, help="default results/DIFFMF_<dataset>")
    p.add_argument("--device", default="auto")
    p.add_argument("--tile", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        weights = find_weights(Path(args.model_path), str(args.iter_number))
    except FileNotFoundError as exc:
        logging.getLogger("test_DIFFMF").error("%s", exc)
        return 2
    data = Path(args.root_path) / args.dataset
    out = Path(args.save_dir or f"results/DIFFMF_{args.dataset}")
    from diffmf.cli import fuse as fuse_cli

    ns = argparse.Namespace(ir=data / args.A_dir, vi=data / args.B_dir, out=out, weights=str(weights), device=args.device,
                            tile=args.tile, tile_overlap=32, gray=False, amp=False, ext=None, stretch16=False, quiet=False)
    return fuse_cli.run(ns)


if __name__ == "__main__":
    raise SystemExit(main())
