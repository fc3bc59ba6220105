"""diffmf: DIFF-MF multi-modal image fusion (Sun et al., "DIFF-MF: A Difference-Driven
Channel-Spatial State Space Model for Multi-Modal Image Fusion").

Public API (imports are lazy so ``import diffmf`` stays cheap):
    diffmf.build_model(name, **overrides) -> nn.Module
    diffmf.fuse(ir, vi, ...) -> image             (see diffmf.engine.fuse)
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "build_model", "fuse"]


def __getattr__(name: str):
    if name == "build_model":
        from diffmf.model import build_model

        return build_model
    if name == "fuse":
        from diffmf.engine.fuse import fuse

        return fuse
    raise AttributeError(f"module 'diffmf' has no attribute {name!r}")
