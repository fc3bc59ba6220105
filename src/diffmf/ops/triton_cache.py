"""Whether Triton's on-disk kernel cache already holds diffmf's scan kernels for a GPU.

Triton compiles a kernel the first time it meets a new GPU architecture, Triton version or
size class of the arguments, and caches the binary on disk. A new machine therefore spends
its first ``diffmf fuse`` compiling (TNO25 on a 16-core H100 host: 15-17 s, 30-41 s
with ``DIFFMF_COMPILE_THREADS=0``); the CLI uses this
check to say so instead of appearing stuck. Reading the cache needs no Triton import.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

PROBE_KERNEL = "_fwd_out_kernel"  # every fused forward compiles it


def triton_cache_dir() -> Path:
    """Triton's cache folder: ``$TRITON_CACHE_DIR``, else ``$TRITON_HOME/.triton/cache``
    (``TRITON_HOME`` defaults to the home folder), as Triton itself resolves it."""
    env = os.environ.get("TRITON_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("TRITON_HOME") or Path.home()) / ".triton" / "cache"


def scan_kernels_cached(arch: int, triton_version: Optional[str] = None, cache_dir: Optional[Path] = None) -> bool:
    """True if ``cache_dir`` (default :func:`triton_cache_dir`) holds a compiled diffmf scan
    kernel for compute capability ``arch`` (10 * major + minor, e.g. 90 for an H100) and, where
    the cache entry records its Triton version, for ``triton_version``. Unreadable entries count
    as absent."""
    root = Path(cache_dir) if cache_dir is not None else triton_cache_dir()
    try:
        return any(_entry_matches(path, arch, triton_version) for path in root.glob(f"*/{PROBE_KERNEL}.json"))
    except OSError:  # the cache folder vanished or cannot be listed
        return False


def _entry_matches(path: Path, arch: int, triton_version: Optional[str]) -> bool:
    """One cache entry's metadata names ``arch`` (and ``triton_version`` where it records one)."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or (meta.get("target") or {}).get("arch") != arch:
        return False
    version = meta.get("triton_version")
    return not (triton_version and version and version != triton_version)
