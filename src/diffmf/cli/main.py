"""``diffmf`` entry point: dispatches to one module per sub-command.

Each sub-command module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` and
``run(args: argparse.Namespace) -> int``. Modules are imported lazily so that ``diffmf --help``
and light commands stay fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

# sub-command name -> module path
COMMANDS = {
    "fuse": "diffmf.cli.fuse",
    "train": "diffmf.cli.train",
    "eval": "diffmf.cli.eval",
    "info": "diffmf.cli.info",
    "doctor": "diffmf.cli.doctor",
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    from diffmf import __version__

    parser = argparse.ArgumentParser(prog="diffmf", description="DIFF-MF multi-modal image fusion")
    parser.add_argument("--version", action="version", version=f"diffmf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Import only the requested sub-command when one is given (keeps start-up fast).
    wanted = [a for a in argv if a in COMMANDS][:1] or list(COMMANDS)
    for name in wanted:
        try:
            module = importlib.import_module(COMMANDS[name])
        except ModuleNotFoundError as exc:  # a sub-command not built yet
            if exc.name != COMMANDS[name]:
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
