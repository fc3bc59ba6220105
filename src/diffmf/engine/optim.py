"""Optimiser and learning-rate schedule (Adam, lr 2e-5 in the paper; constant by default)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from diffmf.engine.config import OptimConfig


class LRSchedule:
    """Multiplier of the base learning rate at a step: linear warmup, then ``constant``,
    ``cosine`` (down to ``min_lr_ratio``) or ``multistep`` (times ``gamma`` at each milestone).

    ``restarts`` (cosine only) start new cycles at those steps (SGDR, warm restarts): cycle i
    runs from its start to the next restart (the last one to ``total_steps``), warms up again
    over ``warmup_steps`` and decays from ``restart_lr_ratio`` (later cycles' peak, a fraction
    of the base lr) to ``min_lr_ratio``. The first cycle is unchanged by later restarts, so a
    finished cosine run extends with ``restarts=[its steps]`` and a larger ``total_steps``.
    A plain object (not a lambda) so ``LambdaLR.state_dict`` can save it."""

    def __init__(self, kind: str, total_steps: int, warmup_steps: int = 0, milestones: Sequence[int] = (),
                 gamma: float = 0.5, min_lr_ratio: float = 0.0, restarts: Sequence[int] = (),
                 restart_lr_ratio: float = 1.0) -> None:
        if kind not in ("constant", "cosine", "multistep"):
            raise ValueError(f"optim.scheduler must be constant, cosine or multistep, got {kind!r}")
        self.kind, self.total_steps, self.warmup_steps = kind, int(total_steps), int(warmup_steps)
        self.milestones, self.gamma, self.min_lr_ratio = sorted(int(m) for m in milestones), float(gamma), float(min_lr_ratio)
        self.restarts = [int(r) for r in restarts]
        self.restart_lr_ratio = float(restart_lr_ratio)
        if self.restarts and kind != "cosine":
            raise ValueError(f"optim.restarts needs optim.scheduler=cosine, got {kind!r}")
        if self.restarts and (self.restarts != sorted(set(self.restarts)) or self.restarts[0] <= 0
                              or self.restarts[-1] >= self.total_steps):
            raise ValueError(f"optim.restarts must be increasing steps in (0, train.steps={self.total_steps}), "
                             f"got {self.restarts}")

    def __call__(self, step: int) -> float:
        start, end, peak = 0, self.total_steps, 1.0
        for r in self.restarts:  # the cycle this step belongs to
            if step >= r:
                start, peak = r, self.restart_lr_ratio
            else:
                end = r
                break
        local = step - start
        if self.warmup_steps and local < self.warmup_steps:
            return peak * (local + 1) / self.warmup_steps
        if self.kind == "cosine":
            span = max(1, end - start - self.warmup_steps)
            t = min(1.0, (local - self.warmup_steps) / span)
            return self.min_lr_ratio + (peak - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.kind == "multistep":
            return self.gamma ** sum(step >= m for m in self.milestones)
        return 1.0


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, build_schedule(cfg, total_steps))


def build_schedule(cfg: OptimConfig, total_steps: int) -> LRSchedule:
    """The lr multiplier of ``cfg`` over ``total_steps`` (``train.steps``)."""
    return LRSchedule(cfg.scheduler, total_steps, cfg.warmup_steps, cfg.milestones, cfg.gamma, cfg.min_lr_ratio,
                      cfg.restarts, cfg.restart_lr_ratio)
