#!/usr/bin/env python3
"""Compatibility entry point for the authors' training command (KAIR-style JSON options).

    python -m torch.distributed.launch --nproc_per_node=2 --master_port=1234 \
        train_DIFFMF.py --opt options/DIFFMF/DIFFMF.json --dist True

runs the same trainer as ``torchrun --nproc_per_node=2 -m diffmf train CONFIG``. The launcher's
``--local-rank``/``--local_rank`` argument is accepted (rank information is read from the
environment the launcher sets). Without a launcher, ``--dist True`` trains in one process.
Extra ``--set key=value`` overrides apply on top of the JSON (see docs/training.md).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

try:
    import diffmf  # noqa: F401
except ImportError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--opt", required=True, help="KAIR-style JSON options file")
    p.add_argument("--dist", default="False", help="True/False (informational: ranks come from the launcher)")
    p.add_argument("--launcher", default="pytorch", help="accepted for KAIR compatibility")
    p.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int, default=None)
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("train_DIFFMF")

    if args.local_rank is not None and "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    if str(args.dist).lower() in ("true", "1", "yes") and "WORLD_SIZE" not in os.environ:
        log.warning("--dist True without a distributed launcher: training in one process")

    from diffmf.data.pairs import PairingError
    from diffmf.engine.kair import kair_to_config, read_kair_json
    from diffmf.engine.trainer import train
    from diffmf.utils.config_io import apply_overrides

    try:
        cfg = kair_to_config(read_kair_json(args.opt))
        if args.overrides:
            cfg = apply_overrides(cfg, args.overrides)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        log.error("%s", exc)
        return 2
    try:
        summary = train(cfg)
    except PairingError as exc:
        log.error("%s", exc)
        return 2
    return 130 if summary.get("stopped") else 0


if __name__ == "__main__":
    raise SystemExit(main())
