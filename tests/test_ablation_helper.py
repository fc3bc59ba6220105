"""benchmarks/ablation_table.py: the schedule overrides of the Table II ablation runs.

The ablation trains every variant for STEPS steps with one cosine cycle of the shipped recipe;
the overrides must give a valid config whatever the shipped config's own schedule is (it gained
warm restarts after the helper was written, and the runs then failed at start-up)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diffmf.engine.config import load_config
from diffmf.engine.optim import build_schedule

REPO = Path(__file__).resolve().parents[1]
HELPER = REPO / "benchmarks" / "ablation_table.py"


def overrides(config: str, steps: int) -> list:
    out = subprocess.run([sys.executable, str(HELPER), "overrides", "--config", config, "--steps", str(steps)],
                         check=True, capture_output=True, text=True, cwd=REPO).stdout
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("steps", [2, 220, 800])
def test_overrides_give_one_cosine_cycle_of_the_shipped_recipe(steps):
    base = load_config("diffmf_paper_roadscene")
    assert base.optim.restarts, "the shipped recipe is expected to have warm restarts (test premise)"
    first_cycle = base.optim.restarts[0]
    cfg = load_config("diffmf_paper_roadscene", overrides("diffmf_paper_roadscene", steps))
    assert cfg.train.steps == steps
    assert cfg.optim.restarts == []
    assert cfg.optim.warmup_steps == max(1, round(steps * base.optim.warmup_steps / first_cycle))
    sched = build_schedule(cfg.optim, cfg.train.steps)  # raised for the restarts before the fix
    lrs = [sched(s) for s in range(steps)]
    peak = max(range(steps), key=lambda s: lrs[s])
    assert lrs[peak] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:])), "one decay, no restart"
