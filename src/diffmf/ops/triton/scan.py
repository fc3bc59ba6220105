"""Autograd wrappers around the Triton selective-scan kernels (:mod:`.kernels`).

:func:`selective_scan_triton` implements the 1-D contract of
:func:`diffmf.ops.selective_scan.selective_scan` and :func:`selective_scan_2d_triton` the fused
CrossScan -> scan -> CrossMerge of :func:`diffmf.ops.selective_scan.selective_scan_2d`:

    delta <- softplus(delta + delta_bias);  h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t;
    y_t = C_t . h_t + D u_t                 (float32 state, exponentials and output)

Both describe the work as *routes* over an ``OUTER x INNER`` grid (see :mod:`.kernels`) and
run the same kernels: the 1-D op is one row-major route per group over a ``1 x L`` grid; the
2-D op reads the ``H x W`` maps directly, route 0/2 row-major (forward/reversed) and 1/3
column-major. Nothing is copied into route order, and the route outputs are summed in place
in a fixed order, so results (forward and gradients) are deterministic. The kernels read B
and C state-contiguous (each pixel's N states adjacent, see :mod:`.kernels`):
:func:`state_major` makes that copy in one pass unless B / C already have that layout, and
:func:`relayout` brings dB / dC back to the public layout. The network's call at inference
may pass dt, B and C as :class:`~diffmf.ops.cross_scan.FrameMaps` already in the layouts
the frames read (:func:`diffmf.ops.xproj.x_proj`): then nothing is copied.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

import torch
import triton
from torch import Tensor

from diffmf.ops.cross_scan import FrameMaps, RouteSums
from diffmf.ops.dispatch import needs_grad, triton_interpreting
from diffmf.ops.triton import kernels as _k
from diffmf.ops.triton.geometry import pow2 as _pow2
from diffmf.ops.triton.geometry import parse_ints, sm_count

logger = logging.getLogger(__name__)

LOG2E = 1.4426950408889634
SEGLEN_ENV = "DIFFMF_TRITON_SEGLEN"  # force the segment length (tests, benchmarks)
LAYOUT_FWD_ENV = "DIFFMF_TRITON_LAYOUT_FWD"  # "dpt,ns,warps,prefetch[,groups[,regs[,stages]]]" (benchmarks)
LAYOUT_BWD_ENV = "DIFFMF_TRITON_LAYOUT_BWD"
HEAVY_PREFETCH_ENV = "DIFFMF_TRITON_HEAVY_PREFETCH"  # the "heavy" forward sweeps' load schedule, 0/1/2 (benchmarks)
DESIGNED_ENV = "DIFFMF_TRITON_DESIGNED"  # sweeps on the designed thread layout: "fwd_local,...", "none" (benchmarks)
PHASES_ENV = "DIFFMF_TRITON_PHASES"  # 1 (default): one program per route; 2: both routes of an axis per program
MIN_SEGLEN = 128  # shortest segment on a GPU: fewer segments, less carry traffic
# Interpreter only (tests): None = the GPU defaults (early prefetch in the forward-type sweeps,
# the late / step-input-only schedule in "heavy" ones, see _make_layout; none in the backward
# sweeps); 0, 1 or 2 forces that load schedule everywhere.
INTERPRET_PREFETCH: Optional[int] = None
SWEEPS = ("fwd_local", "fwd_out", "bwd_local", "bwd_fwd", "bwd_rev")
# Measured on an H100 with Triton 3.6 (docs/benchmarks-log.md, run 15): the designed layout is
# faster for these sweeps with float32 B / C, slower or equal for the others and with bf16.
# The backward sweeps with their strides hidden as well (3 barriers per step instead of 12-15)
# were slower in bf16 and no faster in float32 (run 16, commit c17fd14, reverted).
DESIGNED_FP32 = ("fwd_local", "bwd_local", "bwd_fwd", "bwd_rev")
VECTOR_BYTES = 16  # one state chunk: the widest load per thread (LDG.128)


def _ties_ascending(version: str) -> bool:
    """Whether this Triton gives the threads to the first of equally contiguous axes (see
    :mod:`.kernels`): up to 3.6 it does, from 3.7 on it takes the last."""
    major, minor = (int(v) for v in version.split(".")[:2])
    return (major, minor) < (3, 7)


TIES_ASCENDING = _ties_ascending(triton.__version__)


@dataclass(frozen=True)
class Layout:
    """Lanes of a sweep program: SG segments x CG channel groups x NS state groups, each lane
    holding DPT channels x NPT states; ``num_warps * 32 == SG * CG * NS`` on a GPU."""

    dpt: int
    npt: int
    sg: int
    cg: int
    ns: int
    num_warps: int
    prefetch: int = 1  # load schedule of the step loop: 0 none, 1 early, 2 late (see _make_layout)
    maxnreg: int = 0  # register cap per thread (0: compiler's choice)
    stages: int = 1  # software-pipelining stages of the step loop (tl.range num_stages; 1: none)
    backward: bool = False  # a backward sweep's layout (_bwd_fwd, _bwd_rev)

    @property
    def d_blk(self) -> int:
        return self.dpt * self.cg

    def chunk_count(self, elem_bytes: int) -> int:
        """State chunks per lane (kernel constexpr NCH) of a forward-type sweep on the designed
        layout, for B and C of ``elem_bytes``: the lane's NPT states in loads of 16 bytes when
        that makes 2 or 4 of them (16 bf16 or fp32 states: 2 / 4), else 1 (see :mod:`.kernels`)."""
        nch = self.npt * elem_bytes // VECTOR_BYTES
        return nch if not self.backward and nch in (2, 4) else 1

    def meta(self, elem_bytes: int, designed: bool = False) -> Dict[str, int]:
        """Kernel constexprs and launch options for B and C of ``elem_bytes`` per value, on the
        designed thread layout or on the one Triton picks from the plain axis order."""
        nch = self.chunk_count(elem_bytes) if designed else 1
        m = dict(NCH=nch, LF=designed and TIES_ASCENDING, DPT=self.dpt, NPT=self.npt // nch, SG=self.sg, CG=self.cg, NS=self.ns, PREFETCH=self.prefetch, STAGES=self.stages, num_warps=self.num_warps)
        if not self.backward:  # the forward-type sweeps: strides hidden on the designed layout
            m.update(OPAQUE=designed, one=1)
        if self.maxnreg:
            m["maxnreg"] = self.maxnreg
        return m


@dataclass(frozen=True)
class Orientation:
    """Routes that read the grid along the same axis (rows or columns)."""

    routes: Tuple[int, ...]  # route indices k, forward first
    outer: int  # lines
    inner: int  # steps per line
    so: int  # memory stride between lines
    si: int  # memory stride between steps
    seg_fast: bool  # lanes ordered with adjacent segments adjacent (column routes)
    seglen: int = 0
    nseg: int = 0


@dataclass(frozen=True)
class Problem:
    """Geometry and memory layout of one scan call (all strides in elements)."""

    batch: int
    K: int  # routes
    D: int  # channels per route
    N: int  # states
    length: int  # H * W or L
    orients: Tuple[Orientation, ...]
    rev_from: int  # routes k >= rev_from walk backwards
    u_shared: bool  # 2-D op: u and the output are shared by the routes (merged)
    softplus: bool = True
    nseg_stride: int = 0


# ----------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------
def _sm_count(device: torch.device) -> int:
    return sm_count(device, cpu=4)  # interpreter: 4 "SMs" (segment lengths as the tests expect)


def _parse_layout(text: str) -> Tuple[int, int, int, int, int, int, int]:
    """"dpt,ns,warps,prefetch[,max channel groups per program[,register cap[,stages]]]"."""
    vals = [int(v) for v in text.split(",")]
    vals += [0, 0, 1][len(vals) - 4:]  # defaults of the optional fields
    if vals[3] not in (0, 1, 2):
        raise ValueError(f"{text!r}: the prefetch field is 0 (none), 1 (early) or 2 (late), not {vals[3]}")
    return vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6]


def _layout(D: int, N: int, backward: bool, seg_fast: bool, interpret: bool, *, heavy: bool = False) -> Layout:
    """Lane layout of a sweep (:func:`_make_layout`, memoised: it is asked for at every
    launch, and the host's time per scan call limits eager inference and training).
    ``heavy``: a forward-type sweep whose lanes hold more than the default case (float32 B
    and C, or the output pass with rank-R step inputs): no early prefetch, see
    :func:`_make_layout`."""
    override = os.environ.get(LAYOUT_BWD_ENV if backward else LAYOUT_FWD_ENV)
    heavy_prefetch = os.environ.get(HEAVY_PREFETCH_ENV, "2") if heavy else "2"
    if heavy_prefetch not in ("0", "1", "2"):
        raise ValueError(f"{HEAVY_PREFETCH_ENV}={heavy_prefetch!r}: 0 (none), 1 (early) or 2 (late)")
    return _make_layout(D, N, backward, seg_fast, interpret, override, INTERPRET_PREFETCH, heavy, int(heavy_prefetch))


def _meta(lay: Layout, T: "_Tensors", sweep: str) -> Dict[str, int]:
    """``sweep``'s constexprs and launch options for the operands ``T``."""
    elem = T.B.element_size()
    return lay.meta(elem, _designed(sweep, elem))


def _designed(sweep: str, elem_bytes: int) -> bool:
    """Whether ``sweep`` runs on the designed thread layout for B / C of ``elem_bytes``: the
    measured default (:data:`DESIGNED_FP32`) or ``$DIFFMF_TRITON_DESIGNED``."""
    return _designed_for(sweep, elem_bytes, os.environ.get(DESIGNED_ENV))


@functools.lru_cache(maxsize=64)
def _designed_for(sweep: str, elem_bytes: int, spec: Optional[str]) -> bool:
    if spec is None:
        return elem_bytes == 4 and sweep in DESIGNED_FP32
    names = set() if spec in ("", "none") else set(spec.split(","))
    if names - set(SWEEPS):
        raise ValueError(f"{DESIGNED_ENV}={spec!r}: a comma list of {', '.join(SWEEPS)}, or none")
    return sweep in names


def _heavy(T: "_Tensors", out: bool) -> bool:
    """Whether a forward-type sweep over ``T`` runs without early prefetch (:func:`_make_layout`)."""
    return T.B.element_size() == 4 or (out and T.rank > 0)


@functools.lru_cache(maxsize=256)
def _make_layout(
    D: int, N: int, backward: bool, seg_fast: bool, interpret: bool, override: Optional[str], interpret_prefetch: Optional[int],
    heavy: bool = False, heavy_prefetch: int = 2,
) -> Layout:
    """Lane layout of a sweep (see :mod:`.kernels`).

    Defaults (measured, H100, 640x480 bf16: the layout sweeps of docs/benchmarks-log.md):

    * forward-type sweeps (``_fwd_local``, ``_fwd_out``, ``_bwd_local``): 2 channels x all
      states per lane, capped at 128 registers (4 programs per SM instead of 3 for
      ``_fwd_out``: forward 1.95 -> 1.86 ms as one CUDA graph; 96 registers spill in the loop,
      3.5 ms). One-warp programs and 1 channel per lane were no faster. Load schedule
      (``prefetch``): the next step's loads are issued before the current step computes (1,
      early) except in ``heavy`` sweeps, whose early-prefetched operands do not fit the 128
      registers: float32 B / C (640x480 forward 3.49 -> 2.20 ms as a graph without prefetch)
      and the output pass of the rank-R call (the network's). Those run schedule 2 (late): the
      output pass issues step t + 1's loads once step t is done with the registers they reuse
      (after the state update for u, B and the step input, after the output sum for C), and
      the local passes read only the step input one step ahead. Against no prefetch, same
      bits: the fp32 network 51.46 -> 47.98 ms, bf16 38.54 -> 38.07 ms (640x480, CUDA graph,
      H100); the local passes' schedule 2 in bf16 (not heavy) was slower, 38.07 -> 38.74 ms.
      The output pass on a per-channel step map keeps its early prefetch (1.775 against
      1.790 ms without).
    * backward sweeps (``_bwd_fwd``, ``_bwd_rev``): 4 channels x half the states per lane, at
      most 16 channel groups per program in the column routes (640x480 backward 6.9-7.3 ->
      6.6-6.8 ms, 1024x768 15.5 -> 14.7 ms, training step 157.4 -> 152.5 ms against 2 channels
      x all states with 32 groups). Capping their registers spills (10.8 ms at 168, 26.5 ms
      at 128).

    * no software pipelining of the step loop by Triton (``tl.range(num_stages=2 or 3)``
      stages the loads in shared memory: the forward 1.78 -> 2.3-2.5 ms as a graph, the
      backward unchanged, 640x480 bf16, H100).

    Override with ``DIFFMF_TRITON_LAYOUT_FWD`` / ``DIFFMF_TRITON_LAYOUT_BWD`` =
    "dpt,state_groups,warps,prefetch[,max channel groups[,register cap[,stages]]]"."""
    np_ = _pow2(N)
    if interpret:  # the interpreter runs programs one by one in numpy: few, wide programs
        ns = 2 if (backward and np_ >= 2) else 1
        dpt = 2 if D >= 2 else 1
        cg = min(_pow2(-(-D // dpt)), 4)  # D > 8 exercises the channel-block partial sums
        default = 0 if backward else 2 if heavy else 1  # as on a GPU but for the backward sweeps; all paths are tested
        prefetch = default if interpret_prefetch is None else int(interpret_prefetch)
        return Layout(dpt=dpt, npt=np_ // ns, sg=16, cg=cg, ns=ns, num_warps=1, prefetch=prefetch, backward=backward)
    dpt, ns, warps, prefetch, cg_max, maxnreg, stages = (4, 2, 4, 1, 16, 0, 1) if backward else (2, 1, 4, heavy_prefetch if heavy else 1, 16, 128, 1)
    if override:
        dpt, ns, warps, prefetch, cg_max, maxnreg, stages = _parse_layout(override)
    ns = min(ns, np_)
    dpt = min(dpt, _pow2(D))
    lanes = 32 * warps
    cg = min(_pow2(-(-D // dpt)), lanes // ns)
    if seg_fast and cg_max:  # fewer channel groups, more adjacent columns per warp
        cg = min(cg, _pow2(cg_max))
    sg = lanes // (cg * ns)
    return Layout(
        dpt=dpt, npt=np_ // ns, sg=sg, cg=cg, ns=ns, num_warps=warps, prefetch=prefetch, maxnreg=maxnreg, stages=stages,
        backward=backward,
    )


def _seglen(
    o: Orientation, p: "Problem", lanes_per_seg: int, device: torch.device, interpret: bool, forced: Optional[str] = None
) -> int:
    """Steps per segment: ``forced`` (DIFFMF_TRITON_SEGLEN) if given, else enough segments
    to fill the GPU, a multiple of 16."""
    if forced:
        return max(1, min(int(forced), o.inner))
    if interpret:
        return max(1, -(-o.inner // 3))
    target_lanes = _sm_count(device) * 1536
    seg_per_route = max(1, target_lanes // max(1, p.batch * p.K * lanes_per_seg))
    pieces = max(1, min(-(-seg_per_route // o.outer), o.inner // MIN_SEGLEN))
    return -(-o.inner // (16 * pieces)) * 16  # a multiple of 16: one compiled kernel whatever the size


def _finish(p: Problem, device: torch.device) -> Problem:
    """``p`` with each orientation's segment geometry, memoised per problem, device and the
    environment overrides that change it."""
    return _make_finished(p, device, triton_interpreting(), os.environ.get(SEGLEN_ENV), os.environ.get(LAYOUT_FWD_ENV))


@functools.lru_cache(maxsize=256)
def _make_finished(p: Problem, device: torch.device, interpret: bool, seglen: Optional[str], layout_fwd: Optional[str]) -> Problem:
    orients = []
    for o in p.orients:
        lay = _make_layout(p.D, p.N, False, o.seg_fast, interpret, layout_fwd, None)
        S = _seglen(o, p, -(-p.D // lay.dpt), device, interpret, seglen)
        orients.append(replace(o, seglen=S, nseg=o.outer * (-(-o.inner // S))))
        logger.debug("routes %s: %d lines x %d steps, segments of %d steps (%d)", o.routes, o.outer, o.inner, S, orients[-1].nseg)
    return replace(p, orients=tuple(orients), nseg_stride=max(o.nseg for o in orients))


# ----------------------------------------------------------------------------------------
# launches
# ----------------------------------------------------------------------------------------
@dataclass
class _Tensors:
    """Scan operands of one frame. u, dt (and y, dy, du, ddt) are planar: every per-channel
    plane is packed, planes ``length`` elements apart. B and C are state-contiguous: the N
    states of the pixel at plane position ``pos`` are at ``pos * N + n`` (as the kernels
    write dB and dC). Strides are (batch, route) in elements, the route index into
    route-specific tensors (dt, B, C and their gradients) being ``k // kdiv``."""

    u: Tensor
    dt: Tensor
    A2: Tensor  # A * log2(e), float32 (K*D, N)
    B: Tensor
    C: Tensor
    D: Optional[Tensor]
    bias: Optional[Tensor]
    su: Tuple[int, int]
    sd: Tuple[int, int]
    sB: Tuple[int, int]
    sC: Tuple[int, int]
    sy: Tuple[int, int]  # the output y of this frame (and dy, du)
    kdiv: int = 1
    W: Optional[Tensor] = None  # given: dt holds rank-R step inputs; dt_proj rows (K*D, R) float32

    @property
    def rank(self) -> int:
        """R of the rank-R step inputs in ``dt`` (0: ``dt`` is the per-channel step map)."""
        return 0 if self.W is None else self.W.shape[1]


@dataclass
class _Frame:
    """Routes of one orientation with their operands, in the memory layout they run in.

    y and du are written per output *slot* ``(k - routes[0]) // route step``; with
    ``slots`` > 1 every route has its own slot (``sy_out`` / ``sdu`` give (batch, slot)
    strides) and the caller sums them, else the routes share one (slot stride 0)."""

    o: Orientation
    T: _Tensors
    y: Optional[Tensor] = None  # float32 output written by this frame's routes
    dy: Optional[Tensor] = None
    du: Optional[Tensor] = None  # float32
    ddt: Optional[Tensor] = None  # like dt (route-specific, index k // kdiv)
    sdd: Tuple[int, int] = (0, 0)
    sy_out: Optional[Tuple[int, int]] = None  # y strides (default T.sy)
    sdu: Optional[Tuple[int, int]] = None  # du strides (default T.sy)


def _phases(p: "Problem", o: Orientation) -> int:
    """Routes of ``o`` run one after the other in one program (2-D op, ``DIFFMF_TRITON_PHASES=2``)
    or each in its own programs (default: twice the parallelism, one output slot per route)."""
    if not p.u_shared or len(o.routes) < 2:
        return 1
    return len(o.routes) if os.environ.get(PHASES_ENV, "1") == "2" else 1


def _slot_args(p: "Problem", o: Orientation) -> Tuple[int, int]:
    """(y_k0, y_kdiv): route k writes output slot (k - y_k0) // y_kdiv."""
    if not p.u_shared:
        return 0, 1  # 1-D op: one output per group k
    k0, kstep, _ = _route_args(o, 1)
    return k0, kstep


def _geom_args(p: Problem, o: Orientation) -> List[int]:
    return [p.length, p.D, p.K, o.outer, o.inner, o.seglen, o.nseg, p.nseg_stride, o.so, o.si]


def _grid(p: Problem, o: Orientation, lay: Layout, routes_axis: int) -> Tuple[int, int, int]:
    n_dblk = -(-p.D // lay.d_blk)
    return (n_dblk * (-(-o.nseg // lay.sg)), routes_axis, p.batch)


def _route_args(o: Orientation, phases: int) -> Tuple[int, int, int]:
    """(k0, kstep, programs along grid axis 1) for the routes of ``o``."""
    kstep = o.routes[1] - o.routes[0] if len(o.routes) > 1 else 1
    return o.routes[0], kstep, len(o.routes) // phases


CHAIN_ENV = "DIFFMF_TRITON_CHAIN"  # "channels,states,tile,warps" per chain program (benchmarks)


@functools.lru_cache(maxsize=64)
def _chain_layout(N: int, interpret: bool, override: Optional[str]) -> Tuple[int, int, int, int]:
    """(CD channels, NB states, CT segments per tile, warps) of a chain program.

    Default on a GPU: 1 channel x 4 states, tiles of 512 segments, 4 warps: at batch 1 and
    640x480 (K=4, D=64, N=16) that is 1024 programs in one launch for all routes, where the
    earlier 1 channel x 16 states with one launch per orientation ran 128 programs each.

    Interpreter (programs run one by one in numpy, each at a fixed cost): 4 channels x 4
    states, tiles of 16 segments, which still covers masked channel blocks (D not a multiple
    of 4), several state blocks (N = 16) and the carry between tiles (more than 16 segments).
    The chain of the tiny network's interpreted forward + backward took 135 s with the earlier
    1 channel x 2 states and 4-segment tiles, 14 s with these (2-core CPU)."""
    if interpret:
        return 4, min(4, _pow2(N)), 16, 1
    if override:
        cd, nb, ct, warps = parse_ints(CHAIN_ENV, override, "channels,states,tile,warps")
        return cd, min(_pow2(nb), _pow2(N)), _pow2(ct), warps
    return 1, min(4, _pow2(N)), 512, 4


@functools.lru_cache(maxsize=256)
def _chain_geometry(p: Problem) -> Tuple[int, Tuple[int, ...]]:
    """(orientations, (OUTER, pieces, NSEG) of orientation 0, then of orientation 1) for
    :func:`_chain`, memoised per problem like the rest of a call's planning (a single
    orientation fills both slots). Route k must belong to orientation ``k % orientations``."""
    nori = len(p.orients)
    geo: Tuple[int, ...] = ()
    for i, o in enumerate(p.orients):
        assert all(r % nori == i for r in o.routes), (i, o.routes)
        geo += (o.outer, -(-o.inner // o.seglen), o.nseg)
    return nori, geo * (3 - nori)


def _chain(p: Problem, T: _Tensors, loc: Tensor, dsum: Tensor, out: Tensor, flip: int) -> None:
    """Segment start states (flip=0) or incoming adjoints (flip=1) for every route, one launch.

    Route k is of orientation ``k % len(p.orients)`` (rows 0/2, columns 1/3; see
    :func:`_problem_2d`); the kernel takes both orientations' segment grids."""
    cd, nb, ct, warps = _chain_layout(p.N, triton_interpreting(), os.environ.get(CHAIN_ENV))
    nori, geo = _chain_geometry(p)
    nblk = -(-p.N // nb)
    _k._chain_kernel[(-(-p.D // cd) * nblk, p.K, p.batch)](
        loc, dsum, T.A2, out,
        p.D, p.K, p.nseg_stride, p.rev_from, flip, *geo,
        N=p.N, NORI=nori, CD=cd, NB=nb, CT=ct, num_warps=warps,
    )


def _opt(T: _Tensors, t: Optional[Tensor]) -> Tensor:
    """A stand-in pointer for an absent optional operand (its HAS_ flag is off)."""
    return T.A2 if t is None else t


def transpose_planes(x: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """(P1, P2, R, C) -> (P1, P2, C, R), tiled in Triton; planes of x must be packed (rows of
    C elements), out is packed."""
    P1, P2, R, C = x.shape
    if x.stride(3) != 1 or (R > 1 and x.stride(2) != C):
        x = x.contiguous()
    if out is None:
        out = torch.empty(P1, P2, C, R, device=x.device, dtype=x.dtype)
    if x.numel() == 0:
        return out
    br = bc = 16 if triton_interpreting() else 64
    _k._transpose_kernel[(-(-R // br), -(-C // bc), P1 * P2)](
        x, out, x.stride(0), x.stride(1), out.stride(0), out.stride(1), P2, R, C,
        BR=br, BC=bc, num_warps=4,
    )
    return out


def _is_state_major(x: Tensor, transpose: bool) -> bool:
    """Whether ``x`` (P1, P2, N, H, W) already holds every pixel's N states adjacent, pixels
    row-major over (H, W), or over (W, H) with ``transpose`` (size-1 dims ignored)."""
    n, h, w = x.shape[2:]
    expect = {2: 1, 3: n, 4: n * h} if transpose else {2: 1, 4: n, 3: n * w}
    return all(x.size(dim) <= 1 or x.stride(dim) == st for dim, st in expect.items())


def _fast_spatial(x: Tensor) -> str:
    """The spatial dim ("h" or "w") of a (..., N, H, W) view that is closer to contiguous."""
    h, w = x.dim() - 2, x.dim() - 1
    if x.size(w) <= 1:
        return "h"
    if x.size(h) <= 1:
        return "w"
    return "h" if abs(x.stride(h)) < abs(x.stride(w)) else "w"


def relayout(x: Tensor, out: Tensor) -> Tensor:
    """``out[p1, p2, n, h, w] = x[p1, p2, n, h, w]`` in one tiled pass, both (P1, P2, N, H, W)
    views with any strides (e.g. planar <-> state-contiguous, optionally with H and W swapped
    in memory), cast to out's dtype. A 6-D ``x`` (blocks, P1, P2, N, H, W) is summed over its
    blocks in float32, in block order (deterministic)."""
    x6 = x if x.dim() == 6 else x.unsqueeze(0)
    blocks = x6.shape[0]
    P1, P2, N, H, W = out.shape
    assert tuple(x6.shape[1:]) == tuple(out.shape), (tuple(x.shape), tuple(out.shape))
    if out.numel() == 0:
        return out
    if triton_interpreting():
        bh, bw = 4, 8  # small tiles: the tests cover the tile edges
    elif _fast_spatial(x6) == _fast_spatial(out):
        bh, bw = (2, 128) if _fast_spatial(out) == "w" else (128, 2)
    else:  # H and W swap in memory: square-ish tiles, coalesced reads and writes
        bh, bw = 16, 32
    bh, bw = min(bh, _pow2(H)), min(bw, _pow2(W))
    _k._relayout_kernel[(-(-H // bh), -(-W // bw), P1 * P2)](
        x6, out, x6.stride(0) if blocks > 1 else 0, *x6.stride()[1:], *out.stride(),
        blocks, P2, H, W, N=N, NP=_pow2(N), BH=bh, BW=bw, num_warps=4,
    )
    return out


def state_major(x: Tensor, transpose: bool) -> Tensor:
    """B or C (P1, P2, N, H, W) as the kernels read it: a view of the same shape whose memory
    holds each pixel's N states adjacent, pixels over (H, W) -- or (W, H) with ``transpose``
    (the rows frame of the 2-D op). ``x`` itself where it is laid out so already (no copy),
    else a copy made by :func:`relayout`."""
    if _is_state_major(x, transpose):
        return x
    P1, P2, N, H, W = x.shape
    if transpose:
        buf = torch.empty(P1, P2, W, H, N, device=x.device, dtype=x.dtype).permute(0, 1, 4, 3, 2)
    else:
        buf = torch.empty(P1, P2, H, W, N, device=x.device, dtype=x.dtype).permute(0, 1, 4, 2, 3)
    return relayout(x, buf)


def grad_planes(buf: Tensor, h: int, w: int, transpose: bool) -> Tensor:
    """A (..., length, N) state-contiguous gradient buffer of the kernels (plane (W, H) with
    ``transpose``) as a (..., N, H, W) view, for :func:`relayout`."""
    lead = buf.shape[:-2]
    n = buf.shape[-1]
    r = len(lead)
    if transpose:
        return buf.view(*lead, w, h, n).permute(*range(r), r + 2, r + 1, r)
    return buf.view(*lead, h, w, n).permute(*range(r), r + 2, r, r + 1)


def scan_forward(p: Problem, frames: List[_Frame]) -> Tuple[Tensor, Tensor]:
    """Passes 1-3 for every frame (writes each frame's y, float32); returns (hstart, dsum)."""
    interpret = triton_interpreting()
    A2 = frames[0].T.A2
    shape = (p.batch, p.K, p.D, p.nseg_stride)
    # every entry that is read (segments s < nseg of each route) is written first: no memset
    hloc = torch.empty(*shape, p.N, device=A2.device, dtype=torch.float32)
    hstart = torch.empty_like(hloc)
    dsum = torch.empty(*shape, device=A2.device, dtype=torch.float32)
    for f in frames:
        o, T = f.o, f.T
        lay = _layout(p.D, p.N, False, o.seg_fast, interpret, heavy=_heavy(T, out=False))
        k0, kstep, nk = _route_args(o, 1)
        _k._fwd_local_kernel[_grid(p, o, lay, nk)](
            T.u, T.dt, T.A2, T.B, _opt(T, T.bias), _opt(T, T.W), hloc, dsum,
            *T.su, *T.sd, *T.sB,
            *_geom_args(p, o), k0, kstep, p.rev_from, T.kdiv,
            **_meta(lay, T, "fwd_local"), N=p.N, SEG_FAST=o.seg_fast, HAS_BIAS=T.bias is not None, SOFTPLUS=p.softplus,
            R=T.rank,
        )
    _chain(p, frames[0].T, hloc, dsum, hstart, flip=0)
    for f in frames:
        o, T = f.o, f.T
        lay = _layout(p.D, p.N, False, o.seg_fast, interpret, heavy=_heavy(T, out=True))
        phases = _phases(p, o)
        k0, kstep, nk = _route_args(o, phases)
        _k._fwd_out_kernel[_grid(p, o, lay, nk)](
            T.u, T.dt, T.A2, T.B, T.C, _opt(T, T.D), _opt(T, T.bias), _opt(T, T.W), hstart, f.y,
            *T.su, *T.sd, *T.sB, *T.sC, *(f.sy_out or T.sy),
            *_geom_args(p, o), k0, kstep, p.rev_from, T.kdiv, *_slot_args(p, o),
            **_meta(lay, T, "fwd_out"), N=p.N, SEG_FAST=o.seg_fast, HAS_BIAS=T.bias is not None, SOFTPLUS=p.softplus,
            HAS_D=T.D is not None, PHASES=phases, ACCUM=False, R=T.rank,
        )
    return hstart, dsum


def scan_backward(p: Problem, frames: List[_Frame], hstart: Tensor, dsum: Tensor) -> Dict[str, Tensor]:
    """Backward passes 1-3 for every frame, from each frame's dy (float32, laid out like y).

    Fills each frame's du (float32) and ddt; returns dA (K*D, N), dD, dbias (K*D,) and, per
    frame, dB and dC as ``dBC{i}``: float32 (2, channel blocks, B, routes-in-frame-tensor,
    length, N), state-contiguous as the frame's B and C, one partial sum per channel block
    (:func:`relayout` sums them into the public layout)."""
    interpret = triton_interpreting()
    A2 = frames[0].T.A2
    dev = A2.device
    shape = (p.batch, p.K, p.D, p.nseg_stride)
    f32 = dict(device=dev, dtype=torch.float32)
    gloc = torch.zeros(*shape, p.N, **f32)
    gin = torch.zeros_like(gloc)
    dA_part = torch.zeros_like(gloc)
    zoff = torch.zeros(*shape, **f32)
    dD_part = torch.zeros(*shape, **f32)
    dbias_part = torch.zeros(*shape, **f32)
    zscr = torch.empty(p.batch, p.K, p.D, p.length, **f32)
    sz = (zscr.stride(0), zscr.stride(1))
    grads: Dict[str, Tensor] = {}
    for f in frames:
        o, T = f.o, f.T
        lay = _layout(p.D, p.N, False, o.seg_fast, interpret, heavy=_heavy(T, out=False))
        k0, kstep, nk = _route_args(o, 1)
        _k._bwd_local_kernel[_grid(p, o, lay, nk)](
            T.dt, T.A2, T.C, _opt(T, T.bias), _opt(T, T.W), f.dy, gloc,
            *T.sd, *T.sC, *T.sy,
            *_geom_args(p, o), k0, kstep, p.rev_from, T.kdiv,
            **_meta(lay, T, "bwd_local"), N=p.N, SEG_FAST=o.seg_fast, HAS_BIAS=T.bias is not None, SOFTPLUS=p.softplus, R=T.rank,
        )
    _chain(p, frames[0].T, gloc, dsum, gin, flip=1)
    for i, f in enumerate(frames):
        o, T = f.o, f.T
        lay = _layout(p.D, p.N, True, o.seg_fast, interpret)
        n_dblk = -(-p.D // lay.d_blk)
        k_tensor = T.B.shape[1]  # routes held by this frame's B/C tensors
        dBC = (torch.zeros if n_dblk > 1 else torch.empty)(2, n_dblk, p.batch, k_tensor, p.length, p.N, **f32)
        dB_buf, dC_buf = dBC[0], dBC[1]
        sdc = (dB_buf.stride(0), dB_buf.stride(1), dB_buf.stride(2))
        k0, kstep, nk = _route_args(o, 1)
        flags = dict(N=p.N, SEG_FAST=o.seg_fast, HAS_BIAS=T.bias is not None, SOFTPLUS=p.softplus, R=T.rank)
        _k._bwd_fwd_kernel[_grid(p, o, lay, nk)](
            T.u, T.dt, T.A2, T.B, T.C, _opt(T, T.bias), _opt(T, T.W), f.dy, hstart, gin,
            dC_buf, zscr, zoff, dA_part, dD_part,
            *T.su, *T.sd, *T.sB, *T.sC, *T.sy, *sdc, *sz,
            *_geom_args(p, o), k0, kstep, p.rev_from, T.kdiv,
            **_meta(lay, T, "bwd_fwd"), **flags,
        )
        phases = _phases(p, o)
        k0, kstep, nk = _route_args(o, phases)
        _k._bwd_rev_kernel[_grid(p, o, lay, nk)](
            T.u, T.dt, T.A2, T.B, T.C, _opt(T, T.D), _opt(T, T.bias), _opt(T, T.W), f.dy, gin, dsum, zscr, zoff,
            f.du, f.ddt, dB_buf, dA_part, dbias_part,
            *T.su, *T.sd, *T.sB, *T.sC, *T.sy, *sdc, *sz, *(f.sdu or T.sy), *f.sdd,
            *_geom_args(p, o), k0, kstep, p.rev_from, T.kdiv, *_slot_args(p, o),
            **_meta(lay, T, "bwd_rev"), **flags, HAS_D=T.D is not None, PHASES=phases, ACCUM=False,
        )
        grads[f"dBC{i}"] = dBC
    grads["dA"] = dA_part.sum(dim=(0, 3)).reshape(p.K * p.D, p.N)
    grads["dD"] = dD_part.sum(dim=(0, 3)).reshape(-1)
    grads["dbias"] = dbias_part.sum(dim=(0, 3)).reshape(-1)
    return grads


# ----------------------------------------------------------------------------------------
# autograd and public entry points
# ----------------------------------------------------------------------------------------
def _planes(t: Tensor, plane_dims: int, length: int) -> Tensor:
    """``t`` if its leading-per-plane dim holds packed planes of ``length`` elements (the last
    ``plane_dims`` dims row-major, the dim before them ``length`` apart), else a packed copy."""
    expected = 1
    for dim in range(t.dim() - 1, t.dim() - 1 - plane_dims, -1):
        if t.size(dim) > 1 and t.stride(dim) != expected:
            return t.contiguous()
        expected *= t.size(dim)
    ch = t.dim() - 1 - plane_dims
    if t.size(ch) > 1 and t.stride(ch) != length:
        return t.contiguous()
    return t


def _params(A: Tensor, D: Optional[Tensor], bias: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    A2 = (A.detach().float() * LOG2E).contiguous()
    D32 = None if D is None else D.detach().float().contiguous()
    b32 = None if bias is None else bias.detach().float().contiguous()
    return A2, D32, b32


def _check_float(*ts: Tensor) -> None:
    for t in ts:
        if t is not None and t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"the Triton scan takes float32, float16 or bfloat16 tensors, got {t.dtype}")


def _operands_1d(u, delta, A, B, C, D, bias, groups: int) -> _Tensors:
    """B and C (batch, G, N, L) are read state-contiguous: (batch, G, L, N) in memory, copied
    so unless they already are."""
    batch, gd, length = u.shape
    d = gd // groups
    A2, D32, b32 = _params(A, D, bias)
    B_s, C_s = state_major(B.unsqueeze(3), False), state_major(C.unsqueeze(3), False)
    return _Tensors(
        u, delta, A2, B_s, C_s, D32, b32,
        su=(u.stride(0), d * length), sd=(delta.stride(0), d * length),
        sB=(B_s.stride(0), B_s.stride(1)), sC=(C_s.stride(0), C_s.stride(1)),
        sy=(gd * length, d * length),
    )


def _zero_grads(u, delta, A, B, C, D, bias):
    z = torch.zeros_like
    return (z(u), z(delta), z(A), z(B), z(C), None if D is None else z(D), None if bias is None else z(bias), None)


def _param_grads(ctx, g: Dict[str, Tensor], A: Tensor, D: Optional[Tensor], bias: Optional[Tensor]):
    need = ctx.needs_input_grad
    return (
        g["dA"].to(A.dtype) if need[2] else None,
        g["dD"].to(D.dtype) if (D is not None and need[5]) else None,
        g["dbias"].to(bias.dtype) if (bias is not None and need[6]) else None,
    )


def _grad_1d(parts: Tensor, like: Tensor) -> Tensor:
    """dB or dC (batch, G, N, L) like ``like`` from the kernels' partials (blocks, batch, G, N, 1, L)."""
    out = torch.empty_like(like)
    relayout(parts, out.unsqueeze(3))
    return out


class _Scan1D(torch.autograd.Function):
    """Autograd for :func:`selective_scan_triton` (1-D contract): one frame, row-major."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus):  # type: ignore[override]
        _check_float(u, delta, A, B, C, D, delta_bias)
        batch, gd, length = u.shape
        groups, n = B.shape[1], A.shape[1]
        u, delta = _planes(u, 1, length), _planes(delta, 1, length)
        p = Problem(
            batch=batch, K=groups, D=gd // groups, N=n, length=length,
            orients=(Orientation(tuple(range(groups)), outer=1, inner=length, so=0, si=1, seg_fast=False),),
            rev_from=groups, u_shared=False, softplus=bool(delta_softplus),
        )
        p = _finish(p, u.device)
        y = torch.empty(batch, gd, length, device=u.device, dtype=torch.float32)
        hstart = dsum = y
        if length > 0 and batch > 0:
            f = _Frame(p.orients[0], _operands_1d(u, delta, A, B, C, D, delta_bias, groups), y=y)
            hstart, dsum = scan_forward(p, [f])
        ctx.problem = p
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, hstart, dsum)
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        u, delta, A, B, C, D, bias, hstart, dsum = ctx.saved_tensors
        p: Problem = ctx.problem
        if p.length == 0 or p.batch == 0:
            return _zero_grads(u, delta, A, B, C, D, bias)
        T = _operands_1d(u, delta, A, B, C, D, bias, p.K)
        du = torch.empty(u.shape, device=u.device, dtype=torch.float32)
        ddt = torch.empty(delta.shape, device=u.device, dtype=delta.dtype)
        f = _Frame(p.orients[0], T, dy=dy.float().contiguous(), du=du, ddt=ddt, sdd=T.sy)
        g = scan_backward(p, [f], hstart, dsum)
        need = ctx.needs_input_grad
        dB = dC = None
        dBC = grad_planes(g["dBC0"], 1, p.length, False)  # (2, blocks, batch, G, N, 1, L)
        if need[3]:
            dB = _grad_1d(dBC[0], B)
        if need[4]:
            dC = _grad_1d(dBC[1], C)
        dA, dD, dbias = _param_grads(ctx, g, A, D, bias)
        return (
            du.to(u.dtype) if need[0] else None,
            ddt if need[1] else None,
            dA,
            dB,
            dC,
            dD,
            dbias,
            None,
        )


def _forward_2d(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D, bias, softplus: bool, W: Optional[Tensor] = None,
                merge: bool = True):
    """Forward of the fused 2-D op -> (y, problem, hstart, dsum, u, dt), the last two as the
    kernels read them (packed planes). dt is the (B, K, D, H, W) step map, or with ``W``
    (K*D, R) float32 the rank-R step inputs (B, K, R, H, W). ``merge=False``: y is the
    :class:`RouteSums` of the route outputs (no merge pass) unless the map is empty."""
    batch, d, h, w = u.shape
    k, n = dt.shape[1], A.shape[1]
    if k not in (1, 2, 4):
        raise ValueError(f"the fused 2-D scan takes 1, 2 or 4 routes, got {k}")
    L = h * w
    u = _planes(u, 2, L)
    if not isinstance(dt, FrameMaps):
        dt = _planes(dt, 2, L)  # B, C: any strides (see _frames_2d)
    p = _problem_2d(batch, k, d, n, h, w, softplus, u.device)
    y = torch.empty(batch, d, h, w, device=u.device, dtype=torch.float32)
    hstart = dsum = y
    if L > 0 and batch > 0:
        frames = _frames_2d(p, u, dt, A, B, C, D, bias, W)
        for f, (buf, strides) in zip(frames, _slot_buffers(p, frames, y)):
            f.y, f.sy_out = buf, strides
        hstart, dsum = scan_forward(p, frames)
        if merge:
            _merge_slots([f.y for f in frames], y)
        else:
            rows = frames[0].y
            cols = frames[1].y if len(frames) > 1 else rows.new_empty((0, batch, d, h, w))
            return RouteSums(cols, rows), p, hstart, dsum, u, dt
    return y, p, hstart, dsum, u, dt


def _backward_2d(p: Problem, need, dy: Tensor, u, delta, A, B, C, D, bias, hstart, dsum, W: Optional[Tensor] = None):
    """Gradients (du, ddelta, dA, dB, dC, dD, dbias) of the fused 2-D op from dy; ``need``
    flags them in that order (ddelta, (B, K, D, H, W) in delta's dtype, is computed whenever
    anything is). With ``W`` (K*D, R) float32, ``delta`` holds the rank-R step inputs, which
    the sweeps expand as the forward's do."""
    batch, d, h, w = u.shape
    dy = dy.float().contiguous()
    frames = _frames_2d(p, u, delta, A, B, C, D, bias, W)
    rows = frames[0]
    kr = len(rows.o.routes)
    f32 = dict(device=u.device, dtype=torch.float32)
    du = torch.empty(batch, d, h, w, **f32)
    ddt = torch.empty(batch, p.K, d, h, w, device=u.device, dtype=delta.dtype)
    rows.dy = transpose_planes(dy)
    rows.ddt = torch.empty(batch, kr, d, w * h, device=u.device, dtype=delta.dtype)
    rows.sdd = (rows.ddt.stride(0), rows.ddt.stride(1))
    if len(frames) > 1:
        cols = frames[1]
        cols.dy, cols.ddt = dy, ddt[:, 1::2]  # routes 1/3 -> index k // 2 = 0/1
        cols.sdd = (cols.ddt.stride(0), cols.ddt.stride(1))
    for f, (buf, strides) in zip(frames, _slot_buffers(p, frames, du)):
        f.du, f.sdu = buf, strides
    g = scan_backward(p, frames, hstart, dsum)
    _merge_slots([f.du for f in frames], du)
    for j, kk in enumerate(rows.o.routes):  # back from the transposed frame
        transpose_planes(rows.ddt[:, j].view(batch, d, w, h), ddt[:, kk])
    # dB, dC: each frame's state-contiguous partials summed into its routes (0/2, 1/3) of
    # the public (B, K, N, H, W) layout, the rows frame's also transposed back, one pass each
    dB, dC = torch.empty_like(B), torch.empty_like(C)
    for i, f in enumerate(frames):
        dBC = grad_planes(g[f"dBC{i}"], h, w, transpose=i == 0)
        relayout(dBC[0], dB[:, i::2])
        relayout(dBC[1], dC[:, i::2])
    return (
        du.to(u.dtype) if need[0] else None,
        ddt,
        g["dA"].to(A.dtype) if need[2] else None,
        dB if need[3] else None,
        dC if need[4] else None,
        g["dD"].to(D.dtype) if (D is not None and need[5]) else None,
        g["dbias"].to(bias.dtype) if (bias is not None and need[6]) else None,
    )


class _Scan2D(torch.autograd.Function):
    """Autograd for :func:`selective_scan_2d_triton` (fused cross-scan / merge).

    Every route runs with its lanes over adjacent image columns (coalesced loads): routes 1/3
    (column-major) on the maps as they are, routes 0/2 (row-major) on transposed copies of
    u and delta made by a tiled transpose; their outputs are transposed back and added. B and
    C are read state-contiguous by both: (H, W, N) pixels for routes 1/3, (W, H, N) for 0/2."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus):  # type: ignore[override]
        _check_float(u, delta, A, B, C, D, delta_bias)
        y, p, hstart, dsum, u, delta = _forward_2d(u, delta, A, B, C, D, delta_bias, bool(delta_softplus))
        ctx.problem = p
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, hstart, dsum)
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        u, delta, A, B, C, D, bias, hstart, dsum = ctx.saved_tensors
        p: Problem = ctx.problem
        if p.length == 0 or p.batch == 0:
            return _zero_grads(u, delta, A, B, C, D, bias)
        need = ctx.needs_input_grad
        du, ddt, dA, dB, dC, dD, dbias = _backward_2d(p, need, dy, u, delta, A, B, C, D, bias, hstart, dsum)
        return du, ddt if need[1] else None, dA, dB, dC, dD, dbias, None


def _dt_weight_rows(weight: Tensor, dtype: torch.dtype) -> Tensor:
    """dt_proj weights (K, D, R) as the kernels read them: (K*D, R) float32, rounded to the
    step inputs' dtype first (as :func:`expand_delta` casts them)."""
    k, d, r = weight.shape
    return weight.detach().to(dtype).float().reshape(k * d, r).contiguous()


class _Scan2DLowRank(torch.autograd.Function):
    """Autograd for :func:`selective_scan_2d_lowrank_triton`: the sweeps, forward and
    backward, expand the rank-R step inputs per channel themselves (no (B, K, D, H, W) step
    map is written, read, transposed or saved); the backward sweeps write ddelta, which the
    gradient of expand_delta's matmul maps back to the step inputs and dt_proj weights."""

    @staticmethod
    def forward(ctx, u, dts, weight, A, B, C, D, delta_bias, delta_softplus):  # type: ignore[override]
        _check_float(u, dts, weight, A, B, C, D, delta_bias)
        y, p, hstart, dsum, u, dts = _forward_2d(u, dts, A, B, C, D, delta_bias, bool(delta_softplus), _dt_weight_rows(weight, dts.dtype))
        ctx.problem = p
        ctx.save_for_backward(u, dts, weight, A, B, C, D, delta_bias, hstart, dsum)
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        u, dts, weight, A, B, C, D, bias, hstart, dsum = ctx.saved_tensors
        p: Problem = ctx.problem
        need = ctx.needs_input_grad
        if p.length == 0 or p.batch == 0:
            z = _zero_grads(u, dts, A, B, C, D, bias)
            return z[0], z[1], torch.zeros_like(weight), *z[2:]
        scan_need = (need[0], True, *need[3:8])
        du, ddelta, dA, dB, dC, dD, dbias = _backward_2d(p, scan_need, dy, u, dts, A, B, C, D, bias, hstart, dsum, _dt_weight_rows(weight, dts.dtype))
        # the gradient of expand_delta's matmul delta[b, k] = W[k] @ dts[b, k] (per (b, k))
        b, k, r = dts.shape[:3]
        d = weight.shape[1]
        g = ddelta.reshape(b * k, d, -1)
        d_dts = d_w = None
        if need[1]:
            w = weight.to(dts.dtype).expand(b, -1, -1, -1).reshape(b * k, d, r)
            d_dts = torch.bmm(w.transpose(1, 2), g).view(dts.shape)
        if need[2]:
            d_w = torch.bmm(g, dts.reshape(b * k, r, -1).transpose(1, 2)).view(b, k, d, r).sum(0).to(weight.dtype)
        return du, d_dts, d_w, dA, dB, dC, dD, dbias, None


def _out_slots(p: Problem, o: Orientation) -> int:
    """Output slots of a frame of the 2-D op: one per route unless its routes run as phases."""
    return 1 if _phases(p, o) > 1 else len(o.routes)


def _slot_buffers(p: Problem, frames: List[_Frame], out: Tensor) -> List[Tuple[Tensor, Tuple[int, int]]]:
    """Float32 output buffers ``(slots, B, D, *plane)`` of the 2-D op's frames (y or du) with
    their (batch, slot) strides: the rows frame's planes are transposed (W x H); the columns
    frame writes straight into ``out`` (B, D, H, W) when it has a single slot."""
    batch, d, h, w = out.shape
    bufs = []
    for i, f in enumerate(frames):
        slots = _out_slots(p, f.o)
        if i == 1 and slots == 1:
            buf = out.unsqueeze(0)
        else:
            buf = torch.empty(slots, batch, d, *((w, h) if i == 0 else (h, w)), device=out.device, dtype=torch.float32)
        bufs.append((buf, (d * h * w, batch * d * h * w if slots > 1 else 0)))
    return bufs


def _merge_slots(bufs: List[Tensor], out: Tensor) -> None:
    """out = (columns slots summed) + (rows slots summed and transposed back), in this fixed
    order (deterministic), in one pass (``_merge_kernel``; before, three passes: add, add,
    transpose-accumulate); ``bufs`` from :func:`_slot_buffers`."""
    batch, d, h, w = out.shape
    if out.numel() == 0:
        return
    rows = bufs[0]
    cols = bufs[1] if len(bufs) > 1 else rows[:0]
    bh, bw = (16, 16) if triton_interpreting() else (32, 64)
    bh, bw = min(bh, _pow2(h)), min(bw, _pow2(w))
    _k._merge_kernel[(-(-h // bh), -(-w // bw), batch * d)](
        cols if cols.shape[0] else out, rows, out,
        cols.stride(0) if cols.shape[0] > 1 else 0, rows.stride(0) if rows.shape[0] > 1 else 0, h, w,
        NC=cols.shape[0], NR=rows.shape[0], BH=bh, BW=bw, num_warps=4,
    )


def _problem_2d(batch: int, k: int, d: int, n: int, h: int, w: int, softplus: bool, device: torch.device) -> Problem:
    """Rows frame first (routes 0/2 on the transposed W x H maps, so that its lanes, adjacent
    image rows, read adjacent addresses), then columns (1/3).

    Reading the H x W maps in place instead (each lane walking along its row, no transposes)
    was measured 1.4x slower forward and 1.75x slower backward (H100, 640x480, 2026-11-22):
    a warp's loads then touch one cache line per lane."""
    rows = Orientation(tuple(r for r in (0, 2) if r < k), outer=h, inner=w, so=1, si=h, seg_fast=True)
    cols = Orientation(tuple(r for r in (1, 3) if r < k), outer=w, inner=h, so=1, si=w, seg_fast=True)
    p = Problem(
        batch=batch, K=k, D=d, N=n, length=h * w, orients=(rows, cols) if k >= 2 else (rows,),
        rev_from=2 if k == 4 else k, u_shared=True, softplus=softplus,
    )
    return _finish(p, device)


def _frames_2d(p: Problem, u, delta, A, B, C, D, bias, W: Optional[Tensor] = None) -> List[_Frame]:
    """Operands of the two frames. Both index their route-specific tensors with k // 2 (routes
    0/2 and 1/3 -> 0/1): the rows frame gets transposed copies of u and delta (routes 0/2),
    the columns frame reads delta[:, 1::2] in place. B and C are read state-contiguous:
    routes 0/2 as (W, H, N) pixels, routes 1/3 as (H, W, N), each a single-pass copy
    (:func:`state_major`) unless B / C already have that layout. With ``W`` (K*D, R) float32,
    ``delta`` holds the rank-R step inputs (B, K, R, H, W) instead (transposed the same way
    for routes 0/2: R planes per route instead of D). delta, B and C may be
    :class:`FrameMaps`: each frame is read in place where laid out as above."""
    batch, d, h, w = u.shape
    L = h * w
    A2, D32, b32 = _params(A, D, bias)
    rows_o = p.orients[0]
    kr = len(rows_o.routes)
    u_t = transpose_planes(u)  # (B, D, W, H)
    if isinstance(delta, FrameMaps):
        dt_t = _planes(delta.rows.transpose(3, 4), 2, L)  # (B, kr, P, W, H) packed planes
        dt_c = _planes(delta.cols, 2, L)
    else:
        dt_t = torch.empty(batch, kr, delta.shape[2], w, h, device=u.device, dtype=delta.dtype)
        for j, kk in enumerate(rows_o.routes):
            transpose_planes(delta[:, kk], dt_t[:, j])
        dt_c = delta[:, 1::2]
    B_r, C_r = state_major(_frame(B, 0), True), state_major(_frame(C, 0), True)
    rows = _Frame(rows_o, _Tensors(
        u_t, dt_t, A2, B_r, C_r, D32, b32,
        su=(u_t.stride(0), 0), sd=(dt_t.stride(0), dt_t.stride(1)),
        sB=(B_r.stride(0), B_r.stride(1)), sC=(C_r.stride(0), C_r.stride(1)),
        sy=(d * L, 0), kdiv=2, W=W,
    ))
    frames = [rows]
    if p.K >= 2:
        B_c, C_c = state_major(_frame(B, 1), False), state_major(_frame(C, 1), False)
        frames.append(_Frame(p.orients[1], _Tensors(
            u, dt_c, A2, B_c, C_c, D32, b32,
            su=(u.stride(0), 0), sd=(dt_c.stride(0), dt_c.stride(1)),
            sB=(B_c.stride(0), B_c.stride(1)), sC=(C_c.stride(0), C_c.stride(1)),
            sy=(d * L, 0), kdiv=2, W=W,
        )))
    return frames


def _frame(x, i: int) -> Tensor:
    """Routes i, i + 2 of a (B, K, P, H, W) map or :class:`FrameMaps` (0: rows, 1: columns)."""
    if isinstance(x, FrameMaps):
        return x.rows if i == 0 else x.cols
    return x[:, i::2]


def selective_scan_triton(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
) -> Tensor:
    """Selective scan, 1-D contract, Triton kernels with autograd.

    u, delta: (B, G*D, L); A: (G*D, N); B, C: (B, G, N, L); D, delta_bias: (G*D,).
    delta <- softplus(delta + delta_bias); h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t;
    y_t = C_t . h_t + D u_t. Returns y (B, G*D, L) float32. Inputs fp32/fp16/bf16.
    """
    return _Scan1D.apply(u, delta, A, B, C, D, delta_bias, delta_softplus)


def selective_scan_2d_triton(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
) -> Tensor:
    """CrossScan -> selective scan -> CrossMerge in fused Triton kernels, with autograd.

    u: (B, D, H, W); delta: (B, K, D, H, W); A: (K*D, N); B, C: (B, K, N, H, W);
    D, delta_bias: (K*D,); K in {1, 2, 4} (route order of :mod:`diffmf.ops.cross_scan`).
    Returns the merged output (B, D, H, W) float32. Inputs fp32/fp16/bf16.
    """
    return _Scan2D.apply(u, delta, A, B, C, D, delta_bias, delta_softplus)


def selective_scan_2d_lowrank_triton(
    u: Tensor,
    dts: Tensor,
    dt_weight: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = True,
    merge: bool = True,
):
    """:func:`selective_scan_2d_triton` with delta = ``expand_delta(dts, dt_weight)`` computed
    inside the sweeps (forward and backward), with autograd.

    u: (B, D, H, W); dts: (B, K, R, H, W) rank-R step inputs; dt_weight: (K, D, R); the rest as
    in :func:`selective_scan_2d_triton`. Each channel's raw step sum_r W[k, d, r] dts[k, r] is
    formed in float32 and rounded to dts' dtype, as the matmul of ``expand_delta`` does.
    Ranks above :data:`kernels.MAX_RANK` (4) expand the map first and run
    :func:`selective_scan_2d_triton`. dts, B and C may be :class:`FrameMaps` (read in place:
    no relayout copies); with a gradient to compute they are made dense first.
    Returns (B, D, H, W) float32; with ``merge=False`` and no gradient to compute, the
    :class:`RouteSums` of the route outputs instead (no merge pass; for
    :func:`diffmf.ops.layernorm.merged_layer_norm`)."""
    frames = [isinstance(t, FrameMaps) for t in (dts, B, C)]
    fields = [f for t in (dts, B, C) if isinstance(t, FrameMaps) for f in t]
    others = (u, dt_weight, A, D, delta_bias, *(t for t in (dts, B, C) if not isinstance(t, FrameMaps)))
    grad = needs_grad(*others, *fields)
    if not grad and len(dts.shape) == 5 and dts.shape[2] <= _k.MAX_RANK:  # inference: no autograd node
        _check_float(*others, *fields)
        w_rows = _dt_weight_rows(dt_weight, dts.dtype)
        return _forward_2d(u, dts, A, B, C, D, delta_bias, bool(delta_softplus), w_rows, merge=merge)[0]
    if any(frames):
        dts, B, C = (t.dense() if f else t for t, f in zip((dts, B, C), frames))
    if dts.dim() == 5 and dts.shape[2] > _k.MAX_RANK:
        from diffmf.ops.selective_scan import expand_delta

        return selective_scan_2d_triton(u, expand_delta(dts, dt_weight), A, B, C, D, delta_bias, delta_softplus)
    return _Scan2DLowRank.apply(u, dts, dt_weight, A, B, C, D, delta_bias, delta_softplus)
