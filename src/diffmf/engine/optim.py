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
    A plain object (not a lambda) so ``LambdaLR.state_dict`` can save it."""

    def __init__(self, kind: str, total_steps: int, warmup_steps: int = 0, milestones: Sequence[int] = (),
                 gamma: float = 0.5, min_lr_ratio: float = 0.0) -> None:
        if kind not in ("constant", "cosine", "multistep"):
            raise ValueError(f"optim.scheduler must be constant, cosine or multistep, got {kind!r}")
        self.kind, self.total_steps, self.warmup_steps = kind, int(total_steps), int(warmup_steps)
        self.milestones, self.gamma, self.min_lr_ratio = sorted(int(m) for m in milestones), float(gamma), float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            t = min(1.0, (step - self.warmup_steps) / span)
            return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.kind == "multistep":
            return self.gamma ** sum(step >= m for m in self.milestones)
        return 1.0


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    schedule = LRSchedule(cfg.scheduler, total_steps, cfg.warmup_steps, cfg.milestones, cfg.gamma, cfg.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
