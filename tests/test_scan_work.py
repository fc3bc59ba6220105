"""benchmarks/scan_work.py: the network's scan calls, recorded without running a scan."""
from __future__ import annotations

import benchmark_scripts  # tests/benchmark_scripts.py


def test_scan_calls_cover_every_ss2d_and_scale_with_pixels():
    scan_calls = benchmark_scripts.load("scan_work").scan_calls
    small = scan_calls(16, 24)
    large = scan_calls(32, 48)
    assert len(small) == len(large) == 17  # the paper preset's SS2D blocks
    for (b1, kd1, n1, d1, h1, w1), (b2, kd2, n2, d2, h2, w2) in zip(small, large):
        assert (b1, kd1, n1, d1) == (b2, kd2, n2, d2)
        assert kd1 % d1 == 0 and kd1 // d1 == 4  # 4 routes per channel
        assert (h2, w2) == (2 * h1, 2 * w1)
