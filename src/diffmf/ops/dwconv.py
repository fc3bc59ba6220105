"""Depthwise convolution + SiLU of SS2D, from a channels-last map to a planar one.

SS2D (:mod:`diffmf.model.vss`) turns the x half of its input projection, channels-last
``(B, H, W, C)``, into the planar scan input ``(B, C, H, W)``:

    x = SiLU(DWConv_kxk(x) + bias)          (zero padding (k - 1) / 2, one filter per channel)

Backends: ``torch`` (what the model always ran: a planar copy, ``F.conv2d`` with
``groups=C``, then ``F.silu``) and ``triton`` (:mod:`diffmf.ops.triton.dwconv`: one kernel
reads the channels-last map through its strides and writes the planar activation; no copy,
no separate SiLU pass; forward only). ``auto`` picks ``triton`` for CUDA tensors when Triton
can run and no gradient is needed (inference), else ``torch``. Order of precedence: the
``backend=`` argument, :func:`set_conv_backend`, ``DIFFMF_CONV_BACKEND``, ``auto``. Asking for
``triton`` where it cannot run (no CUDA, or a gradient is needed) raises an error saying why.

:func:`dwconv_silu_reference` is the readable twin (the tests' oracle).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from diffmf.ops.dispatch import BackendSetting, needs_grad
from diffmf.ops.layernorm import autocast_dtype

CONV_BACKENDS = ("auto", "torch", "triton")
ENV_VAR = "DIFFMF_CONV_BACKEND"
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_CONV = BackendSetting("conv", CONV_BACKENDS, ENV_VAR)
# process-wide choice: set_conv_backend(name or None = env/auto), get_conv_backend() (may be "auto")
set_conv_backend = _CONV.set
get_conv_backend = _CONV.get


def resolve_conv_backend(x: Tensor, weight: Tensor, bias: Optional[Tensor], requested: Optional[str] = None) -> str:
    """Concrete backend (``torch`` or ``triton``) for this call (see the module docstring)."""
    def unsupported() -> Optional[str]:
        if needs_grad(x, weight, bias):
            return "the depthwise conv kernel has no backward (a gradient is needed here)"
        if x.dtype not in TRITON_DTYPES:
            return f"dtype {x.dtype} (supported: {TRITON_DTYPES})"
        return None

    return _CONV.resolve_call(x.device, requested, unsupported)


def dwconv_silu_reference(x: Tensor, weight: Tensor, bias: Optional[Tensor], padding: int, *, inplace: bool = False) -> Tensor:
    """What the model always ran: x (B, H, W, C) -> SiLU(conv2d(x planar, groups=C)) (B, C, H, W).

    PyTorch's dtype rules apply (under autocast the conv runs in the autocast dtype)."""
    y = F.conv2d(x.permute(0, 3, 1, 2).contiguous(), weight, bias, padding=padding, groups=x.shape[-1])
    return F.silu(y, inplace=inplace)


def dwconv_silu(
    x: Tensor, weight: Tensor, bias: Optional[Tensor], padding: int, *, inplace: bool = False, backend: Optional[str] = None
) -> Tensor:
    """Depthwise k x k convolution + SiLU: channels-last x (B, H, W, C) -> planar (B, C, H, W).

    weight (C, 1, k, k) with k odd and ``padding = (k - 1) // 2`` (same-size output), bias (C,)
    or None. Output dtype: the autocast dtype when autocast is on for x's device, else x's.
    ``inplace`` lets the ``torch`` backend apply SiLU in place (no-grad only)."""
    C, k = x.shape[-1], weight.shape[-1]
    if weight.shape != (C, 1, k, weight.shape[-2]) or weight.shape[-2] != k or k % 2 == 0 or padding != (k - 1) // 2:
        raise ValueError(f"expected a depthwise ({C}, 1, k, k) weight with odd k and padding (k-1)//2, "
                         f"got {tuple(weight.shape)} and padding {padding}")
    if resolve_conv_backend(x, weight, bias, backend) == "torch":
        return dwconv_silu_reference(x, weight, bias, padding, inplace=inplace)
    from diffmf.ops.triton.dwconv import dwconv_silu_triton

    dtype = autocast_dtype(x.device.type) or x.dtype
    return dwconv_silu_triton(x, weight, bias, dtype)
