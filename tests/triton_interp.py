"""Running Triton kernels in the CPU interpreter from the tests (not a test module).

Triton must see ``TRITON_INTERPRET=1`` when it and the kernel modules are imported, and the
kernels check it again at every launch; other test modules (and a GPU run with
``TRITON_INTERPRET=0``) must see the caller's value. :func:`interpreted` sets the flag for a
block and restores the caller's value after; :func:`import_interpreted` (re)imports kernel
modules under it.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Iterator, List

import pytest

# Interpreter tests run only when the session asks for the interpreter (tests/conftest.py sets
# TRITON_INTERPRET=1 unless the caller set it): a GPU session with TRITON_INTERPRET=0 must not
# import the kernels interpreted (other modules' models would then run them on the CPU).
INTERPRETED = importlib.util.find_spec("triton") is not None and os.environ.get("TRITON_INTERPRET") == "1"


def needs_interpreter(test_file: str) -> pytest.MarkDecorator:
    """Skip marker for tests that run Triton kernels in the interpreter."""
    return pytest.mark.skipif(
        not INTERPRETED,
        reason=f"needs Triton imported with TRITON_INTERPRET=1 (tests/conftest.py sets it; run: "
        f"TRITON_INTERPRET=1 pytest tests/{test_file})",
    )


@pytest.fixture
def interpret() -> Iterator[None]:
    """TRITON_INTERPRET=1 while a Triton test runs (the kernels check it per launch); import
    this fixture into the test module."""
    with interpreted():
        yield


@contextlib.contextmanager
def interpreted() -> Iterator[None]:
    """``TRITON_INTERPRET=1`` inside the block; the caller's value (or its absence) after."""
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = old


def import_interpreted(*names: str) -> List[ModuleType]:
    """Import triton and the modules ``names`` with the interpreter on; a module imported
    earlier without it is reloaded (its kernels were defined compiled-only)."""
    with interpreted():
        import triton  # noqa: F401  (Triton reads the flag at import)

        mods = []
        for name in names:
            mods.append(importlib.reload(sys.modules[name]) if name in sys.modules else importlib.import_module(name))
        return mods
