"""Selective-scan ops: one contract, several backends.

Contract (VMamba ``selective_scan_fn`` semantics), see :mod:`diffmf.ops.selective_scan`:

    u, delta : (B, G*D, L)      A : (G*D, N), A = -exp(A_log)
    B, C     : (B, G, N, L)     shared by the D channels of each group
    D        : (G*D,)           delta_bias : (G*D,)
    delta <- softplus(delta + delta_bias)
    h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t ;  y_t = C_t . h_t + D u_t   (float32 out)

Backends: ``ref`` (exact step-by-step loop, the test oracle), ``torch`` (fast chunked CPU/GPU
path in plain PyTorch), ``triton`` (GPU kernels, :mod:`diffmf.ops.triton`). ``auto`` picks
``triton`` for CUDA tensors when Triton is importable, else ``torch``. Override with
:func:`set_backend` or the environment variable ``DIFFMF_SCAN_BACKEND``.
"""
from diffmf.ops.cross_scan import ROUTES, cross_merge, cross_scan
from diffmf.ops.dispatch import available_backends, get_backend, resolve_backend, set_backend
from diffmf.ops.selective_scan import selective_scan, selective_scan_2d

__all__ = [
    "ROUTES",
    "available_backends",
    "cross_merge",
    "cross_scan",
    "get_backend",
    "resolve_backend",
    "selective_scan",
    "selective_scan_2d",
    "set_backend",
]
