"""`diffmf train CONFIG [--set key=value ...]`: train DIFF-MF from a YAML config.

CONFIG is a YAML file or the name of a shipped config (`diffmf_paper`, `diffmf_tiny`).
The same command runs on the CPU, one GPU, or K GPUs with
`torchrun --nproc_per_node=K -m diffmf train CONFIG`. Exit codes: 0 finished,
130 interrupted or train.time_limit reached (a checkpoint was written; run the same command again to resume), 2 bad config.
"""
from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train DIFF-MF from a YAML config",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="YAML file or shipped config name (diffmf_paper, diffmf_tiny)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. --set optim.lr=1e-4 train.steps=500 'data.roots=[a, b]'")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import yaml

    from diffmf.engine.config import load_config
    from diffmf.utils.config_io import to_dict

    try:
        cfg = load_config(args.config, args.overrides)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as exc:
        logger.error("%s", exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
        return 2
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    from diffmf.data.pairs import PairingError
    from diffmf.engine.trainer import train

    try:
        summary = train(cfg)
    except PairingError as exc:
        logger.error("%s", exc)
        return 2
    return 130 if summary.get("stopped") else 0
