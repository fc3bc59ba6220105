"""LayerNorm over the channel dim (the last dim) of channels-last maps, with an optional gate.

For x (..., C) (rows r = all leading dims), statistics in float32:

    mean_r = (1/C) sum_c x_rc,   var_r = (1/C) sum_c (x_rc - mean_r)^2   (biased, as nn.LayerNorm)
    out    = ((x - mean_r) / sqrt(var_r + eps)) * weight + bias                  plain
    out    = (((x - mean_r) / sqrt(var_r + eps)) * weight + bias) * silu(z)      gated (SS2D.output)

Backends: ``torch`` (PyTorch's ``F.layer_norm`` exactly as the model always called it) and
``triton`` (:mod:`diffmf.ops.triton.layernorm`: reads the input through its strides, so a
planar (B, C, H, W) map seen as ``permute(0, 2, 3, 1)`` needs no copy; the gate is fused; the
output comes out in the requested dtype; forward and backward kernels). ``auto`` picks
``triton`` for CUDA tensors when Triton is importable, else ``torch``; the CPU therefore keeps
the exact previous behaviour. Order of precedence: the ``backend=`` argument, then
:func:`set_norm_backend`, then ``DIFFMF_NORM_BACKEND``, then ``auto``. Asking for ``triton``
where it cannot run raises an error saying why.

:func:`layer_norm_reference` is the readable PyTorch twin of the Triton kernels (the tests'
oracle, gradients by autograd). :class:`FastLayerNorm` is a drop-in ``nn.LayerNorm`` (same
parameters and state_dict keys) that dispatches per call.
"""
from __future__ import annotations

import logging
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffmf.ops.cross_scan import RouteSums
from diffmf.ops.dispatch import BackendSetting, needs_grad

logger = logging.getLogger(__name__)

NORM_BACKENDS = ("auto", "torch", "triton")
ENV_VAR = "DIFFMF_NORM_BACKEND"
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_NORM = BackendSetting("norm", NORM_BACKENDS, ENV_VAR)


# ------------------------------------------------------------------------------------------
# backend selection
# ------------------------------------------------------------------------------------------
def set_norm_backend(name: Optional[str]) -> None:
    """Set the process-wide LayerNorm backend (``None`` restores env/auto)."""
    _NORM.set(name)


def get_norm_backend() -> str:
    """The configured LayerNorm backend name (may be ``auto``)."""
    return _NORM.get()


def resolve_norm_backend(device: torch.device, requested: Optional[str] = None) -> str:
    """Concrete backend (``torch`` or ``triton``) for tensors on ``device``."""
    return _NORM.resolve(device, requested)


def available_norm_backends(device: torch.device) -> List[str]:
    return _NORM.available(device)


def _triton_unsupported(x: Tensor, normalized_shape: tuple) -> Optional[str]:
    """Why the Triton kernels cannot take this call (None when they can)."""
    from diffmf.ops.triton.layernorm import MAX_CHANNELS

    if len(normalized_shape) != 1:
        return f"normalized_shape {tuple(normalized_shape)} is not one dim"
    if x.dtype not in TRITON_DTYPES:
        return f"dtype {x.dtype} (supported: {TRITON_DTYPES})"
    if x.shape[-1] > MAX_CHANNELS:
        return f"{x.shape[-1]} channels > {MAX_CHANNELS}"
    return None


# ------------------------------------------------------------------------------------------
# dtype rule
# ------------------------------------------------------------------------------------------
def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The autocast dtype active for ``device_type`` ('cuda', 'cpu'), or None when off."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        enabled = torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()
    if not enabled:
        return None
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # torch < 2.4
        return torch.get_autocast_gpu_dtype() if device_type == "cuda" else torch.get_autocast_cpu_dtype()


def default_out_dtype(x: Tensor, gate: Optional[Tensor] = None) -> torch.dtype:
    """Output dtype when none is asked for: the gate's dtype for the gated form, else the
    autocast dtype when autocast is on for x's device, else x's dtype."""
    if gate is not None:
        return gate.dtype
    return autocast_dtype(x.device.type) or x.dtype


