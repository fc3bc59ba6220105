"""diffmf.ops.triton_cache: is Triton's kernel cache warm for diffmf's scan on a GPU (the
first-use notice of `diffmf fuse`)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from diffmf.cli.fuse import first_use_notice
from diffmf.ops.triton_cache import PROBE_KERNEL, scan_kernels_cached, triton_cache_dir


def entry(root: Path, key: str, meta) -> None:
    d = root / key
    d.mkdir(parents=True)
    (d / f"{PROBE_KERNEL}.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))


def test_cache_dir_follows_triton_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    monkeypatch.setenv("TRITON_HOME", str(tmp_path / "home"))
    assert triton_cache_dir() == tmp_path / "home" / ".triton" / "cache"
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "c"))
    assert triton_cache_dir() == tmp_path / "c"


def test_cached_only_for_the_same_arch_and_triton_version(tmp_path):
    assert not scan_kernels_cached(90, "3.6.0", tmp_path / "missing")
    assert not scan_kernels_cached(90, "3.6.0", tmp_path)
    entry(tmp_path, "AAA", "{not json")
    entry(tmp_path, "BBB", {"target": {"backend": "cuda", "arch": 80}, "triton_version": "3.6.0"})
    (tmp_path / "CCC").mkdir()
    (tmp_path / "CCC" / "_fwd_local_kernel.json").write_text(json.dumps({"target": {"arch": 90}}))
    assert not scan_kernels_cached(90, "3.6.0", tmp_path)  # broken entry, other arch, other kernel
    entry(tmp_path, "DDD", {"target": {"backend": "cuda", "arch": 90}, "triton_version": "3.5.0"})
    assert not scan_kernels_cached(90, "3.6.0", tmp_path)  # another Triton's binary
    assert scan_kernels_cached(90, "3.5.0", tmp_path)
    entry(tmp_path, "EEE", {"target": {"backend": "cuda", "arch": 90}})  # older Triton: no version field
    assert scan_kernels_cached(90, "3.6.0", tmp_path)
    assert scan_kernels_cached(80, "3.6.0", tmp_path)
    assert not scan_kernels_cached(100, "3.6.0", tmp_path)


def test_no_notice_off_the_gpu(caplog):
    with caplog.at_level(logging.INFO, logger="diffmf.cli.fuse"):
        first_use_notice(torch.device("cpu"))
    assert not caplog.records
