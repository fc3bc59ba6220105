"""The learning-rate schedule: warmup, cosine, warm restarts."""
import math

import pytest

from diffmf.engine.optim import LRSchedule


def test_cosine_warms_up_then_decays_to_the_floor():
    s = LRSchedule("cosine", 100, warmup_steps=10, min_lr_ratio=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0) and s(55) == pytest.approx(0.55)
    assert s(100) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    values = [s(t) for t in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_restarts_leave_the_first_cycle_alone_and_start_lower_cycles():
    plain = LRSchedule("cosine", 80, warmup_steps=5, min_lr_ratio=0.05)
    sgdr = LRSchedule("cosine", 200, warmup_steps=5, min_lr_ratio=0.05, restarts=[80, 140], restart_lr_ratio=0.5)
    assert [sgdr(t) for t in range(80)] == [plain(t) for t in range(80)]
    for start, end in ((80, 140), (140, 200)):
        assert sgdr(start) == pytest.approx(0.5 / 5)  # warmup again, to the restart peak
        assert sgdr(start + 4) == pytest.approx(0.5)
        mid = start + 5 + (end - start - 5) / 2
        assert sgdr(int(mid)) == pytest.approx(0.05 + 0.45 * 0.5 * (1 + math.cos(math.pi * (int(mid) - start - 5)
                                                                               / (end - start - 5))))
        assert sgdr(end - 1) < 0.06
    assert sgdr(200) == pytest.approx(0.05)


@pytest.mark.parametrize("kwargs", [dict(restarts=[0]), dict(restarts=[50, 40]), dict(restarts=[100]),
                                    dict(restarts=[30, 30])])
def test_bad_restarts_are_refused(kwargs):
    with pytest.raises(ValueError, match="restarts"):
        LRSchedule("cosine", 100, **kwargs)
    with pytest.raises(ValueError, match="cosine"):
        LRSchedule("constant", 100, restarts=[50])