# ------------------------------------------------------------------------------------------
# the PyTorch twin (oracle) and the public op
# ------------------------------------------------------------------------------------------
def layer_norm_reference(
    x: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    eps: float = 1e-5,
    gate: Optional[Tensor] = None,
    out_dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """Readable twin of the Triton kernels: x (..., C) -> (..., C) in ``out_dtype``.

    Computes in float32 (float64 for float64 inputs, the tests' exact oracle):
    ``n = (x - mean) * rsqrt(var + eps) * weight + bias``, ``out = n [* z sigmoid(z)]``.
    """
    out_dtype = out_dtype or default_out_dtype(x, gate)
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(ct)
    mean = xf.mean(-1, keepdim=True)
    xc = xf - mean
    var = (xc * xc).mean(-1, keepdim=True)
    n = xc * torch.rsqrt(var + eps)
    if weight is not None:
        n = n * weight.to(ct)
    if bias is not None:
        n = n + bias.to(ct)
    if gate is not None:
        z = gate.to(ct)
        n = n * (z * torch.sigmoid(z))
    return n.to(out_dtype)


def _torch_path(
    x: Tensor, normalized_shape: tuple, weight: Optional[Tensor], bias: Optional[Tensor], eps: float,
    gate: Optional[Tensor], out_dtype: Optional[torch.dtype],
) -> Tensor:
    """What the model always ran: ``F.layer_norm`` (input cast to ``out_dtype`` or to the
    gate's dtype first, PyTorch's autocast rules after), then ``* silu(gate)``."""
    target = out_dtype or (gate.dtype if gate is not None else None)
    y = F.layer_norm(x if target is None else x.to(target), normalized_shape, weight, bias, eps)
    if gate is None:
        return y
    return y.mul_(F.silu(gate)) if not torch.is_grad_enabled() else y * F.silu(gate)


def layer_norm(
    x: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    eps: float = 1e-5,
    *,
    gate: Optional[Tensor] = None,
    out_dtype: Optional[torch.dtype] = None,
    backend: Optional[str] = None,
    normalized_shape: Optional[tuple] = None,
) -> Tensor:
    """LayerNorm over the last dim of x (..., C), optionally gated: ``LN(x) * silu(gate)``.

    x: any strides (a permuted planar map is read in place by the Triton backend), float32,
    bfloat16 or float16. gate: (..., C) like x (channels-last). weight, bias: (C,) or None.
    Output (..., C): contiguous on the Triton backend, in ``out_dtype`` (default
    :func:`default_out_dtype`); the ``torch`` backend keeps PyTorch's own dtype rules (the
    input is cast to ``out_dtype``, else to the gate's dtype, before ``F.layer_norm``).
    """
    shape = tuple(normalized_shape) if normalized_shape is not None else (x.shape[-1],)
    if gate is not None and gate.shape != x.shape:
        raise ValueError(f"gate shape {tuple(gate.shape)} != input shape {tuple(x.shape)}")
    if tuple(x.shape[x.dim() - len(shape):]) != shape:
        raise ValueError(f"normalized_shape {shape} does not match the input's trailing dims {tuple(x.shape)}")
    name = _NORM.resolve_call(x.device, backend, lambda: _triton_unsupported(x, shape))
    if name == "torch":
        return _torch_path(x, shape, weight, bias, eps, gate, out_dtype)
    from diffmf.ops.triton.layernorm import layer_norm_triton

    return layer_norm_triton(x, weight, bias, float(eps), gate, out_dtype or default_out_dtype(x, gate))


def merged_layer_norm(
    sums: RouteSums,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    eps: float = 1e-5,
    *,
    gate: Optional[Tensor] = None,
    out_dtype: Optional[torch.dtype] = None,
    backend: Optional[str] = None,
) -> Tensor:
    """:func:`layer_norm` of the fused 2-D scan's merged output, channels last:
    ``LN(y.permute(0, 2, 3, 1)) [* silu(gate)]`` with y = ``sums.merge()`` (B, C, H, W).

    The Triton backend (inference) sums the route slots as it reads them (one pass; y is
    never written); the torch backend merges first and runs :func:`layer_norm`. Output
    (B, H, W, C) in ``out_dtype`` (default: the gate's dtype, else the autocast dtype, else
    float32)."""
    b, c, h, w = sums.shape
    if gate is not None and tuple(gate.shape) != (b, h, w, c):
        raise ValueError(f"gate shape {tuple(gate.shape)} != merged output shape {(b, h, w, c)} (channels last)")
    probe = torch.empty(0, c, device=sums.rows.device, dtype=torch.float32)
    grad = needs_grad(weight, bias, gate, *sums)
    name = _NORM.resolve_call(
        probe.device, backend,
        lambda: "the merged form has no backward (a gradient is needed here)" if grad else _triton_unsupported(probe, (c,)),
    )
    if name == "torch":
        return layer_norm(sums.merge().permute(0, 2, 3, 1), weight, bias, eps, gate=gate, out_dtype=out_dtype, backend="torch")
    from diffmf.ops.triton.layernorm import merged_layer_norm_fwd

    return merged_layer_norm_fwd(sums, weight, bias, float(eps), gate, out_dtype or default_out_dtype(probe, gate))


class FastLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dim that runs the Triton kernels on CUDA tensors.

    Same constructor, parameters (``weight``, ``bias``) and state_dict as ``nn.LayerNorm``.
    ``forward(x)`` on the ``torch`` backend is exactly ``nn.LayerNorm.forward``. On the Triton
    backend x (..., C) may be a strided view (e.g. a planar map permuted to channels-last) and
    the output (contiguous) is in the autocast dtype when autocast is on, else x's dtype.
    ``forward(x, gate)`` returns ``LN(x) * silu(gate)`` in the gate's dtype.
    """

    def forward_sums(self, sums: RouteSums, gate: Optional[Tensor] = None, out_dtype: Optional[torch.dtype] = None) -> Tensor:
        """The norm of a fused 2-D scan's merged output taken from its route slots
        (:func:`merged_layer_norm`): (B, H, W, C), as ``forward(sums.merge().permute(0, 2, 3, 1), gate)``."""
        return merged_layer_norm(sums, self.weight, self.bias, self.eps, gate=gate, out_dtype=out_dtype)

    def forward(self, x: Tensor, gate: Optional[Tensor] = None, out_dtype: Optional[torch.dtype] = None) -> Tensor:  # type: ignore[override]
        if gate is None and out_dtype is None and resolve_norm_backend(x.device) == "torch":
            return super().forward(x)
        return layer_norm(
            x, self.weight, self.bias, self.eps, gate=gate, out_dtype=out_dtype, normalized_shape=tuple(self.normalized_shape)
        )
