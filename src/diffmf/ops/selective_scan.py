"""The selective-scan entry points used by the model: 1-D contract and fused 2-D cross-scan.

:func:`selective_scan` is the op with VMamba's ``selective_scan_fn`` contract.
:func:`selective_scan_2d` is SS2D's CrossScan -> selective scan -> CrossMerge in one call,
taking per-route ``delta``, ``B``, ``C`` maps in natural (grid) layout, so a fused kernel can
read each route in its own order without K-fold copies of the feature map.
:func:`selective_scan_2d_lowrank` is the same with VMamba's rank-R dt_proj folded in (what
SS2D calls). All dispatch on the backend (:mod:`diffmf.ops.dispatch`); model code never names
a backend. On the ``torch`` backend, when no gradient is needed, the 2-D ops stream the routes
through the chunked no-grad scan of :mod:`diffmf.ops.scan_torch` (:func:`_scan_2d_inference`);
with gradients they run CrossScan -> autograd scan -> CrossMerge.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from diffmf.ops.cross_scan import cross_merge, cross_scan, cross_scan_routes, dense_map
from diffmf.ops import flops as _flops
from diffmf.ops.dispatch import needs_grad, resolve_backend
from diffmf.ops.scan_ref import selective_scan_ref
from diffmf.ops import scan_torch as _scan_torch
from diffmf.ops.scan_torch import InferenceScan, scratch, selective_scan_torch


def _check(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must be (B, G*D, L) and equal; got {tuple(u.shape)}, {tuple(delta.shape)}")
    batch, gd, length = u.shape
    if A.dim() != 2 or A.shape[0] != gd:
        raise ValueError(f"A must be (G*D, N) = ({gd}, N); got {tuple(A.shape)}")
    if B.dim() != 4 or B.shape[0] != batch or B.shape[2] != A.shape[1] or B.shape[3] != length:
        raise ValueError(f"B must be (B, G, N, L) = ({batch}, G, {A.shape[1]}, {length}); got {tuple(B.shape)}")
    if C.shape != B.shape:
        raise ValueError(f"C must have the shape of B {tuple(B.shape)}; got {tuple(C.shape)}")
    if gd % B.shape[1]:
        raise ValueError(f"G*D={gd} is not divisible by the number of groups G={B.shape[1]}")


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
    backend: Optional[str] = None,
) -> Tensor:
    """Selective scan (Mamba S6, eq. 3 of the paper with ZOH on A and Euler on B).

    u, delta: (B, G*D, L); A: (G*D, N) (negative); B, C: (B, G, N, L); D, delta_bias: (G*D,).
    delta <- softplus(delta + delta_bias); h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t;
    y_t = C_t . h_t + D u_t. Returns y (B, G*D, L), float32.
    """
    _check(u, delta, A, B, C)
    name = resolve_backend(u.device, backend)
    if name == "triton":
        from diffmf.ops.triton import selective_scan_triton

        return selective_scan_triton(u, delta, A, B, C, D, delta_bias, delta_softplus)
    fn = selective_scan_ref if name == "ref" else selective_scan_torch
    return fn(u, delta, A, B, C, D, delta_bias, delta_softplus)


def selective_scan_2d(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
    backend: Optional[str] = None,
) -> Tensor:
    """CrossScan -> selective scan -> CrossMerge over an H x W grid (SS2D core).

    u: (B, D, H, W) shared by the K routes; delta: (B, K, D, H, W); B, C: (B, K, N, H, W);
    A: (K*D, N); D, delta_bias: (K*D,). Route k reads the grid in order k of
    :mod:`diffmf.ops.cross_scan`; the K outputs are mapped back and summed.
    Returns (B, D, H, W), float32.
    """
    batch, d, h, w = u.shape
    k = delta.shape[1]
    if delta.shape != (batch, k, d, h, w):
        raise ValueError(f"delta must be (B, K, D, H, W) = {(batch, k, d, h, w)}; got {tuple(delta.shape)}")
    if B.shape[:2] != (batch, k) or B.shape[3:] != (h, w) or C.shape != B.shape:
        raise ValueError(f"B and C must be (B, K, N, H, W) with K={k}, H={h}, W={w}; got {tuple(B.shape)}, {tuple(C.shape)}")
    record = _flops.recording()
    if record is not None:  # FLOP accounting (diffmf info): count, do not compute
        record(_flops.scan_flops(batch, h * w, k * d, A.shape[1], D is not None))
        return u.new_zeros(u.shape, dtype=torch.float32)
    name = resolve_backend(u.device, backend)
    if name == "triton":
        from diffmf.ops.triton import selective_scan_2d_triton

        return selective_scan_2d_triton(u, delta, A, B, C, D, delta_bias, delta_softplus)
    if _streams(u, (delta, A, B, C, D, delta_bias), name):
        _check_2d(batch, k, d, h * w, A, B, C)
        return _scan_2d_inference(u, delta, A, B, C, D, delta_bias, delta_softplus)
    length = h * w
    us = cross_scan(u, k).reshape(batch, k * d, length)
    ds = cross_scan_routes(delta).reshape(batch, k * d, length)
    y = selective_scan(us, ds, A, cross_scan_routes(B), cross_scan_routes(C), D, delta_bias, delta_softplus, backend=name)
    return cross_merge(y.view(batch, k, d, length), h, w)


def expand_delta(dts: Tensor, dt_weight: Tensor) -> Tensor:
    """Low-rank step sizes to per-channel ones: (B, K, R, H, W), (K, D, R) -> (B, K, D, H, W).

    delta[b, k, d] = sum_r dt_weight[k, d, r] dts[b, k, r] (VMamba's dt_proj per route), as one
    batched matmul with a planar output.
    """
    b, k, r, h, w = dts.shape
    d = dt_weight.shape[1]
    weight = dt_weight.to(dts.dtype).expand(b, -1, -1, -1).reshape(b * k, d, r)
    return torch.bmm(weight, dts.reshape(b * k, r, h * w)).view(b, k, d, h, w)


def selective_scan_2d_lowrank(
    u: Tensor,
    dts: Tensor,
    dt_weight: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
    backend: Optional[str] = None,
    merge: bool = True,
):
    """:func:`selective_scan_2d` with delta = :func:`expand_delta` (dts, dt_weight).

    dts: (B, K, R, H, W), dt_weight: (K, D, R); the rest as in :func:`selective_scan_2d`.
    The (B, K, D, H, W) step map (the largest tensor of an SS2D) is never written out by the
    Triton backend (its sweeps expand delta per channel, forward and backward, see
    :func:`diffmf.ops.triton.selective_scan_2d_lowrank_triton`) nor by the torch backend's
    no-grad path (stretch by stretch inside the scan); the other paths expand it first and
    call :func:`selective_scan_2d`. dts, B and C may also be
    :class:`~diffmf.ops.cross_scan.FrameMaps` (from :func:`diffmf.ops.xproj.x_proj`): the
    Triton backend reads them in place, the others make them dense first. ``merge=False``
    lets the Triton backend at inference return the route outputs before their cross-merge
    (:class:`~diffmf.ops.cross_scan.RouteSums`, for
    :func:`diffmf.ops.layernorm.merged_layer_norm`); every other path returns the merged map.
    """
    batch, d, h, w = u.shape
    name = resolve_backend(u.device, backend) if _flops.recording() is None else None
    if name != "triton":
        dts, B, C = dense_map(dts), dense_map(B), dense_map(C)
    k, r = dts.shape[1], dts.shape[2]
    if dts.shape != (batch, k, r, h, w) or dt_weight.shape != (k, d, r):
        raise ValueError(f"dts must be (B, K, R, H, W) and dt_weight (K, D, R) with B={batch}, D={d}, H={h}, W={w}; got {tuple(dts.shape)}, {tuple(dt_weight.shape)}")
    if name is not None:
        streams = _streams(u, (dts, dt_weight, A, B, C, D, delta_bias), name)
        if name == "triton" or streams:
            if B.shape[:2] != (batch, k) or B.shape[3:] != (h, w) or C.shape != B.shape:
                raise ValueError(f"B and C must be (B, K, N, H, W) with K={k}, H={h}, W={w}; got {tuple(B.shape)}, {tuple(C.shape)}")
            _check_2d(batch, k, d, h * w, A, B, C)
        if name == "triton":  # delta expanded inside the sweeps
            from diffmf.ops.triton import selective_scan_2d_lowrank_triton

            return selective_scan_2d_lowrank_triton(u, dts, dt_weight, A, B, C, D, delta_bias, delta_softplus, merge)
        if streams:
            return _scan_2d_inference(u, None, A, B, C, D, delta_bias, delta_softplus, lowrank=(dts, dt_weight))
    return selective_scan_2d(u, expand_delta(dts, dt_weight), A, B, C, D, delta_bias, delta_softplus, backend)


def _streams(u: Tensor, others, backend: Optional[str]) -> bool:
    """True where the streamed no-grad torch path runs."""
    if resolve_backend(u.device, backend) != "torch":
        return False
    return not needs_grad(u, *others)


def _check_2d(batch: int, k: int, d: int, length: int, A: Tensor, B: Tensor, C: Tensor) -> None:
    seq = torch.empty(batch, k * d, length, device="meta")  # shapes only: the contract checks of the 1-D op
    _check(seq, seq, A, torch.empty(batch, k, B.shape[2], length, device="meta"), torch.empty(batch, k, C.shape[2], length, device="meta"))


class _Accumulator:
    """Adds route outputs onto a (B, C, L) map that starts uninitialised.

    The forward routes fill it from the start, the backward ones from the end; a stretch is
    copied where nothing has been written yet and added elsewhere (no zero fill).
    """

    def __init__(self, target: Tensor) -> None:
        self.target, self.head, self.tail = target, 0, target.shape[-1]  # written: [0, head) and [tail, L)

    def put(self, lo: int, hi: int, y: Tensor) -> None:
        cuts = sorted({lo, hi, min(max(self.head, lo), hi), min(max(self.tail, lo), hi)})
        for p, q in zip(cuts[:-1], cuts[1:]):
            part, dst = y[..., p - lo:q - lo], self.target[..., p:q]
            if q <= self.head or p >= self.tail:
                dst.add_(part)
            else:
                dst.copy_(part)
        if lo <= self.head:
            self.head = max(self.head, hi)
        if hi >= self.tail:
            self.tail = min(self.tail, lo)


def _scan_2d_inference(
    u: Tensor,
    delta: Optional[Tensor],
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor],
    delta_bias: Optional[Tensor],
    delta_softplus: bool,
    lowrank: Optional[Tuple[Tensor, Tensor]] = None,
) -> Tensor:
    """No-grad path of :func:`selective_scan_2d`: streams the routes in stretches.

    Routes read the grid row-major (0, 2) or column-major (1, 3), forwards (0, 1) or
    backwards (2, 3). The column-major routes get one transposed copy of their maps; then
    every route's stretch is a contiguous slice (reversed for routes 2, 3) copied into small
    buffers, scanned by :class:`InferenceScan` with the state carried from stretch to
    stretch, and added onto a row-major and a column-major output map, merged at the end.
    No K-fold copies of the maps, no K-fold output; working buffers are reused across calls
    (:func:`diffmf.ops.scan_torch.scratch`). The D skip of the routes is added once:
    (sum_k D_k) u. With ``lowrank = (dts, dt_weight)`` instead of ``delta``, the stretches of
    the R-channel dts are read and expanded to delta in the buffer (:func:`expand_delta`).

    With two or more intra-op threads on the CPU, the row-major and the column-major routes
    run side by side in two Python threads, each with single-threaded ops (the ops release
    the GIL): no fork/join barrier per op, each core keeps its own blocks in its own caches,
    and a core taken by another process delays only its half (same values either way).
    """
    steps = delta if lowrank is None else lowrank[0]  # what is streamed for delta
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in (u, steps, A, B, C)) else torch.float32
    u, steps, A, B, C = (t.to(dtype) for t in (u, steps, A, B, C))
    batch, d, h, w = u.shape
    k, length = steps.shape[1], h * w
    weight = None if lowrank is None else lowrank[1].to(dtype)
    out = u.new_empty(batch, d, h, w)
    cols = None if k == 1 else scratch("2d.cols", (batch, d, length), u)
    srcs = _route_sources(u, steps, B, C)  # transposed copies for the column-major routes, on all threads
    job = functools.partial(_stream, u=u, srcs=srcs, A=A, bias=delta_bias, softplus=delta_softplus, weight=weight)
    threads = torch.get_num_threads()
    if k == 1 or threads < 2 or u.device.type != "cpu" or not ROUTE_THREADS:
        job(list(range(k)), rows=out.view(batch, d, length), cols=cols)
    else:
        modes = (torch.is_inference_mode_enabled(), torch.is_grad_enabled())
        side = _side_thread().submit(_single_threaded, job, modes, list(range(1, k, 2)), cols=cols)
        try:
            _single_threaded(job, modes, list(range(0, k, 2)), rows=out.view(batch, d, length))
        finally:
            side.result()
    if k > 1:
        out.add_(cols.view(batch, d, w, h).transpose(-1, -2))
    if D is not None:
        out.addcmul_(u, D.to(dtype).view(k, d).sum(0).view(1, d, 1, 1))
    return out


ROUTE_THREADS: bool = True  # split the 2-D no-grad scan's routes over two Python threads
_SIDE: Optional[Tuple[int, ThreadPoolExecutor]] = None


def _side_thread() -> ThreadPoolExecutor:
    """One persistent helper thread per process (its scratch buffers persist with it)."""
    global _SIDE
    if _SIDE is None or _SIDE[0] != os.getpid():  # a forked child does not inherit threads
        _SIDE = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="diffmf-scan"))
    return _SIDE[1]


def _single_threaded(job, modes: Tuple[bool, bool], *args, **kwargs) -> None:
    """Run ``job`` with one intra-op thread (per-thread setting) in the caller's grad modes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(modes[0]), torch.set_grad_enabled(modes[1]):
            job(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


def _route_sources(u: Tensor, steps: Tensor, B: Tensor, C: Tensor) -> List[Tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Per route, (steps, u, B, C) as (B, c, L) sequences in the route's forward order: views of
    the maps for the row-major routes, transposed copies (scratch) for the column-major ones."""
    batch, d, h, w = u.shape
    length = h * w

    def seq(x: Tensor, route: int, name: str) -> Tensor:
        c = x.shape[1]
        if route % 2 == 0:
            return x.reshape(batch, c, length)
        out = scratch(f"2d.{name}{route}", (batch, c, w, h), u)
        out.copy_(x.transpose(-1, -2))
        return out.view(batch, c, length)

    u_seq = [seq(u, 0, "u")] + ([seq(u, 1, "u")] if steps.shape[1] > 1 else [])
    return [(seq(steps[:, r], r, "delta"), u_seq[r % 2], seq(B[:, r], r, "B"), seq(C[:, r], r, "C")) for r in range(steps.shape[1])]


def _stream(
    routes: List[int],
    u: Tensor,
    srcs: List[Tuple[Tensor, Tensor, Tensor, Tensor]],
    A: Tensor,
    bias: Optional[Tensor],
    softplus: bool,
    weight: Optional[Tensor],
    rows: Optional[Tensor] = None,
    cols: Optional[Tensor] = None,
) -> None:
    """Scan ``routes`` stretch by stretch from their sources (:func:`_route_sources`), adding
    their outputs (no D skip) onto ``rows`` (routes 0, 2) and ``cols`` (routes 1, 3:
    column-major, i.e. a (W, H) map)."""
    batch, d, h, w = u.shape
    k, n, length = len(routes), A.shape[1], h * w
    K = len(srcs)
    sel = torch.tensor(routes)
    srcs = [srcs[r] for r in routes]
    r_steps = srcs[0][0].shape[1]
    A_sel = A.view(K, d, n)[sel].reshape(k * d, n)
    bias_sel = None if bias is None else bias.view(K, d)[sel].reshape(k * d)
    single = torch.get_num_threads() == 1
    engine = InferenceScan(A_sel, k, batch, bias_sel, softplus, block_elements=_scan_torch._BLOCK_ELEMENTS_1T if single else None)
    if weight is not None:
        w_sel = weight[sel]  # (k, D, R)
        weights = [w_sel[None, :, :, i, None] for i in range(w_sel.shape[-1])]  # (1, k, D, 1) each
    maps = {0: None if rows is None else _Accumulator(rows), 1: None if cols is None else _Accumulator(cols)}
    state = u.new_zeros(batch, k, d, n)
    step = min(engine.stretch, length)
    for a in range(0, length, step):
        b = min(length, a + step)
        bufs = [scratch(f"2d.buf{i}", (batch, k, c, b - a), u) for i, c in enumerate((r_steps, d, n, n))]
        for j, r in enumerate(routes):
            lo, hi = (length - b, length - a) if r >= 2 else (a, b)
            for src, buf in zip(srcs[j], bufs):
                if r >= 2:
                    torch.ops.aten.flip.out(src[..., lo:hi], [-1], out=buf[:, j])
                else:
                    buf[:, j].copy_(src[..., lo:hi])
        raw = bufs[0]
        if weight is not None:  # delta = dt_weight @ dts, stretch by stretch
            raw = scratch("2d.delta", (batch, k, d, b - a), u)
            torch.mul(bufs[0][:, :, None, 0], weights[0], out=raw)
            for i in range(1, len(weights)):
                raw.addcmul_(bufs[0][:, :, None, i], weights[i])
        ys = scratch("2d.y", (batch, k, d, b - a), u)
        state = engine.scan(raw, bufs[1], bufs[2], bufs[3], state, ys)
        for j, r in enumerate(routes):
            lo, hi = (length - b, length - a) if r >= 2 else (a, b)
            y = ys[:, j]
            maps[r % 2].put(lo, hi, y.flip(-1) if r >= 2 else y)
