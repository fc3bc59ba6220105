"""Exponential moving average of model weights (KAIR's ``netE``, timm's ``ModelEmaV2``)."""
from __future__ import annotations

import copy
from typing import Dict

import torch
import torch.nn as nn


class ModelEMA:
    """``ema = decay * ema + (1 - decay) * model`` after every optimiser step; buffers are copied.

    The effective decay warms up as ``min(decay, (1 + n) / (10 + n))`` over the first updates
    so the average is not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average, for every floating-point tensor of the state dict at once
        (``_foreach`` ops: two launches per chunk of tensors instead of two per tensor, which
        matters when the training step is limited by the host issuing kernels)."""
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        ema_sd, sd = self.module.state_dict(), model.state_dict()
        dst, src = [], []
        for k, v in ema_sd.items():
            s = sd[k].detach()
            if v.dtype.is_floating_point:
                dst.append(v)
                src.append(s.to(v.dtype))
            else:
                v.copy_(s)
        if dst:
            torch._foreach_mul_(dst, d)
            torch._foreach_add_(dst, src, alpha=1.0 - d)

    def state_dict(self) -> Dict[str, object]:
        return {"module": self.module.state_dict(), "decay": self.decay, "updates": self.updates}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self.module.load_state_dict(state["module"])
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
