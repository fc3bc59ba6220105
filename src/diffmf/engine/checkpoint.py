"""Training checkpoints (full state, for exact resume) and weight files (safetensors, for use).

* A *checkpoint* (``.pt``, ``torch.save``) holds everything needed to continue a run exactly:
  model, optimiser, scheduler, grad scaler, EMA, step, data position, RNG states and the full
  training config. Only load checkpoints you trust (they are pickles).
* A *weights file* (``.safetensors``) holds one state dict (the EMA weights by default) and, in
  its metadata, the :class:`~diffmf.model.config.ModelConfig` as JSON under ``diffmf.model_config``,
  so :func:`load_weights` can rebuild the exact network with no other file.

Loading is strict: a weights file whose keys or shapes do not match the network built from its
config raises :class:`WeightsMismatchError` naming the missing, unexpected and mis-shaped keys.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from diffmf.model.config import ModelConfig
from diffmf.utils.config_io import from_dict, to_dict
from diffmf.utils.io import atomic_path

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
META_CONFIG = "diffmf.model_config"


class WeightsMismatchError(RuntimeError):
    """The keys or shapes of a weights file do not match the network."""


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: PathLike, state: Dict[str, Any]) -> None:
    """``torch.save`` to a temporary file next to ``path``, then rename (never a partial file)."""
    with atomic_path(Path(path)) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=False)


# ----------------------------------------------------------------------------- weights
def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def export_weights(
    model: Union[nn.Module, Mapping[str, torch.Tensor]],
    path: PathLike,
    config: Optional[ModelConfig] = None,
    *,
    dtype: Optional[torch.dtype] = None,
    metadata: Optional[Dict[str, str]] = None,
) -> Path:
    """Write a state dict to ``path`` (safetensors) with the model config in the metadata.

    Args:
        model: a network (its ``config`` is used when ``config`` is None) or a state dict.
        dtype: cast floating-point tensors (e.g. ``torch.float16``) to shrink the file.
    """
    from safetensors.torch import save_file

    if isinstance(model, nn.Module):
        net = unwrap(model)
        config = config or getattr(net, "config", None)
        state = net.state_dict()
    else:
        state = dict(model)
    if config is None:
        raise ValueError("export_weights needs the ModelConfig (pass config=)")
    tensors = {}
    for k, v in state.items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous().clone()  # no shared storage (safetensors refuses it)
    from diffmf import __version__

    meta = {"format": "pt", META_CONFIG: json.dumps(to_dict(config)), "diffmf.version": __version__}
    meta.update(metadata or {})
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_weights(path: PathLike) -> Tuple[Dict[str, torch.Tensor], Optional[ModelConfig], Dict[str, str]]:
    """``(state_dict, model_config or None, metadata)`` of a ``.safetensors`` weights file or of a
    ``.pt``/``.pth`` file (a diffmf training checkpoint: its EMA weights if present; or a bare
    state dict, possibly under ``"params"``/``"state_dict"`` as KAIR/BasicSR save them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsMismatchError(f"{path}: not a readable safetensors file ({exc})") from None
        cfg = from_dict(ModelConfig, json.loads(meta[META_CONFIG])) if META_CONFIG in meta else None
        return state, cfg, meta
    obj = torch.load(path, map_location="cpu", weights_only=False)
    cfg = None
    if isinstance(obj, dict) and "model" in obj and "config" in obj:  # diffmf training checkpoint
        cfg = from_dict(ModelConfig, obj["config"]["model"])
        state = obj["ema"]["module"] if obj.get("ema") else obj["model"]
        return state, cfg, {"source": "checkpoint", "step": str(obj.get("step"))}
    if isinstance(obj, dict):
        for key in ("params_ema", "params", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsMismatchError(f"{path}: not a state dict or diffmf checkpoint")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}
    return state, cfg, {}


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """``load_state_dict(strict=True)`` with an error that lists what does not match."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        def lst(items):
            return ", ".join(items[:8]) + (f" ... (+{len(items) - 8})" if len(items) > 8 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {lst(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {lst(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {lst(shapes)}")
        cfg = getattr(model, "config", None)
        raise WeightsMismatchError(
            f"{source} do not match the network ({cfg if cfg is not None else type(model).__name__}): "
            + "; ".join(parts)
            + ". Were they saved by another version or for another preset/variant?"
        )
    model.load_state_dict(state, strict=True)


def load_weights(path: PathLike, *, config: Optional[ModelConfig] = None, map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    """Build the network described by a weights file and load it strictly (eval mode).

    ``config`` overrides/supplies the architecture (needed for bare ``.pth`` state dicts, which
    carry none; the paper preset is assumed then, with a warning).
    """
    from diffmf.model import build_model

    state, file_cfg, _ = read_weights(path)
    cfg = config or file_cfg
    if cfg is None:
        logger.warning("%s carries no model config; assuming the diffmf_paper preset", path)
        cfg = ModelConfig()
    model = build_model(config=cfg)
    try:
        from diffmf.model import checkpoint_filter_fn  # optional key-layout mapping of the model package
    except ImportError:
        checkpoint_filter_fn = None
    if checkpoint_filter_fn is not None and file_cfg is None:
        state = checkpoint_filter_fn(state, model)
    load_state_strict(model, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, source=str(path))
    return model.to(map_location).eval()


def config_dict(cfg: Any) -> Dict[str, Any]:
    return to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
