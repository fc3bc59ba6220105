"""``diffmf`` entry point: dispatches to one module per sub-command.

Each sub-command module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` and
``run(args: argparse.Namespace) -> int``. Modules are imported lazily so that ``diffmf --help``
and light commands stay fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Optional, Sequence, Tuple

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


# Commands after which the console entry point ends the process without the interpreter's
# teardown: by then every output is written and closed (fuse_pairs joins its I/O threads) and
# the logs are flushed; what is skipped is unloading torch and the CUDA context, ~0.5 s of a
# ~10 s `diffmf fuse` on an H100 machine (benchmarks/bench_startup.py, 2026-11-22).
FAST_EXIT_COMMANDS = frozenset({"fuse"})


def _run(argv: Sequence[str]) -> Tuple[int, Optional[str]]:
    """(exit code, command) of one CLI invocation."""
    argv = list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2, None
    return int(args.func(args) or 0), args.command


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI and return its exit code (the process goes on: tests call this)."""
    return _run(sys.argv[1:] if argv is None else argv)[0]


def entry() -> None:
    """Console-script / ``python -m diffmf`` entry point: run the CLI, then exit the process;
    after the commands of :data:`FAST_EXIT_COMMANDS`, with ``os._exit`` once the logs and
    standard streams are flushed."""
    code, command = _run(sys.argv[1:])
    if command in FAST_EXIT_COMMANDS:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
