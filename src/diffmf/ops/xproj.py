"""SS2D's per-route input projection ``x_proj`` (VMamba), eq. (5) of the paper:

    [dt_k ; B_k ; C_k] = W_k x        per pixel and route k; W_k: (R + 2N, D)

x: the planar scan input (B, D, H, W); weight (K, R + 2N, D). Outputs: the rank-R step inputs
dt (B, K, R, H, W) and the input / output projections B, C (B, K, N, H, W), in x's dtype.

Backends: ``torch`` (:func:`x_proj_reference`: one bmm, planar outputs, what the model always
ran) and ``triton`` (:mod:`diffmf.ops.triton.xproj`: one kernel that writes every route's
outputs in the layout the fused 2-D scan reads them, as
:class:`~diffmf.ops.cross_scan.FrameMaps`, so the scan makes no copies of B, C or dt;
forward only). ``auto`` picks ``triton`` for CUDA tensors at inference (no gradient) when the
scan itself runs on Triton, else ``torch``. Order of precedence: the ``backend=`` argument,
:func:`set_proj_backend`, ``DIFFMF_PROJ_BACKEND``, ``auto``; an explicit ``triton`` that cannot
run raises an error saying why.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from diffmf.ops.cross_scan import FrameMaps
from diffmf.ops.dispatch import BackendSetting, needs_grad, resolve_backend

PROJ_BACKENDS = ("auto", "torch", "triton")
ENV_VAR = "DIFFMF_PROJ_BACKEND"
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_PROJ = BackendSetting("proj", PROJ_BACKENDS, ENV_VAR)
set_proj_backend = _PROJ.set
get_proj_backend = _PROJ.get

Maps = Union[Tensor, FrameMaps]


def resolve_proj_backend(x: Tensor, weight: Tensor, requested: Optional[str] = None) -> str:
    """Concrete backend (``torch`` or ``triton``) for this call (see the module docstring)."""

    def unsupported() -> Optional[str]:
        if needs_grad(x, weight):
            return "the x_proj kernel has no backward (a gradient is needed here)"
        if x.dtype not in TRITON_DTYPES:
            return f"dtype {x.dtype} (supported: {TRITON_DTYPES})"
        return None

    name = _PROJ.resolve_call(x.device, requested, unsupported)
    if name == "triton" and (requested or _PROJ.get()) == "auto" and resolve_backend(x.device) != "triton":
        return "torch"  # frame layouts only pay when the Triton scan reads them
    return name


def x_proj_reference(x: Tensor, weight: Tensor, rank: int, d_state: int) -> Tuple[Tensor, Tensor, Tensor]:
    """One bmm with planar outputs: x (B, D, H, W), weight (K, R + 2N, D) ->
    dt (B, K, R, H, W), B, C (B, K, N, H, W), views of one (B, K, R + 2N, H, W) tensor.

    (An explicit bmm: einsum at batch > 1 and matmul with a weight that requires grad may
    multiply in the transposed layout and copy the whole output back.)"""
    b, d, h, w = x.shape
    k = weight.shape[0]
    wx = weight.to(x.dtype).reshape(1, k * (rank + 2 * d_state), d).expand(b, -1, -1)
    x_dbl = torch.bmm(wx, x.reshape(b, d, h * w)).view(b, k, rank + 2 * d_state, h, w)
    dts, Bs, Cs = torch.split(x_dbl, [rank, d_state, d_state], dim=2)
    return dts, Bs, Cs


def x_proj(x: Tensor, weight: Tensor, rank: int, d_state: int, *, backend: Optional[str] = None) -> Tuple[Maps, Maps, Maps]:
    """(dt, B, C) of every route for the scan input x (B, D, H, W); see the module docstring.

    On the ``triton`` backend the three are :class:`FrameMaps` (same values, frame layouts),
    which every 2-D scan entry point takes in place of the dense maps."""
    k, j, d = weight.shape
    if x.dim() != 4 or x.shape[1] != d or j != rank + 2 * d_state:
        raise ValueError(f"x_proj: expected x (B, {d}, H, W) and weight (K, R + 2N = {rank + 2 * d_state}, D); "
                         f"got {tuple(x.shape)} and {tuple(weight.shape)}")
    if resolve_proj_backend(x, weight, backend) == "torch":
        return x_proj_reference(x, weight, rank, d_state)
    from diffmf.ops.triton.xproj import x_proj_triton

    return x_proj_triton(x, weight, rank, d_state)
