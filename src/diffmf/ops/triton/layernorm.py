"""Triton LayerNorm over the channel dim, for strided (channels-last or planar) inputs.

For every row r of ``x`` (all dims but the last) and its C channels, in float32:

    mean_r = (1/C) sum_c x_rc,   var_r = (1/C) sum_c (x_rc - mean_r)^2,   rstd_r = 1/sqrt(var_r + eps)
    xhat   = (x - mean_r) rstd_r,   n = xhat * w + b,   out = n                 (plain)
                                                        out = n * silu(z)       (gated)

and the backward (g = dn * w; c1 = (1/C) sum_c g xhat; c2 = (1/C) sum_c g):

    dn = dout                     (plain)   dn = dout silu(z),  dz = dout n silu'(z)   (gated)
    dx = rstd (g - c2 - xhat c1),   dw = sum_r dn xhat,   db = sum_r dn

with silu'(z) = s (1 + z (1 - s)), s = sigmoid(z).

Rows are addressed in two levels, ``offset = o * s_outer + i * s_inner + c * s_c`` for the row
(o, i) of an ``n_outer x n_inner`` grid (:func:`rows_view`), so a planar ``(B, C, H, W)`` map
seen through ``permute(0, 2, 3, 1)`` (s_inner = 1, s_c = H*W) is read in place, as is a
channels-last one (s_c = 1). A constexpr ``*_LAYOUT`` tells the compiler which axis is unit
stride (1: channels, 2: rows, 0: neither) so it can coalesce and vectorise along it. The output
is written channels-last (contiguous); the input gradient in the layout of the input.

SS2D's output norm at inference also has a form that reads the fused 2-D scan's route
outputs before their cross-merge (:class:`~diffmf.ops.cross_scan.RouteSums`) and sums them
as it loads them (``_merge_ln_fwd_kernel``): the merged map is never written or read again.

One program normalises a tile of BLOCK_R rows x BLOCK_C = next_pow2(C) channels. The backward
runs a fixed number of programs that loop over the row tiles, each keeping its dw and db sums
in registers and writing one partial row per program; the partials are summed afterwards
(deterministic: no atomics).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from diffmf.ops.cross_scan import RouteSums
from diffmf.ops.dispatch import needs_grad, triton_interpreting
from diffmf.ops.triton.geometry import pow2 as _pow2
from diffmf.ops.triton.geometry import env_ints, sm_count

logger = logging.getLogger(__name__)

MAX_CHANNELS = 4096  # one tile row holds every channel of a row in registers
FWD_TILE = 4096  # elements per forward program (BLOCK_R * BLOCK_C) on a GPU
FWD_WARPS = 8
BWD_TILE = 2048  # elements per backward program tile
BWD_WARPS = 8
MAX_BLOCK_ROWS = 128
BWD_PROGRAMS_PER_SM = 8
TILES_ENV = "DIFFMF_LN_TILES"  # "fwd_tile,fwd_warps,bwd_tile,bwd_warps[,bwd_programs_per_sm]" (benchmarks)
# Interpreter only (tests): small tiles so several programs, ragged row tiles and a backward
# program looping over several tiles are exercised on tiny inputs.
INTERPRET_BLOCK_ROWS = 4
INTERPRET_BWD_PROGRAMS = 3

LAYOUT_GENERIC, LAYOUT_CHANNELS, LAYOUT_ROWS = 0, 1, 2


# ------------------------------------------------------------------------------------------
# kernels
# ------------------------------------------------------------------------------------------
@triton.jit
def _tile_offsets(r, c, s_inner, s_c, LAYOUT: tl.constexpr):
    """(BLOCK_R, BLOCK_C) element offsets of rows r and channels c inside one outer slice."""
    if LAYOUT == 1:  # channels unit stride
        off = r[:, None] * s_inner + c[None, :]
    elif LAYOUT == 2:  # rows unit stride (planar map seen channels-last)
        off = r[:, None] + c[None, :] * s_c
    else:
        off = r[:, None] * s_inner + c[None, :] * s_c
    return off


@triton.jit
def _ln_fwd_kernel(
    X, W, Bias, Z, Y, MEAN, RSTD,
    n_inner, n_blk, C,
    sx_o, sx_i, sx_c,
    sz_o, sz_i,
    sy_o, sy_i,
    eps,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, X_LAYOUT: tl.constexpr,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, GATE: tl.constexpr, STATS: tl.constexpr,
    OFF64: tl.constexpr,
):
    """Y[o, i, :] = LN(X[o, i, :]) (* silu(Z[o, i, :])); MEAN, RSTD per row when STATS."""
    pid = tl.program_id(0)
    o = pid // n_blk
    r = (pid - o * n_blk) * BLOCK_R + tl.arange(0, BLOCK_R)
    c = tl.arange(0, BLOCK_C)
    rmask = r < n_inner
    cmask = c < C
    mask = rmask[:, None] & cmask[None, :]
    if OFF64:
        r = r.to(tl.int64)
    o64 = o.to(tl.int64)

    x = tl.load(X + o64 * sx_o + _tile_offsets(r, c, sx_i, sx_c, X_LAYOUT), mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / C
    xc = tl.where(mask, x - mean[:, None], 0.0)
    var = tl.sum(xc * xc, axis=1) / C
    rstd = 1.0 / tl.sqrt(var + eps)
    n = xc * rstd[:, None]
    if HAS_W:
        n = n * tl.load(W + c, mask=cmask, other=0.0).to(tl.float32)[None, :]
    if HAS_B:
        n = n + tl.load(Bias + c, mask=cmask, other=0.0).to(tl.float32)[None, :]
    if GATE:
        z = tl.load(Z + o64 * sz_o + _tile_offsets(r, c, sz_i, 1, 1), mask=mask, other=0.0).to(tl.float32)
        n = n * (z * tl.sigmoid(z))
    tl.store(Y + o64 * sy_o + _tile_offsets(r, c, sy_i, 1, 1), n.to(Y.dtype.element_ty), mask=mask)
    if STATS:
        row = o64 * n_inner + r
        tl.store(MEAN + row, mean, mask=rmask)
        tl.store(RSTD + row, rstd, mask=rmask)


@triton.jit
def _merge_ln_fwd_kernel(
    Cs, Rs, W, Bias, Z, Y,
    H, Wd, C, sc_slot, sr_slot, sz_b, sz_h, sz_w, eps,
    NC: tl.constexpr, NR: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr, BLOCK_C: tl.constexpr,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, GATE: tl.constexpr,
):
    """Y[b, h, w, :] = LN(x[b, :, h, w]) (* silu(Z[b, h, w, :])) for a (BH, BW) pixel tile of
    image b, with x = (Cs_0 + .. + Cs_{NC-1}) + (Rs_0 + .. + Rs_{NR-1})^T summed on load in this
    order (the scan's merge order): Cs slots (B, C, H, W), Rs slots (B, C, W, H) float32,
    packed per slot (``sc_slot`` / ``sr_slot`` elements apart); Y channels-last contiguous."""
    b = tl.program_id(2).to(tl.int64)
    h = tl.program_id(0) * BH + tl.arange(0, BH)[:, None, None]
    w = tl.program_id(1) * BW + tl.arange(0, BW)[None, :, None]
    c = tl.arange(0, BLOCK_C)[None, None, :]
    cmask = c < C
    mask = (h < H) & (w < Wd) & cmask
    plane = (b * C + c) * (H * Wd)
    x = tl.load(Rs + plane + w * H + h, mask=mask, other=0.0)
    for i in tl.static_range(1, NR):
        x += tl.load(Rs + i * sr_slot + plane + w * H + h, mask=mask, other=0.0)
    if NC > 0:
        cs = tl.load(Cs + plane + h * Wd + w, mask=mask, other=0.0)
        for i in tl.static_range(1, NC):
            cs += tl.load(Cs + i * sc_slot + plane + h * Wd + w, mask=mask, other=0.0)
        x = cs + x
    mean = tl.sum(x, axis=2) / C
    xc = tl.where(mask, x - mean[:, :, None], 0.0)
    var = tl.sum(xc * xc, axis=2) / C
    rstd = 1.0 / tl.sqrt(var + eps)
    n = xc * rstd[:, :, None]
    if HAS_W:
        n = n * tl.load(W + c, mask=cmask, other=0.0).to(tl.float32)
    if HAS_B:
        n = n + tl.load(Bias + c, mask=cmask, other=0.0).to(tl.float32)
    if GATE:
        z = tl.load(Z + b * sz_b + h * sz_h + w * sz_w + c, mask=mask, other=0.0).to(tl.float32)
        n = n * (z * tl.sigmoid(z))
    tl.store(Y + ((b * H + h) * Wd + w) * C + c, n.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _ln_bwd_kernel(
    X, W, Bias, Z, DY, DX, DZ, MEAN, RSTD, DW_PART, DB_PART,
    n_inner, n_blk, total_blk, C,
    sx_o, sx_i, sx_c,
    sdx_o, sdx_i, sdx_c,
    sz_o, sz_i,
    sdz_o, sdz_i,
    sdy_o, sdy_i,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    X_LAYOUT: tl.constexpr, DX_LAYOUT: tl.constexpr,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, GATE: tl.constexpr, PARTIALS: tl.constexpr,
    OFF64: tl.constexpr,
):
    """DX (and DZ) for the row tiles pid, pid + P, ...; this program's dw, db sums to row pid
    of DW_PART, DB_PART (P x C) when PARTIALS."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    c = tl.arange(0, BLOCK_C)
    cmask = c < C
    if HAS_W:
        w = tl.load(W + c, mask=cmask, other=0.0).to(tl.float32)
    else:
        w = tl.where(cmask, 1.0, 0.0)
    if HAS_B:
        b = tl.load(Bias + c, mask=cmask, other=0.0).to(tl.float32)
    else:
        b = tl.zeros((BLOCK_C,), dtype=tl.float32)
    dw_acc = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    db_acc = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    for blk in range(pid, total_blk, nprog):
        o = blk // n_blk
        r = (blk - o * n_blk) * BLOCK_R + tl.arange(0, BLOCK_R)
        rmask = r < n_inner
        mask = rmask[:, None] & cmask[None, :]
        if OFF64:
            r = r.to(tl.int64)
        o64 = o.to(tl.int64)
        row = o64 * n_inner + r
        mean = tl.load(MEAN + row, mask=rmask, other=0.0)
        rstd = tl.load(RSTD + row, mask=rmask, other=0.0)
        x = tl.load(X + o64 * sx_o + _tile_offsets(r, c, sx_i, sx_c, X_LAYOUT), mask=mask, other=0.0).to(tl.float32)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
        dn = tl.load(DY + o64 * sdy_o + _tile_offsets(r, c, sdy_i, 1, 1), mask=mask, other=0.0).to(tl.float32)
        if GATE:
            z = tl.load(Z + o64 * sz_o + _tile_offsets(r, c, sz_i, 1, 1), mask=mask, other=0.0).to(tl.float32)
            s = tl.sigmoid(z)
            n = xhat * w[None, :] + b[None, :]
            dz = dn * n * (s * (1.0 + z * (1.0 - s)))
            tl.store(DZ + o64 * sdz_o + _tile_offsets(r, c, sdz_i, 1, 1), dz.to(DZ.dtype.element_ty), mask=mask)
            dn = dn * (z * s)
        if PARTIALS:
            dw_acc += dn * xhat
            db_acc += dn
        g = dn * w[None, :]
        c1 = tl.sum(g * xhat, axis=1) / C
        c2 = tl.sum(g, axis=1) / C
        dx = (g - c2[:, None] - xhat * c1[:, None]) * rstd[:, None]
        tl.store(DX + o64 * sdx_o + _tile_offsets(r, c, sdx_i, sdx_c, DX_LAYOUT), dx.to(DX.dtype.element_ty), mask=mask)
    if PARTIALS:
        tl.store(DW_PART + pid * C + c, tl.sum(dw_acc, axis=0), mask=cmask)
        tl.store(DB_PART + pid * C + c, tl.sum(db_acc, axis=0), mask=cmask)


# ------------------------------------------------------------------------------------------
# strided views and launch parameters
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowsView:
    """A (..., C) tensor's rows as an ``n_outer x n_inner`` grid: element (o, i, c) sits at
    ``o * s_outer + i * s_inner + c * s_c`` (in elements) from the tensor's data pointer."""

    n_outer: int
    n_inner: int
    s_outer: int
    s_inner: int
    s_c: int

    @property
    def layout(self) -> int:
        if self.s_c == 1:
            return LAYOUT_CHANNELS
        return LAYOUT_ROWS if self.s_inner == 1 else LAYOUT_GENERIC

    def span(self, c: int) -> int:
        """Largest element offset inside one outer slice."""
        return (self.n_inner - 1) * self.s_inner + (c - 1) * self.s_c


def rows_view(t: Tensor) -> Optional[RowsView]:
    """The two-level row addressing of ``t`` (..., C), or None when its leading dims cannot be
    merged into two (then the caller copies it)."""
    dims = [(n, s) for n, s in zip(t.shape[:-1], t.stride()[:-1]) if n != 1]
    groups = []  # (size, stride) merged runs, innermost first
    for n, s in reversed(dims):
        if groups and groups[-1][1] * groups[-1][0] == s:
            size, stride = groups[-1]
            groups[-1] = (size * n, stride)
        else:
            groups.append((n, s))
    if len(groups) > 2:
        return None
    inner = groups[0] if groups else (1, 0)
    outer = groups[1] if len(groups) > 1 else (1, 0)
    return RowsView(outer[0], inner[0], outer[1], inner[1], t.stride(-1))


def _rows_like(v: RowsView, c: int) -> RowsView:
    """The view of a contiguous tensor with v's row grid (n_outer x n_inner x C)."""
    return RowsView(v.n_outer, v.n_inner, v.n_inner * c, c, 1)


def _channel_major(t: Tensor, v: RowsView) -> Tuple[Tensor, RowsView]:
    """t (same rows as v) with unit channel stride and v's row grid, copied only if needed."""
    tv = rows_view(t)
    if tv is not None and tv.s_c == 1 and tv.n_outer == v.n_outer and tv.n_inner == v.n_inner:
        return t, tv
    if tv is not None and tv.s_c == 1 and tv.n_outer * tv.n_inner == v.n_outer * v.n_inner and tv.n_outer == 1:
        # one merged run: any split of it is a valid two-level view
        return t, RowsView(v.n_outer, v.n_inner, v.n_inner * tv.s_inner, tv.s_inner, 1)
    t = t.contiguous()
    return t, _rows_like(v, t.shape[-1])


@dataclass(frozen=True)
class Tiles:
    """Launch shape: elements per program tile and warps, forward and backward."""

    fwd_tile: int = FWD_TILE
    fwd_warps: int = FWD_WARPS
    bwd_tile: int = BWD_TILE
    bwd_warps: int = BWD_WARPS
    bwd_programs_per_sm: int = BWD_PROGRAMS_PER_SM


def tiles() -> Tiles:
    """The defaults, or ``$DIFFMF_LN_TILES`` (comma-separated, leading fields) when set."""
    spec = os.environ.get(TILES_ENV)
    if not spec:
        return Tiles()
    vals = [int(v) for v in spec.split(",")]
    return Tiles(*vals)


def block_rows(c: int, tile: int) -> int:
    """Rows per program for C channels and a tile of ``tile`` elements."""
    if triton_interpreting():
        return INTERPRET_BLOCK_ROWS
    return max(1, min(MAX_BLOCK_ROWS, tile // _pow2(c)))


def _needs_off64(c: int, *views: RowsView) -> bool:
    return any(v.span(c) >= 2**31 for v in views) or views[0].n_outer * views[0].n_inner >= 2**31


# ------------------------------------------------------------------------------------------
# forward / backward launches
# ------------------------------------------------------------------------------------------
def layer_norm_fwd(
    x: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    eps: float,
    gate: Optional[Tensor],
    out_dtype: torch.dtype,
    stats: bool,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Forward launch: x (..., C) any two-level strides, gate (..., C) or None.

    Returns (out (..., C) contiguous in ``out_dtype``, mean (rows,), rstd (rows,), x as read
    (a copy only when its rows are not two-level), gate as read); mean/rstd are empty when
    not ``stats``.
    """
    C = x.shape[-1]
    xv = rows_view(x)
    if xv is None:
        logger.debug("layer_norm: input strides %s not two-level, copying", x.stride())
        x = x.contiguous()
        xv = rows_view(x)
    out = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    yv = _rows_like(xv, C)
    zv = yv
    if gate is not None:
        gate, zv = _channel_major(gate, xv)
    rows = xv.n_outer * xv.n_inner
    mean = torch.empty(rows if stats else 0, dtype=torch.float32, device=x.device)
    rstd = torch.empty_like(mean)
    if rows == 0:
        return out, mean, rstd, x, gate
    cfg = tiles()
    br, bc = block_rows(C, cfg.fwd_tile), _pow2(C)
    n_blk = triton.cdiv(xv.n_inner, br)
    dummy = mean if stats else out
    _ln_fwd_kernel[(xv.n_outer * n_blk,)](
        x, weight if weight is not None else out, bias if bias is not None else out,
        gate if gate is not None else out, out, mean if stats else dummy, rstd if stats else dummy,
        xv.n_inner, n_blk, C,
        xv.s_outer, xv.s_inner, xv.s_c,
        zv.s_outer, zv.s_inner,
        yv.s_outer, yv.s_inner,
        eps,
        BLOCK_R=br, BLOCK_C=bc, X_LAYOUT=xv.layout,
        HAS_W=weight is not None, HAS_B=bias is not None, GATE=gate is not None, STATS=stats,
        OFF64=_needs_off64(C, xv, yv, zv), num_warps=cfg.fwd_warps,
    )
    return out, mean, rstd, x, gate


MERGE_TILE = 8192  # elements (pixels x channels) per program of the merged form
MERGE_WARPS = 8
MERGE_TILES_ENV = "DIFFMF_MERGE_LN_TILES"  # "rows,cols,warps" of the merged form's pixel tile (benchmarks)


def merged_layer_norm_fwd(
    sums: RouteSums,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    eps: float,
    gate: Optional[Tensor],
    out_dtype: torch.dtype,
) -> Tensor:
    """LN over the channels of the merged scan output (B, C, H, W) [* silu(gate)], read from
    its route slots (one pass, forward only) -> (B, H, W, C) contiguous in ``out_dtype``;
    gate (B, H, W, C) with unit channel stride (else copied)."""
    cols, rows = sums.cols, sums.rows
    nb, c, h, w = sums.shape
    out = torch.empty(nb, h, w, c, dtype=out_dtype, device=rows.device)
    if out.numel() == 0:
        return out
    per = c * h * w

    def packed(t: Tensor, plane: tuple) -> Tensor:
        ok = t.shape[0] == 0 or (t.stride()[1:] == (per, h * w, *plane) and (t.shape[0] == 1 or t.stride(0) >= nb * per))
        return t if ok else t.contiguous()

    cols, rows = packed(cols, (w, 1)), packed(rows, (h, 1))
    if gate is not None and gate.stride(-1) != 1:
        gate = gate.contiguous()
    bc = _pow2(c)
    warps = MERGE_WARPS
    if triton_interpreting():  # the tile override is for GPUs only
        bh, bw = 2, 4  # several tiles and ragged edges on tiny maps
    elif spec := env_ints(MERGE_TILES_ENV, "rows,cols,warps"):
        bh, bw, warps = spec
    else:
        bw = min(16, _pow2(w))
        bh = max(1, min(_pow2(h), MERGE_TILE // (bw * bc)))
    nc = cols.shape[0]
    _merge_ln_fwd_kernel[(triton.cdiv(h, bh), triton.cdiv(w, bw), nb)](
        cols if nc else rows, rows, weight if weight is not None else out, bias if bias is not None else out,
        gate if gate is not None else out, out,
        h, w, c, cols.stride(0) if nc > 1 else 0, rows.stride(0) if rows.shape[0] > 1 else 0,
        *(gate.stride()[:3] if gate is not None else (0, 0, 0)), eps,
        NC=nc, NR=rows.shape[0], BH=bh, BW=bw, BLOCK_C=bc,
        HAS_W=weight is not None, HAS_B=bias is not None, GATE=gate is not None, num_warps=warps,
    )
    return out


def layer_norm_bwd(
    dy: Tensor,
    x: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    gate: Optional[Tensor],
    mean: Tensor,
    rstd: Tensor,
    need_wb: bool = True,
) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """Backward launch: dy (..., C) -> (dx like x, dweight (C,), dbias (C,), dgate like gate).

    dweight/dbias are None when the affine parameters are absent or ``need_wb`` is False.
    """
    C = x.shape[-1]
    xv = rows_view(x)
    dx = torch.empty_like(x)  # x's strides when x is dense, else contiguous
    dxv = rows_view(dx)
    if dxv is None or dxv.n_outer != xv.n_outer or dxv.n_inner != xv.n_inner:
        dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        dxv = _rows_like(xv, C)
    dy, dyv = _channel_major(dy, xv)
    zv = dzv = dyv
    dz = None
    if gate is not None:
        gate, zv = _channel_major(gate, xv)
        dz = torch.empty_like(gate)
        dz, dzv = _channel_major(dz, xv)
    has_wb = need_wb and (weight is not None or bias is not None)
    rows = xv.n_outer * xv.n_inner
    cfg = tiles()
    br, bc = block_rows(C, cfg.bwd_tile), _pow2(C)
    n_blk = triton.cdiv(xv.n_inner, br) if rows else 0
    total = xv.n_outer * n_blk
    if triton_interpreting():
        progs = min(total, INTERPRET_BWD_PROGRAMS)
    else:
        progs = min(total, sm_count(x.device, cpu=1) * cfg.bwd_programs_per_sm)
    dw_part = torch.zeros((max(progs, 1), C) if has_wb else (0,), dtype=torch.float32, device=x.device)
    db_part = torch.zeros_like(dw_part)
    if progs > 0:
        _ln_bwd_kernel[(progs,)](
            x, weight if weight is not None else dw_part, bias if bias is not None else dw_part,
            gate if gate is not None else dy, dy, dx, dz if dz is not None else dx, mean, rstd, dw_part, db_part,
            xv.n_inner, n_blk, total, C,
            xv.s_outer, xv.s_inner, xv.s_c,
            dxv.s_outer, dxv.s_inner, dxv.s_c,
            zv.s_outer, zv.s_inner,
            dzv.s_outer, dzv.s_inner,
            dyv.s_outer, dyv.s_inner,
            BLOCK_R=br, BLOCK_C=bc, X_LAYOUT=xv.layout, DX_LAYOUT=dxv.layout,
            HAS_W=weight is not None, HAS_B=bias is not None, GATE=gate is not None, PARTIALS=has_wb,
            OFF64=_needs_off64(C, xv, dxv, dyv, zv, dzv), num_warps=cfg.bwd_warps,
        )
    dw = db = None
    if has_wb:
        if weight is not None:
            dw = dw_part.sum(0).to(weight.dtype)
        if bias is not None:
            db = db_part.sum(0).to(bias.dtype)
    return dx, dw, db, dz


class LayerNormTriton(torch.autograd.Function):
    """Autograd wrapper: (x, weight, bias, gate, eps, out_dtype, stats) -> LN(x) [* silu(gate)]."""

    @staticmethod
    def forward(ctx, x, weight, bias, gate, eps, out_dtype, stats):  # type: ignore[override]
        out, mean, rstd, x_read, gate_read = layer_norm_fwd(x, weight, bias, eps, gate, out_dtype, stats)
        ctx.save_for_backward(x_read, weight, bias, gate_read, mean, rstd)
        ctx.x_shape = x.shape
        return out

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        x, weight, bias, gate, mean, rstd = ctx.saved_tensors
        need = ctx.needs_input_grad
        dx, dw, db, dz = layer_norm_bwd(dy, x, weight, bias, gate, mean, rstd, need_wb=need[1] or need[2])
        return (
            dx if need[0] else None,
            dw if need[1] else None,
            db if need[2] else None,
            dz if need[3] else None,
            None,
            None,
            None,
        )


def layer_norm_triton(
    x: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    eps: float,
    gate: Optional[Tensor],
    out_dtype: torch.dtype,
) -> Tensor:
    """LN over the last dim of x (..., C) [* silu(gate)], out (..., C) contiguous in out_dtype.

    Mean and rstd are kept for the backward only when autograd will need them.
    """
    stats = needs_grad(x, weight, bias, gate)
    if not stats:  # inference: no autograd node, no saved statistics
        return layer_norm_fwd(x, weight, bias, eps, gate, out_dtype, False)[0]
    return LayerNormTriton.apply(x, weight, bias, gate, eps, out_dtype, stats)
