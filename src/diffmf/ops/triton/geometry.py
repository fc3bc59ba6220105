"""Launch-geometry helpers shared by the Triton wrappers (scan, layer norm, x_proj, conv)."""
from __future__ import annotations

import os
from typing import Optional, Tuple

import torch


def pow2(x: int) -> int:
    """The smallest power of two >= x, for x >= 1 (Triton block sizes)."""
    return 1 << max(0, int(x - 1).bit_length())


def sm_count(device: torch.device, cpu: int) -> int:
    """Streaming multiprocessors of a CUDA ``device``; ``cpu`` for anything else (Triton's
    interpreter, where each wrapper picks the program count its tests want)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return cpu


def parse_ints(name: str, text: str, form: str) -> Tuple[int, ...]:
    """The comma-separated integers of ``text``, one per field of ``form`` (e.g.
    "channels,columns,warps"); ValueError naming ``name`` and the form otherwise."""
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != len(form.split(",")):
        raise ValueError(f"{name}={text!r}: expected '{form}'")
    return vals


def env_ints(name: str, form: str) -> Optional[Tuple[int, ...]]:
    """:func:`parse_ints` of the environment variable ``name``; None when unset or empty
    (the wrapper's defaults). The wrappers' schedule overrides (benchmarks)."""
    text = os.environ.get(name)
    return parse_ints(name, text, form) if text else None
