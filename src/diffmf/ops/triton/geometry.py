"""Launch-geometry helpers shared by the Triton wrappers (scan, layer norm)."""
from __future__ import annotations

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
