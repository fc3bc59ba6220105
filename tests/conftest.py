"""Shared test fixtures: the ../shared data folder (skips cleanly when absent).

TRITON_INTERPRET=1 is set here, before anything can import Triton: the GPU kernels' tests run
on the CPU through Triton's interpreter, which only works if Triton sees the flag at import.
It changes nothing else: the ``auto`` scan backend still picks Triton only for CUDA tensors.
"""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("DIFFMF_SHARED", REPO.parent / "shared"))


@pytest.fixture
def shared_data() -> Path:
    data = shared_dir() / "data"
    if not data.is_dir():
        pytest.skip(f"shared data folder {data} not found (set DIFFMF_SHARED to the folder holding data/)")
    return data


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors run faster on one thread (and do not fight other processes for cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
