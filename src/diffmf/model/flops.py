"""Parameter and FLOP accounting per module (``diffmf info``), next to the paper's Table VII.

Dense work (convolutions, linear layers, matrix products) is counted by PyTorch's
``FlopCounterMode`` (2 FLOPs per multiply-add); the selective scan by VMamba's analytic count
(:mod:`diffmf.ops.flops`: 9 B L D N + B L D per scan, D over all routes). The model is traced
on the ``meta`` device, so any size is counted instantly without memory. For the Restormer
model the paper's own attention formula, 4 B (HW)^2 D per attention, is reported as well.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from diffmf.model.config import ModelConfig
from diffmf.model.diffmf import DIFFMF
from diffmf.model.restormer import MDTA
from diffmf.ops.flops import count_scan_flops

# Table VII of the paper: (1, 1, 512, 512) input, 32 channels
PAPER_TABLE_VII = {"vss": 393.871e9, "restormer": 336852.764e9}


@dataclass
class CostReport:
    size: Tuple[int, int]
    batch: int
    params: Dict[str, int] = field(default_factory=dict)  # module -> parameters
    dense: Dict[str, int] = field(default_factory=dict)  # module -> conv/linear/matmul FLOPs
    scan: Dict[str, int] = field(default_factory=dict)  # module -> selective-scan FLOPs
    paper_attention: int = 0  # 4 B (HW)^2 D summed over attention calls (Restormer model)

    @property
    def total(self) -> int:
        return self.dense.get("", 0) + self.scan.get("", 0)


def count_costs(model: DIFFMF, size: Tuple[int, int] = (512, 512), batch: int = 1, depth: int = 2) -> CostReport:
    """Count parameters and FLOPs of ``model`` for a (batch, 1, H, W) pair, per module up to ``depth``."""
    h, w = size
    report = CostReport(size=size, batch=batch)
    for name in _report_names(model, depth):
        report.params[name] = sum(p.numel() for p in model.get_submodule(name).parameters())

    cfg: ModelConfig = model.config
    meta = DIFFMF(cfg).to("meta")  # same architecture, no memory
    meta_names = {mod: name for name, mod in meta.named_modules()}
    stack: List[str] = []
    scan: Dict[str, int] = defaultdict(int)
    attention = [0]

    def push(mod, *_):
        stack.append(meta_names[mod])

    def pop(mod, *_):
        stack.pop()

    def record(flops: int) -> None:
        for key in set(stack) | {""}:
            scan[key] += flops

    handles = []
    for mod in meta.modules():
        handles.append(mod.register_forward_pre_hook(push))
        handles.append(mod.register_forward_hook(pop))
    original_attend = MDTA.attend

    def attend(self, q, k, v, shape):
        b, hh, ww, c = shape
        attention[0] += 4 * b * (hh * ww) ** 2 * c
        return original_attend(self, q, k, v, shape)

    MDTA.attend = attend
    try:
        ir = torch.empty(batch, cfg.in_chans, h, w, device="meta")
        with count_scan_flops(record), FlopCounterMode(display=False) as counter, torch.no_grad():
            meta(ir, ir)
    finally:
        MDTA.attend = original_attend
        for hd in handles:
            hd.remove()
    wanted = set(report.params)
    for key, ops in counter.get_flop_counts().items():
        name = _strip_root(key)
        if name in wanted:
            report.dense[name] = sum(ops.values())
    report.scan = {k: scan.get(k, 0) for k in wanted}
    report.paper_attention = attention[0]
    return report


def _report_names(model: nn.Module, depth: int) -> List[str]:
    """Modules to report: the root, its children, and items of module lists, to ``depth`` levels."""
    names = [""]
    for name, mod in model.named_modules():
        if not name:
            continue
        parts = name.split(".")
        parent = model.get_submodule(".".join(parts[:-1])) if len(parts) > 1 else model
        if isinstance(mod, (nn.ModuleList, nn.Sequential)) and len(parts) > 1:
            continue
        level = sum(1 for i in range(1, len(parts)) if not isinstance(model.get_submodule(".".join(parts[:i])), (nn.ModuleList, nn.Sequential)))
        if level < depth and not isinstance(parent, nn.Sequential) or (isinstance(parent, nn.ModuleList) and level < depth):
            names.append(name)
    return names


def _prefix(name: str, depth: int) -> str:
    return name


def _strip_root(key: str):
    """FlopCounterMode keys: 'Global' for the total, 'DIFFMF.a.b' for modules."""
    if key == "Global":
        return ""
    parts = key.split(".", 1)
    return parts[1] if len(parts) == 2 else None
