"""benchmarks/target_ceilings.py: the SF / AG ceilings that docs/results.md uses to argue which
of the paper's TNO numbers a loss pulling towards the sources can reach.

The ceilings must bound every image whose differences are, one by one, no larger than the
stronger source's (pixel-max and any per-pixel choice of source among them), and be reached by
nothing less sharp; an image sharpened beyond both sources must exceed them."""
from __future__ import annotations

import numpy as np
import pytest

from diffmf.metrics.basic import _ag, _sf

import benchmark_scripts  # tests/benchmark_scripts.py


@pytest.fixture(scope="module")
def ceilings():
    return benchmark_scripts.load("target_ceilings").pair_ceilings


@pytest.mark.parametrize("shape", [(31, 47), (64, 20)])
def test_ceilings_bound_source_built_images(ceilings, shape):
    rng = np.random.default_rng(sum(shape))
    ir = rng.uniform(0, 255, shape).round()
    vi = np.clip(np.cumsum(rng.normal(0, 12, shape), axis=1) + 128, 0, 255).round()  # smoother, other structure
    c = ceilings(ir, vi)
    for name, img in {"ir": ir, "vi": vi, "max": np.maximum(ir, vi), "min": np.minimum(ir, vi),
                      "mean": (ir + vi) / 2}.items():
        assert _sf(img) <= c["SF_ceiling"] + 1e-9, name
        assert _ag(img) <= c["AG_ceiling"] + 1e-9, name
    assert c["SF_max"] == pytest.approx(_sf(np.maximum(ir, vi)))
    sharpened = 1.5 * ir  # larger differences than both sources everywhere ir dominates
    assert _sf(sharpened) > ceilings(ir, np.zeros(shape))["SF_ceiling"]


def test_ceiling_of_a_pair_with_itself_is_its_own_score(ceilings):
    x = np.random.default_rng(1).uniform(0, 255, (23, 29))
    c = ceilings(x, x)
    assert c["SF_ceiling"] == pytest.approx(_sf(x)) and c["AG_ceiling"] == pytest.approx(_ag(x))
