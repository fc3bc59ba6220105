"""Importing a script of ``benchmarks/`` from the tests by its path (not a test module).

The benchmark scripts are not a package; the tests that check their helpers (ceilings, the
peer comparison's wiring) load them with :func:`load`.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a fresh module named ``name``."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
