"""Triton kernel of :func:`diffmf.ops.xproj.x_proj`: SS2D's per-route projection, written
in the layouts the fused 2-D scan reads (forward only).

For every pixel p of the planar scan input x (B, D, H, W) and route k:

    [dt_k ; B_k ; C_k](p) = W_k x(p)          W_k: (R + 2N, D) rows of x_proj_weight[k]

One program takes a block of BP pixels of one image and all D channels (one (D, BP) tile
read along the image rows) and computes the three outputs of every route with ``tl.dot``
(float32 accumulation). float32 inputs go through the tensor cores as three TF32 products
(``tf32x3``: hi*hi + hi*lo + lo*hi, within a few float32 ulp of the exact product; Triton's
exact float32 dot on the FMA units ran 0.82 ms per 640x480 call on an H100, 3.6x PyTorch's
bmm). Each route's outputs are
stored where its sweeps will read them (:class:`diffmf.ops.cross_scan.FrameMaps`): dt as R
planes, B and C *state-contiguous* (each pixel's N states adjacent, 32 bytes in bf16); routes
0 / 2 at their transposed position ``w * H + h`` (the scan's rows frame runs on W x H maps),
routes 1 / 3 at ``h * W + w``. Per pixel the kernel reads D values and writes K (R + 2N): the
bmm of the PyTorch twin writes the same, but then the scan copies B and C into this layout
(one more read and write of each) and transposes the rows routes' dt.

Schedule (:func:`schedule`; H100, ``benchmarks/bench_xproj.py``, 640x480, CUDA-graph replays):
programs walk pixel blocks ``pid, pid + NPROG, ...`` with the weights loaded once. 16-bit
inputs: one 64-pixel block per program, 4 warps (67.1 us against 71.2 us for 128 pixels and
8 warps). float32: 2 programs per SM, 32-pixel blocks, 2 warps, the next blocks' x tiles
staged in shared memory (Triton's pipeliner, 3 stages): 144.8 us against 300.7 us with one
128-pixel block per program (255 registers, one program per SM, nothing overlapped).
"""
from __future__ import annotations

import os
from typing import Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from diffmf.ops.cross_scan import FrameMaps
from diffmf.ops.dispatch import triton_interpreting
from diffmf.ops.triton.geometry import env_ints, pow2, sm_count

INTERPRET_BLOCK_PIXELS = 16  # tests: several programs and a ragged last block on tiny maps
INTERPRET_PROGRAMS = 3  # tests: programs that walk several blocks, strided
TILE_ENV = "DIFFMF_XPROJ_TILE"  # "programs per SM (0: one per block),pixels,warps,stages" (benchmarks)
F32_ENV = "DIFFMF_XPROJ_F32"  # float32 products: "tf32x3" (default) or "ieee" (FMA units; benchmarks)


@triton.jit
def _route_pos(pix, k, H, W):
    """Memory position of pixel ``pix`` (row-major h * W + w) in route k's frame: transposed
    (w * H + h) for the rows routes (k even), as is for the columns routes (k odd)."""
    h = pix // W
    w = pix - h * W
    return tl.where(k % 2 == 0, w * H + h, pix)


@triton.jit
def _mm(w, x, F32: tl.constexpr):
    """w @ x with float32 accumulation (``input_precision=F32`` for float32 operands)."""
    if F32 is not None:
        return tl.dot(w, x, input_precision=F32)
    else:
        return tl.dot(w, x)


@triton.jit
def _xproj_kernel(
    x_ptr, w_ptr, dt_ptr, b_ptr, c_ptr,
    H, W, D, sx_b, sx_d, NPROG,
    K: tl.constexpr, R: tl.constexpr, N: tl.constexpr, DP: tl.constexpr, BP: tl.constexpr,
    MR: tl.constexpr, MN: tl.constexpr, F32: tl.constexpr, UPCAST: tl.constexpr, STAGES: tl.constexpr,
):
    """dt (B, K, R, L), B and C (B, K, L, N) from x (B, D, L) and w (K, R + 2N, D), L = H W,
    each route's pixels at :func:`_route_pos`. Program p of image b loads the weights once and
    takes the BP-pixel blocks p, p + NPROG, ... (STAGES > 1: the next blocks' x tiles are
    loaded into shared memory while the current one is multiplied and stored). MR / MN: K R
    and K N rounded up to a power of two >= 16 (tl.dot's smallest tile). F32: tl.dot's input
    precision for float32 operands ("tf32x3" or "ieee"; None for 16-bit ones). UPCAST
    (interpreter, bf16): the operands go to float32 first -- the same products and float32
    sums as the bf16 dot with float32 accumulation on a GPU, which Triton 3.6's interpreter
    gets wrong for bf16 operands."""
    L = H * W
    J: tl.constexpr = R + 2 * N
    b = tl.program_id(1).to(tl.int64)
    d = tl.arange(0, DP)
    d_ok = d < D
    # B and C: row m = k * N + n of the (MN, BP) products; dt: row q = k * R + r
    m = tl.arange(0, MN)
    k = m // N
    n = m % N
    m_ok = m < K * N
    wm = m_ok[:, None] & d_ok[None, :]
    wB = tl.load(w_ptr + (k * J + R + n)[:, None] * D + d[None, :], mask=wm, other=0.0)
    wC = tl.load(w_ptr + (k * J + R + N + n)[:, None] * D + d[None, :], mask=wm, other=0.0)
    q = tl.arange(0, MR)
    kq = q // R
    r = q % R
    q_ok = q < K * R
    wD = tl.load(w_ptr + (kq * J + r)[:, None] * D + d[None, :], mask=q_ok[:, None] & d_ok[None, :], other=0.0)
    if UPCAST:
        wB = wB.to(tl.float32)
        wC = wC.to(tl.float32)
        wD = wD.to(tl.float32)
    for blk in tl.range(tl.program_id(0), tl.cdiv(L, BP), NPROG, num_stages=STAGES):
        pix = blk * BP + tl.arange(0, BP)
        p_ok = pix < L
        x = tl.load(x_ptr + b * sx_b + d[:, None] * sx_d + pix[None, :], mask=d_ok[:, None] & p_ok[None, :], other=0.0)
        if UPCAST:
            x = x.to(tl.float32)
        om = m_ok[:, None] & p_ok[None, :]
        off = ((b * K + k[:, None]) * L + _route_pos(pix[None, :], k[:, None], H, W)) * N + n[:, None]
        tl.store(b_ptr + off, _mm(wB, x, F32).to(b_ptr.dtype.element_ty), mask=om)
        tl.store(c_ptr + off, _mm(wC, x, F32).to(c_ptr.dtype.element_ty), mask=om)
        posd = _route_pos(pix[None, :], kq[:, None], H, W)
        tl.store(dt_ptr + ((b * K + kq[:, None]) * R + r[:, None]) * L + posd, _mm(wD, x, F32).to(dt_ptr.dtype.element_ty),
                 mask=q_ok[:, None] & p_ok[None, :])


