"""Weights rounded once for autocast inference, instead of at every call.

Under ``torch.autocast`` every ``F.linear`` / ``F.conv2d`` rounds its float32 weight and bias
to the autocast dtype when it runs: one small cast kernel per parameter per forward (227 of
them in a 640x480 fuse of the paper preset, kept even when the forward is replayed from a CUDA
graph). :func:`precast_for_autocast` returns a copy of the network whose parameters that are
only ever used that way hold the rounded values already, so autocast finds them in its dtype
and casts nothing. The results are bitwise the same: the rounding is the same ``.to(dtype)``,
done once.

Which parameters qualify (the rest stay float32: layer norms, which autocast runs in float32,
the SSM's ``A_logs``, ``Ds``, ``dt_projs_bias``, and the gains multiplied in plain float32
arithmetic such as the channel exchange's alpha / beta):

* the weight and bias of every ``nn.Linear`` and ``nn.Conv2d`` (SS2D uses its ``in_proj`` and
  depthwise ``conv2d`` weights directly, through ``F.linear`` and :func:`diffmf.ops.dwconv.dwconv_silu`,
  which rounds them to the autocast dtype in the same way);
* SS2D's ``x_proj_weight`` and ``dt_projs_weight``, which :mod:`diffmf.model.vss` rounds to
  the scan input's dtype (the autocast dtype) before use.
"""
from __future__ import annotations

import copy
from typing import Iterator, Tuple

import torch
from torch import nn

from diffmf.model.vss import SS2D

ROUNDED_SS2D_PARAMS = ("x_proj_weight", "dt_projs_weight")


def autocast_rounded_params(model: nn.Module) -> Iterator[Tuple[str, nn.Parameter]]:
    """(qualified name, parameter) of each parameter that autocast inference only ever uses
    rounded to the autocast dtype (see the module docstring)."""
    for mname, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            names: Tuple[str, ...] = ("weight", "bias")
        elif isinstance(module, SS2D):
            names = ROUNDED_SS2D_PARAMS
        else:
            continue
        for pname in names:
            p = getattr(module, pname, None)
            if isinstance(p, nn.Parameter):
                yield (f"{mname}.{pname}" if mname else pname), p


def precast_for_autocast(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A frozen copy of ``model`` (eval mode, no gradients) for inference under
    ``torch.autocast(dtype=dtype)``, with the parameters of :func:`autocast_rounded_params`
    stored in ``dtype``; ``model`` itself is not changed. Its outputs under autocast are
    bitwise those of ``model`` under autocast."""
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"precast_for_autocast: autocast runs in bfloat16 or float16, got {dtype}")
    net = copy.deepcopy(model).eval().requires_grad_(False)
    for _, p in autocast_rounded_params(net):
        if p.dtype == torch.float32:
            p.data = p.data.to(dtype)
    return net
