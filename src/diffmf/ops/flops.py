"""Analytic FLOP accounting for the selective scan (used by ``diffmf info``).

PyTorch's ``FlopCounterMode`` counts matrix products and convolutions but not the scan's
element-wise recurrence, so while :func:`count_scan_flops` is active the 2-D scan op records
VMamba's count (``flops_selective_scan_fn``: 9 * B * L * D_total * N, plus B * L * D_total
for the D skip) and returns zeros of the right shape without computing (so models can be
traced on the ``meta`` device).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional

_recorder: Optional[Callable[[int], None]] = None


def scan_flops(batch: int, length: int, channels: int, d_state: int, with_d: bool = True) -> int:
    """FLOPs of one selective scan: 9 B L D N (+ B L D with the D skip), D over all routes."""
    return 9 * batch * length * channels * d_state + (batch * length * channels if with_d else 0)


def recording() -> Optional[Callable[[int], None]]:
    return _recorder


@contextmanager
def count_scan_flops(record: Callable[[int], None]) -> Iterator[None]:
    """Within this context the scan ops call ``record(flops)`` and skip computing."""
    global _recorder
    previous, _recorder = _recorder, record
    try:
        yield
    finally:
        _recorder = previous


__all__: List[str] = ["count_scan_flops", "recording", "scan_flops"]
