"""Triton GPU kernels for the selective scan: pure Python, compiled by Triton at first use.

``selective_scan_triton`` (1-D contract), ``selective_scan_2d_triton`` (fused cross-scan,
scan and cross-merge) and ``selective_scan_2d_lowrank_triton`` (the same with VMamba's
low-rank dt_proj applied inside the sweeps) with autograd; see :mod:`diffmf.ops.triton.scan` for the wrappers and
:mod:`diffmf.ops.triton.kernels` for the kernels and the method. Importing this package needs
Triton; :mod:`diffmf.ops.dispatch` checks that before it selects this backend.
"""
from diffmf.ops.triton.scan import selective_scan_2d_lowrank_triton, selective_scan_2d_triton, selective_scan_triton

__all__ = ["selective_scan_2d_lowrank_triton", "selective_scan_2d_triton", "selective_scan_triton"]
