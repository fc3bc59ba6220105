"""Periodic validation: fuse whole validation pairs and average the fusion metrics.

Metrics come from :func:`diffmf.metrics.evaluate` (default profile ``cdd``, as the paper's
Table I) on the images as they would be saved: uint8 infrared, visible luminance Y and fused Y.
"""
from __future__ import annotations

import logging
import math
from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn as nn

from diffmf.data.dataset import load_pair
from diffmf.data.io import to_uint8
from diffmf.data.pairs import Pair

logger = logging.getLogger(__name__)


def validate(model: nn.Module, pairs: Sequence[Pair], device: torch.device, *, metrics: Sequence[str],
             profile: str = "cdd", tile: int = 0, amp: bool = False, max_images: int = 0):
    """Mean metrics over ``pairs`` plus one example ``(ir, vi, fused)`` for image logging.

    Returns:
        ``({metric: mean}, example)``; metrics are ``{}`` when :mod:`diffmf.metrics` is missing.
    """
    from diffmf.engine.fuse import Fuser

    try:
        from diffmf.metrics import evaluate
    except ImportError as exc:
        logger.warning("validation metrics unavailable (%s); fusing only", exc)
        evaluate = None
    was_training = model.training
    fuser = Fuser(model, device, tile=tile, amp=amp)
    sums: Dict[str, List[float]] = {}
    example = None
    try:
        for pair in list(pairs)[: max_images or None]:
            ir, vi, _ = load_pair(pair)
            t = lambda a: torch.from_numpy(a)[None, None]  # noqa: E731
            fused = fuser.fuse_y(t(ir), t(vi))[0, 0].cpu().numpy()
            if example is None:
                example = (ir, vi, fused)
            if evaluate is not None:
                values = evaluate(to_uint8(ir), to_uint8(vi), to_uint8(fused), metrics=list(metrics), profile=profile)
                for k, v in values.items():
                    if math.isfinite(v):
                        sums.setdefault(k, []).append(float(v))
    finally:
        model.train(was_training)
    return {k: float(np.mean(v)) for k, v in sums.items()}, example