def _f32_precision(dtype: torch.dtype, interp: bool):
    """tl.dot input precision for float32 operands (None for 16-bit ones on a GPU); the
    interpreter multiplies exactly either way (and bf16 is upcast there)."""
    if interp:
        return "ieee" if dtype in (torch.float32, torch.bfloat16) else None
    if dtype != torch.float32:
        return None
    return os.environ.get(F32_ENV, "tf32x3")


def frame_views(dt: Tensor, bs: Tensor, cs: Tensor, h: int, w: int) -> Tuple[FrameMaps, FrameMaps, FrameMaps]:
    """The kernel's buffers dt (B, K, R, L), B / C (B, K, L, N) as (B, K', P, H, W) frame views:
    even routes stored W x H, odd routes H x W (see :func:`_route_pos`)."""
    b, k, r, _ = dt.shape
    n = bs.shape[-1]
    kr, kc = (k + 1) // 2, k // 2
    dts = FrameMaps(dt[:, 0::2].view(b, kr, r, w, h).transpose(3, 4), dt[:, 1::2].view(b, kc, r, h, w))

    def states(t: Tensor) -> FrameMaps:
        return FrameMaps(t[:, 0::2].view(b, kr, w, h, n).permute(0, 1, 4, 3, 2), t[:, 1::2].view(b, kc, h, w, n).permute(0, 1, 4, 2, 3))

    return dts, states(bs), states(cs)


def schedule(dtype: torch.dtype, interp: bool) -> Tuple[int, int, int, int]:
    """(programs per SM, 0 for one program per block; pixels per block; warps; pipeline stages)
    of the x_proj kernel for ``dtype`` (see the module docstring), or ``DIFFMF_XPROJ_TILE``."""
    if interp:
        return 0, INTERPRET_BLOCK_PIXELS, 1, 1
    default = (2, 32, 2, 3) if dtype == torch.float32 else (0, 64, 4, 1)
    return env_ints(TILE_ENV, "programs per SM,pixels,warps,stages") or default


def x_proj_triton(x: Tensor, weight: Tensor, rank: int, d_state: int) -> Tuple[FrameMaps, FrameMaps, FrameMaps]:
    """x (B, D, H, W) (packed planes), weight (K, R + 2N, D) -> (dt, B, C) as frame maps of
    (B, K, R, H, W) / (B, K, N, H, W), in x's dtype (the weight is rounded to it first)."""
    bsz, d, h, w = x.shape
    k, j, dw = weight.shape
    if j != rank + 2 * d_state or dw != d:
        raise ValueError(f"x_proj weight {tuple(weight.shape)} does not match D={d}, R={rank}, N={d_state}")
    if x.stride(3) != 1 or x.stride(2) != w:
        x = x.contiguous()
    L = h * w
    dev, dt_ = x.device, x.dtype
    dts = torch.empty(bsz, k, rank, L, device=dev, dtype=dt_)
    bs = torch.empty(bsz, k, L, d_state, device=dev, dtype=dt_)
    cs = torch.empty_like(bs)
    if L > 0 and bsz > 0:
        wt = weight.detach().to(dt_).contiguous()
        interp = triton_interpreting()
        per_sm, bp, warps, stages = schedule(dt_, interp)
        bp = min(bp, max(16, pow2(L)))
        nblk = triton.cdiv(L, bp)
        if interp:
            nprog = min(nblk, INTERPRET_PROGRAMS)
        else:
            nprog = min(nblk, per_sm * sm_count(x.device, cpu=4)) if per_sm else nblk
        _xproj_kernel[(nprog, bsz)](
            x, wt, dts, bs, cs, h, w, d, x.stride(0), x.stride(1), nprog,
            K=k, R=rank, N=d_state, DP=max(16, pow2(d)), BP=bp,
            MR=max(16, pow2(k * rank)), MN=max(16, pow2(k * d_state)), F32=_f32_precision(dt_, interp),
            UPCAST=interp and dt_ == torch.bfloat16, STAGES=stages, num_warps=warps,
        )
    return frame_views(dts, bs, cs, h, w)
