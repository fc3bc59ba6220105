"""Run logging on rank 0: a log file, scalars as JSON lines (always) and in TensorBoard (when the
optional ``tensorboard`` package is installed: ``pip install "diffmf[tensorboard]"``), and image
grids (ir | vi | fused) as PNG files and TensorBoard images."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from diffmf.data.io import write_image

logger = logging.getLogger(__name__)


def add_log_file(path: Path) -> logging.Handler:
    """Send the ``diffmf`` loggers' records to ``path`` as well (returns the handler to remove)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("diffmf")
    root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


def image_grid(ir: torch.Tensor, vi: torch.Tensor, fused: torch.Tensor, max_rows: int = 4) -> np.ndarray:
    """``(B, 1, H, W)`` tensors in [0, 1] -> ``(rows*H, 3*W)`` float array: one ``ir | vi | fused`` row per sample."""
    rows = []
    for i in range(min(max_rows, ir.shape[0])):
        rows.append(torch.cat([ir[i, 0], vi[i, 0], fused[i, 0]], dim=1))
    return torch.cat(rows, dim=0).detach().float().clamp(0, 1).cpu().numpy()


class Tracker:
    """Scalars to ``<out>/scalars.jsonl`` (+ TensorBoard), images to ``<out>/samples/``."""

    def __init__(self, out_dir: Path, use_tensorboard: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.jsonl = self.out_dir / "scalars.jsonl"
        self.writer = None
        if use_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except (ImportError, ModuleNotFoundError):
                logger.info("tensorboard is not installed: scalars go to %s only "
                            "(pip install \"diffmf[tensorboard]\" for TensorBoard)", self.jsonl)
            else:
                self.writer = SummaryWriter(log_dir=str(self.out_dir / "tb"))
                logger.info("TensorBoard logs: %s", self.out_dir / "tb")

    def scalars(self, step: int, values: Dict[str, float], prefix: str = "train") -> None:
        rec = {"step": int(step), **{f"{prefix}/{k}": float(v) for k, v in values.items()}}
        with open(self.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", float(v), step)

    def image(self, step: int, grid: np.ndarray, tag: str = "train/ir_vi_fused") -> None:
        write_image(self.out_dir / "samples" / f"{tag.replace('/', '_')}_{step:08d}.png", grid)
        if self.writer is not None:
            self.writer.add_image(tag, grid, step, dataformats="HW")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
