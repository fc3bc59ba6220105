"""Independent branches of the network run concurrently on CUDA streams at inference.

DIFF-MF has several branches that do not depend on each other: the two modality branches and
the shared branch of each difference-driven stage (Algorithm 1 lines 1-3), the two scans of
the cross-modal SSD exchange (eq. 6), the three scales of the spatial exchange and the column /
row / concat blocks inside each. Run one after the other, each kernel's last wave and every
small kernel (the scan's chain pass, the coarse scales) leaves most of the GPU idle.
:func:`run_branches` puts branch 2, 3, ... on side streams forked from the current one and joins
them back before returning, so the GPU overlaps them. Each branch runs the same kernels on the
same inputs as before: the results are bitwise the same (for the network's kernels; an op whose
float result depends on timing, such as a scan with decoupled look-back like ``cumsum``, would
not be). Forked streams are captured by CUDA graphs as parallel branches of the graph. (The
fused 2-D scan's two frames on streams of their own as well were measured and not kept:
docs/benchmarks-log.md, run 17.)

Used only where it is safe and pays: CUDA tensors and no autograd graph being recorded (the
backward of a multi-stream forward would need its own care). Elsewhere, or when switched off
(:func:`set_branch_streams`, ``DIFFMF_BRANCH_STREAMS=0``), the branches run in order on the
current stream.

The price is memory. PyTorch's caching allocator keeps a separate cache per stream (a block
freed by one stream is never handed to another), so every side stream ends up holding as much
as the largest branch it ran: a fuse with side streams reserves 3.1-4.2x the memory of one in
order (H100, eager float32: 28-29 KiB per pixel against 7.0-7.3; docs/benchmarks-log.md, run 18),
while the memory it *allocates* grows by only ~130 MiB. So side streams are used only for
branches of at most :func:`branch_max_pixels` pixels: by default as many as keep that
footprint within half of the GPU's memory (1.38 M pixels on an 80 GB H100, 0.42 M on a 24 GB
card); larger images run their branches in order and reserve what they did before.

Contract for callers: a branch's inputs must stay referenced until :func:`run_branches`
returns (closures over the caller's locals do), so that the caching allocator cannot hand their
memory to other work while a side stream still reads them.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

ENV_VAR = "DIFFMF_BRANCH_STREAMS"  # "0" / "off": branches in order on the current stream
MAX_PIXELS_ENV = "DIFFMF_BRANCH_MAX_PIXELS"  # side streams only for branches of at most this many pixels
# The caching allocator's footprint of an eager float32 fuse with side streams, per pixel (H100,
# run 18: 27.8-29.3 KiB at 640x480 and 1024x768; 7.0-7.3 KiB in order), rounded up, and the share
# of the GPU's memory it may take before the branches go back to one stream.
STREAM_BYTES_PER_PIXEL = 30 * 1024
MEMORY_FRACTION = 0.5
_auto_limit: Dict[int, int] = {}  # per device: the default limit
_setting: Optional[bool] = None  # set_branch_streams(); None: the environment, else on
_free: Dict[int, List["torch.cuda.Stream"]] = {}  # per device: side streams not in use


def set_branch_streams(enabled: Optional[bool]) -> None:
    """Process-wide switch: True / False, or None for ``$DIFFMF_BRANCH_STREAMS`` (default on)."""
    global _setting
    _setting = enabled


def branch_streams_enabled() -> bool:
    """Whether :func:`run_branches` may use side streams (the switch, then the environment)."""
    if _setting is not None:
        return _setting
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "off", "false", "no")


def _max_pixels_text() -> str:
    """``$DIFFMF_BRANCH_MAX_PIXELS`` normalised; ``""`` or ``"auto"``: the memory-based default."""
    return os.environ.get(MAX_PIXELS_ENV, "").strip().lower()


def branch_max_pixels(device: torch.device) -> Optional[int]:
    """The largest branch (pixels of its feature maps, batch included) put on side streams on
    CUDA ``device``: ``$DIFFMF_BRANCH_MAX_PIXELS`` (a count, or ``none`` for no limit), else
    (``auto``) :data:`MEMORY_FRACTION` of the device's memory over
    :data:`STREAM_BYTES_PER_PIXEL`."""
    text = _max_pixels_text()
    if text in ("", "auto"):
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index not in _auto_limit:
            total = torch.cuda.get_device_properties(index).total_memory
            _auto_limit[index] = int(total * MEMORY_FRACTION) // STREAM_BYTES_PER_PIXEL
        return _auto_limit[index]
    if text in ("none", "inf"):
        return None
    from diffmf.ops.dispatch import env_count

    return env_count(MAX_PIXELS_ENV, text, "a pixel count >= 0, 'auto' or 'none'")


def describe(device: torch.device) -> str:
    """One line for ``diffmf doctor``: how inference runs the network's branches on ``device``."""
    if device.type != "cuda":
        return f"in order ({device.type}: side streams are CUDA only)"
    if not branch_streams_enabled():
        return f"in order (switched off: ${ENV_VAR} or set_branch_streams)"
    limit = branch_max_pixels(device)
    if _max_pixels_text() in ("", "auto"):
        source = f"auto: {MEMORY_FRACTION:g} of the GPU's memory over {STREAM_BYTES_PER_PIXEL // 1024} KiB per pixel"
    else:
        source = f"${MAX_PIXELS_ENV}"
    span = "of any size" if limit is None else f"of at most {limit:,} pixels"
    return f"concurrent on side CUDA streams at inference for branches {span} ({source}), else in order"


def _acquire(device: torch.device) -> "torch.cuda.Stream":
    pool = _free.setdefault(device.index, [])
    return pool.pop() if pool else torch.cuda.Stream(device=device)


def run_branches(fns: Sequence[Callable[[], Any]], device: torch.device, pixels: Optional[int] = None) -> List[Any]:
    """``[fn() for fn in fns]``, the branches concurrently on CUDA streams when ``device`` is a
    CUDA device, no gradient is being recorded, the switch is on and ``pixels`` (the size of
    the branches' feature maps, ``B * H * W``; ``None``: unknown) is within
    :func:`branch_max_pixels` (module docstring)."""
    if len(fns) < 2 or device.type != "cuda" or torch.is_grad_enabled() or not branch_streams_enabled():
        return [fn() for fn in fns]
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if pixels is not None:
        limit = branch_max_pixels(device)
        if limit is not None and pixels > limit:
            return [fn() for fn in fns]
    main = torch.cuda.current_stream(device)
    sides = [_acquire(device) for _ in fns[1:]]
    try:
        for s in sides:
            s.wait_stream(main)  # fork: the side stream starts after everything queued so far
        outs = [fns[0]()]
        for fn, s in zip(fns[1:], sides):
            with torch.cuda.stream(s):
                outs.append(fn())
    finally:
        for s in sides:
            main.wait_stream(s)  # join: later work on the main stream waits for every branch
        _free[device.index].extend(reversed(sides))
    for out, s in zip(outs[1:], sides):
        _record(out, main)
    return outs


def _record(obj: Any, stream: "torch.cuda.Stream") -> None:
    """Mark the tensors in ``obj`` (nested tuples / lists / dicts) as used on ``stream``, so
    that their memory, allocated on a side stream, is not reused before ``stream``'s work on
    them is done."""
    if isinstance(obj, torch.Tensor):
        obj.record_stream(stream)
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            _record(o, stream)
    elif isinstance(obj, dict):
        for o in obj.values():
            _record(o, stream)
