"""Triton kernel of :func:`diffmf.ops.dwconv.dwconv_silu` (forward only).

One program computes a (BC channels x BW columns) tile of one output row: for each of the
k x k taps it loads the shifted input tile from the channels-last map (lanes along the
contiguous channels) and accumulates in float32; bias and SiLU follow, and the tile is stored
into the planar output (Triton moves it through shared memory so the stores run along the
image row). Zero padding is the load mask. Per pixel and channel: k*k multiply-adds, one
exponential; the input is read from DRAM about once (neighbouring rows hit the caches) and
the output written once, against a planar copy + convolution + SiLU pass in PyTorch.

Tile: 32 channels x 32 columns, 2 warps (H100, ``benchmarks/bench_dwconv.py``, 64 channels,
640x480, CUDA-graph replays: bf16 70.0 us and fp32 74.5 us against 85.2 / 79.0 us for 32 x 64
with 4 warps; every tile tried wrote bit-identical outputs). ``DIFFMF_DWCONV_TILE`` =
"channels,columns,warps" overrides it (benchmarks).

To match PyTorch's rounding in low precision, the convolution result is rounded to the
output dtype before the SiLU (as ``F.silu(F.conv2d(...))`` does), the SiLU computed in
float32 and rounded again.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from diffmf.ops.dispatch import triton_interpreting
from diffmf.ops.triton.geometry import env_ints, pow2


TILE_ENV = "DIFFMF_DWCONV_TILE"  # "channels,columns,warps" per program (benchmarks)


# H only bounds the masks: unspecialised (one compiled kernel less per image-height class);
# W, C and the strides stay specialised (aligned, vectorised loads and stores).
@triton.jit(do_not_specialize=["H"])
def _dwconv_silu_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    sx_b, sx_h, sx_w, sx_c,
    H, W, C,
    KS: tl.constexpr, HAS_BIAS: tl.constexpr, BC: tl.constexpr, BW: tl.constexpr,
):
    """y[b, c, h, w] = silu(bias[c] + sum_{i,j} weight[c, i, j] x[b, h+i-P, w+j-P, c])."""
    PAD: tl.constexpr = (KS - 1) // 2
    n_wblk = tl.cdiv(W, BW)
    h = tl.program_id(0) // n_wblk
    n_cblk = tl.cdiv(C, BC)
    b = tl.program_id(1) // n_cblk
    c = (tl.program_id(1) % n_cblk) * BC + tl.arange(0, BC)[:, None]
    w = (tl.program_id(0) % n_wblk) * BW + tl.arange(0, BW)[None, :]
    c_ok = c < C
    x_b = x_ptr + b.to(tl.int64) * sx_b
    acc = tl.zeros((BC, BW), tl.float32)
    for i in tl.static_range(KS):
        hh = h + (i - PAD) + w * 0  # as a (1, BW) tensor: the masks stay boolean tensors
        h_ok = (hh >= 0) & (hh < H)
        for j in tl.static_range(KS):
            ww = w + (j - PAD)
            m = c_ok & h_ok & (ww >= 0) & (ww < W)
            xv = tl.load(x_b + hh * sx_h + ww * sx_w + c * sx_c, mask=m, other=0.0)
            wv = tl.load(w_ptr + c * (KS * KS) + (i * KS + j), mask=c_ok, other=0.0)
            acc += xv.to(tl.float32) * wv.to(tl.float32)
    if HAS_BIAS:
        acc += tl.load(b_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
    acc = acc.to(y_ptr.dtype.element_ty).to(tl.float32)  # the conv output's rounding
    y = acc / (1.0 + tl.exp(-acc))
    y_p = y_ptr + (b.to(tl.int64) * C + c) * (H * W) + h * W + w
    tl.store(y_p, y.to(y_ptr.dtype.element_ty), mask=c_ok & (w < W))


def dwconv_silu_triton(x: Tensor, weight: Tensor, bias: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    """x (B, H, W, C) any strides, weight (C, 1, k, k), bias (C,) -> SiLU(dwconv) (B, C, H, W) in ``dtype``.

    Weight and bias are rounded to ``dtype`` first (as autocast does for ``F.conv2d``)."""
    B, H, W, C = x.shape
    k = weight.shape[-1]
    y = torch.empty(B, C, H, W, device=x.device, dtype=dtype)
    if y.numel() == 0:
        return y
    wt = weight.detach().to(dtype).reshape(C, k * k).contiguous()
    bt = bias.detach().to(dtype).contiguous() if bias is not None else wt
    if triton_interpreting():
        bc, bw, warps = 16, 16, 4
    else:  # defaults: see the module docstring
        bc, bw, warps = env_ints(TILE_ENV, "channels,columns,warps") or (32, 32, 2)
    bc = min(bc, pow2(C))
    bw = min(bw, pow2(W))
    grid = (triton.cdiv(W, bw) * H, B * triton.cdiv(C, bc))
    _dwconv_silu_kernel[grid](
        x, wt, bt, y, *x.stride(), H, W, C,
        KS=k, HAS_BIAS=bias is not None, BC=bc, BW=bw, num_warps=warps,
    )
    return y
