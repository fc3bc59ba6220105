"""Triton kernels of the segmented selective scan (forward and backward).

Recurrence (per channel d and state n, one route):

    delta_t = softplus(dt_t + bias)        a_t = exp(delta_t A)        b_t = delta_t u_t B_t
    h_t = a_t h_{t-1} + b_t                y_t = C_t . h_t + D u_t

Work decomposition
------------------
A route visits an ``OUTER x INNER`` grid line by line (rows of the image for the row-major
routes, columns for the column-major ones; ``OUTER = 1`` for the 1-D op). Each line is cut
into ``P`` pieces of ``S`` steps: a *segment* ``s = p * OUTER + o``. The memory position of
step ``i`` of line ``o`` is ``pos = o * so + i * si``, so every route reads its operands
straight from the 2-D map in its own order (no cross-scanned copies); reversed routes walk
the same segments backwards. Per-channel tensors (u, delta, y, du, ddelta) are *planar*:
channel ``d`` at ``d * PLANE + pos``. B and C (and dB, dC) are *state-contiguous*: state
``n`` of the pixel at ``pos`` is at ``pos * N + n``, so a lane reads its NPT adjacent states
with 128-bit vector loads (8 bf16 or 4 fp32 states each; the wrappers make these copies in
one pass, ``_relayout_kernel``). The scan runs in three launches:

1. ``_fwd_local_kernel``: each segment from a zero state -> its end state ``hloc`` and its
   summed step ``dsum`` (so the segment's decay is ``exp(A * dsum)``).
2. ``_chain_kernel``: the exclusive linear scan over segments in route order -> the true
   start state ``hstart`` of every segment.
3. ``_fwd_out_kernel``: each segment again from ``hstart`` -> y. By default every route
   writes its own output slot and the wrapper sums the slots in a fixed order; optionally
   (``PHASES = 2``) the two routes of one orientation run in one program one after the other
   (forward, then reversed, which covers the same pixels) with a read-add-write. Either way
   the cross-merge is deterministic, no atomics.

Every sweep keeps the state in registers and walks its segment sequentially. A program owns
``LANES = SG * CG * NS`` lanes (threads): ``SG`` segments x ``CG`` channel groups x ``NS``
state groups; each lane holds ``DPT`` channels x ``NCH * NPT`` states. Tensors are 6-D
``(NCH, DPT, NPT, X, Y, Z)`` where ``(X, Y, Z)`` are the lane axes: ``(SG, CG, NS)`` for the
row-major routes (channel groups adjacent: B and C loads are broadcasts) or ``(CG, NS, SG)``
for the column-major ones (adjacent columns adjacent: coalesced loads). With padding states
(``NCH * NPT * NS > N``) the state index is clamped for the loads (correct, but no longer
contiguous: scalar loads); otherwise it is left unclamped so that the compiler sees the
contiguity.

Thread layout. Triton, not the kernel, maps tensor elements to threads: each load and store
gets a layout from its pointers' contiguity (the most contiguous axis first, vectorised up
to 128 bits), ties broken by axis order, and the loop's arithmetic follows the memory
operations. Two sets of constexprs, chosen per sweep by the wrapper (``scan._designed``):

* plain (``NCH = 1, LF = OPAQUE = False``): whatever Triton makes of the axis order above. On
  Triton 3.6 (PyTorch 2.11's) that is not the design: a warp's lanes run over channel groups
  and the per-channel values (delta, delta u, y) take another layout than the states, so every
  step moves them through shared memory (6 barriers per step in ``_fwd_out``);
* designed: the lane axes get the threads and a lane's registers hold its channels and
  states. ``LANES_FIRST`` reverses the axis order, ``(Z, Y, X, NPT, DPT, NCH)``, for Triton
  releases that give the threads to the first of equally contiguous axes (up to 3.6; later
  ones take the last). A lane's states are ``NCH`` chunks of ``NPT`` (state
  ``n = ns * NCH * NPT + ch * NPT + j``), one 128-bit load of B or C each, on their own axis so
  that they stay in the lane's registers (one 256-bit run of states would be split over two
  threads). The forward-type sweeps also hide their line and step strides (``OPAQUE``: times
  the unspecialised ``one``): with ``so == 1`` known, Triton vectorises the per-channel loads
  over adjacent segments, which gives them another layout than the states' again. The
  forward-type loops then have no shared-memory traffic at all (sm_90 SASS,
  ``benchmarks/sass_loads.py``).

Both give the same results up to the order of float additions; the chunks are summed in the
order Triton's shuffles used when a lane's states spanned several threads.

Load schedule of the step loop (constexpr ``PREFETCH``): 0 reads each step's operands at the
step; 1 (early) issues step t + 1's loads before step t computes (twice the operand
registers); 2, in the output pass (late), issues them once step t is done with the registers
they reuse, and in the local passes reads only the step input one step ahead. The backward
sweeps know 0 and 1 (2 runs as 1). The schedule changes no result bit.

Backward (recompute from the saved segment start states, no per-step states stored):
with ``c_t = C_t dy_t``, the adjoint ``g_t = c_t + a_{t+1} g_{t+1}`` and ``gh_t = a_t g_t``,

    du_t = delta_t sum_n g_t B_t + D dy_t           dB_t = sum_d g_t delta_t u_t
    dC_t = sum_d h_t dy_t                           dD = sum_t dy_t u_t
    ddelta_t = u_t sum_n g_t B_t + sum_n A_n x_t    dA = sum_t delta_t x_t,  x_t = gh_t h_{t-1}

``x_t`` needs the forward state and the adjoint at the same step. It telescopes:
``x_t - x_{t+1} = c_t (a_t h_{t-1}) - b_t gh_{t+1}``, so inside a segment [s, e]
``x_t = x_{e+1} + sum_{j=t..e} zh_j - sum_{j=t..e} zg_j`` with ``zh_j = c_j a_j h_{j-1}``
(a forward quantity) and ``zg_j = b_j gh_{j+1}`` (a backward one). Hence:

4. ``_bwd_local_kernel``: each segment backwards from a zero adjoint -> ``gloc``.
5. ``_chain_kernel`` (reversed) -> the adjoint ``gin`` entering each segment from its end.
6. ``_bwd_fwd_kernel``: forward sweep from ``hstart``: dC, dD, the prefix sums of
   ``sum_n A_n zh`` (to a scratch row per channel), ``sum_j zh_j dsum_{<=j}`` for dA, and the
   boundary term ``x_{e+1} = gin * h_e``.
7. ``_bwd_rev_kernel``: backward sweep from ``gin``: du (merged like y), ddelta, dB, dbias,
   and the backward half of dA.

All state, exponentials and accumulators are float32; inputs may be fp32, fp16 or bf16.
Reductions are in a fixed order: results are bitwise reproducible run to run.
"""
from __future__ import annotations

import inspect

import triton
import triton.language as tl

LN2: tl.constexpr = tl.constexpr(0.6931471805599453)

LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)


# Integer arguments that only pick routes/channels: never specialised (Triton otherwise
# compiles one kernel per "== 1" / "divisible by 16" pattern of them). Sizes, strides and
# segment geometry stay specialised: their divisibility lets Triton software-pipeline the
# sweeps' loads (2.3x faster local pass on an H100, measured 2026-11-22). That holds for the
# line/segment counts too: leaving OUTER, INNER, NSEG and NSEG_STRIDE unspecialised (fewer
# kernels per image size) cost the vectorised u/delta loads and y stores (sm_90 SASS,
# benchmarks/sass_loads.py) and made the 640x480 forward 2.76 -> 3.56 ms, backward 7.3 ->
# 10.2 ms (H100, 2026-11-22).
_ROUTE_ARGS = frozenset({"D", "K", "P", "k0", "kstep", "rev_from", "kdiv", "flip", "y_k0", "y_kdiv", "one"})
# ``one`` (always 1) is unspecialised on purpose: multiplied into the line and step strides
# (constexpr OPAQUE) it hides their values from Triton, see the module docstring.


def unspecialised_args(fn, all_ints: bool = False) -> list:
    """Names of ``fn``'s integer arguments that :func:`_jit` leaves unspecialised: the
    route-selecting ones (every integer with ``all_ints``); pointers and constexprs never."""
    return [
        n for n, prm in inspect.signature(fn).parameters.items()
        if not n.endswith("_ptr") and prm.annotation is inspect.Parameter.empty and (all_ints or n in _ROUTE_ARGS)
    ]


def _jit(fn=None, *, all_ints: bool = False):
    """``triton.jit`` with the route-selecting integers (or, with ``all_ints``, every integer
    argument) left unspecialised, so fewer kernels are compiled per image size."""
    if fn is None:
        return lambda f: _jit(f, all_ints=all_ints)
    names = unspecialised_args(fn, all_ints)
    kernel = triton.jit(fn, do_not_specialize=names)
    kernel.unspecialised = tuple(names)  # also under the interpreter, which keeps no such list
    return kernel


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------
@triton.jit
def _softplus(x):
    """torch.nn.functional.softplus (threshold 20) in float32, branch-free:
    max(x, 0) + log1p(z), z = e^-|x|, with log1p(z) = 2 atanh(s), s = z / (2 + z) <= 1/3,
    from its odd series (relative error < 2e-7 over all x; one approximate reciprocal)."""
    z = tl.exp2(tl.abs(x) * -LOG2E)
    s = tl.fdiv(z, 2.0 + z, ieee_rounding=False)
    s2 = s * s
    lp = 2.0 * s * (1.0 + s2 * (0.33333334 + s2 * (0.2 + s2 * (0.14285715 + s2 * (0.11111111 + s2 * 0.09090909)))))
    return tl.where(x > 20.0, x, tl.maximum(x, 0.0) + lp)


@triton.jit
def _softplus_grad(x):
    """d softplus / dx = sigmoid(x); 1 beyond the threshold (as torch)."""
    z = tl.exp2(tl.abs(x) * -LOG2E)
    r = tl.fdiv(1.0, 1.0 + z, ieee_rounding=False)
    return tl.where(x > 20.0, 1.0, tl.where(x >= 0.0, r, z * r))


@triton.jit
def _lin_combine(a1, x1, a2, x2):
    """Compose two steps of h -> a h + x (first then second)."""
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _geometry(
    pid_l,
    D,
    NSEG,
    OUTER,
    N: tl.constexpr,
    DPT: tl.constexpr,
    NPT: tl.constexpr,
    SG: tl.constexpr,
    CG: tl.constexpr,
    NS: tl.constexpr,
    SEG_FAST: tl.constexpr,
    NCH: tl.constexpr,
    LANES_FIRST: tl.constexpr,
):
    """Lane indices of program ``pid_l`` as 6-D tensors (NCH, DPT, NPT, X, Y, Z), or in the
    reverse axis order (Z, Y, X, NPT, DPT, NCH) with ``LANES_FIRST`` (module docstring).

    Returns d (channel: DPT and the lane axes), dc (d clamped to a valid channel, for unmasked
    loads), n (state: NCH, NPT and NS), nc (clamped), s (segment, lane axes), s_ok, o (line),
    p (piece), cg and ns (the lane's channel group / state group) and db (channel block)."""
    D_BLK: tl.constexpr = DPT * CG
    n_dblk = tl.cdiv(D, D_BLK)
    db = pid_l % n_dblk
    sb = pid_l // n_dblk
    if LANES_FIRST:  # axes (Z, Y, X, NPT, DPT, NCH)
        ch = tl.arange(0, NCH)[None, None, None, None, None, :]
        i = tl.arange(0, DPT)[None, None, None, None, :, None]
        j = tl.arange(0, NPT)[None, None, None, :, None, None]
        if SEG_FAST:
            zl = tl.zeros((SG, NS, CG, 1, 1, 1), tl.int32)
            sg = tl.arange(0, SG)[:, None, None, None, None, None] + zl
            ns = tl.arange(0, NS)[None, :, None, None, None, None] + zl
            cg = tl.arange(0, CG)[None, None, :, None, None, None] + zl
        else:
            zl = tl.zeros((NS, CG, SG, 1, 1, 1), tl.int32)
            ns = tl.arange(0, NS)[:, None, None, None, None, None] + zl
            cg = tl.arange(0, CG)[None, :, None, None, None, None] + zl
            sg = tl.arange(0, SG)[None, None, :, None, None, None] + zl
    else:  # axes (NCH, DPT, NPT, X, Y, Z)
        ch = tl.arange(0, NCH)[:, None, None, None, None, None]
        i = tl.arange(0, DPT)[None, :, None, None, None, None]
        j = tl.arange(0, NPT)[None, None, :, None, None, None]
        if SEG_FAST:
            zl = tl.zeros((1, 1, 1, CG, NS, SG), tl.int32)
            cg = tl.arange(0, CG)[None, None, None, :, None, None] + zl
            ns = tl.arange(0, NS)[None, None, None, None, :, None] + zl
            sg = tl.arange(0, SG)[None, None, None, None, None, :] + zl
        else:
            zl = tl.zeros((1, 1, 1, SG, CG, NS), tl.int32)
            sg = tl.arange(0, SG)[None, None, None, :, None, None] + zl
            cg = tl.arange(0, CG)[None, None, None, None, :, None] + zl
            ns = tl.arange(0, NS)[None, None, None, None, None, :] + zl
    d = db * D_BLK + cg * DPT + i
    dc = tl.minimum(d, D - 1)
    n = ns * (NCH * NPT) + ch * NPT + j
    if NCH * NPT * NS > N:  # padding states: clamped to a valid state (loads need no mask)
        nc = tl.minimum(n, N - 1)
    else:  # unclamped: the compiler sees NPT contiguous states (vector loads of B and C)
        nc = n
    s = sb * SG + sg
    s_ok = s < NSEG
    o = s % OUTER
    p = s // OUTER
    return d, dc, n, nc, s, s_ok, o, p, cg, ns, db


@triton.jit
def _sum_states(x, SEG_FAST: tl.constexpr, NCH: tl.constexpr, LANES_FIRST: tl.constexpr):
    """Sum over the states of a lane tensor: each chunk in-thread (axis NPT), then the chunks,
    then the state groups.

    The chunks are added in the order of a butterfly over NCH lanes, ``c0 + c1`` for two and
    ``(c0 + c2) + (c1 + c3)`` for four, which is how the sum ran when Triton spread a lane's
    chunks over NCH threads (its shuffles exchange lanes 2 apart, then 1): the same bits as
    without chunks. (-0.0 is the exact identity of the float add, so the masked-out terms
    fold away at compile time.)"""
    AX_NPT: tl.constexpr = 3 if LANES_FIRST else 2
    AX_NCH: tl.constexpr = 5 if LANES_FIRST else 0
    if SEG_FAST:
        AX_NS: tl.constexpr = 1 if LANES_FIRST else 4
    else:
        AX_NS: tl.constexpr = 0 if LANES_FIRST else 5
    x = tl.sum(x, axis=AX_NPT, keep_dims=True)
    if NCH == 4:
        if LANES_FIRST:
            ch = tl.arange(0, NCH)[None, None, None, None, None, :]
        else:
            ch = tl.arange(0, NCH)[:, None, None, None, None, None]
        even = tl.sum(tl.where(ch % 2 == 0, x, -0.0), axis=AX_NCH, keep_dims=True)
        x = even + tl.sum(tl.where(ch % 2 == 1, x, -0.0), axis=AX_NCH, keep_dims=True)
    else:
        tl.static_assert(NCH <= 2, "1, 2 or 4 state chunks per lane")
        x = tl.sum(x, axis=AX_NCH, keep_dims=True)
    return tl.sum(x, axis=AX_NS, keep_dims=True)


@triton.jit
def _sum_channels(x, SEG_FAST: tl.constexpr, LANES_FIRST: tl.constexpr):
    """Sum over the channels of a lane tensor (axis DPT in-thread, then the channel groups)."""
    AX_DPT: tl.constexpr = 4 if LANES_FIRST else 1
    if SEG_FAST:
        AX_CG: tl.constexpr = 2 if LANES_FIRST else 3
    else:
        AX_CG: tl.constexpr = 1 if LANES_FIRST else 4
    x = tl.sum(x, axis=AX_DPT, keep_dims=True)
    return tl.sum(x, axis=AX_CG, keep_dims=True)


@triton.jit
def _states_only(x, n_ok, N: tl.constexpr, NP: tl.constexpr):
    """x as float32, zeroed on the padding states n >= N (their h then stays 0)."""
    x = x.to(tl.float32)
    if NP > N:
        x = tl.where(n_ok, x, 0.0)
    return x


@triton.jit
def _step(t, p, o, rev, S, INNER, so, si, s_ok):
    """Memory position of step t of each lane's segment (reversed if rev) and its validity.

    Invalid steps (past the end of a ragged line, or of a padding segment) get a clamped,
    valid position so that loads need no mask; their delta is zeroed instead (h unchanged)."""
    i = p * S + t + rev * (S - 1 - 2 * t)
    ok = s_ok & (i < INNER) & (i >= 0)
    i = tl.minimum(tl.maximum(i, 0), INNER - 1)
    return o * so + i * si, ok


@triton.jit
def _delta(xr, m, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Raw step xr -> (x = xr + bias, delta = softplus(x)) in float32; delta is 0 where not m."""
    x = xr.to(tl.float32)
    if HAS_BIAS:
        x = x + bias
    if SOFTPLUS:
        dl = _softplus(x)
    else:
        dl = x
    return x, tl.where(m, dl, 0.0)


MAX_RANK = 4  # rank-R step inputs the sweeps expand themselves (R <= MAX_RANK)


@triton.jit
def _load_dt(dt_b, W0, W1, W2, W3, co, pos, PLANE, R: tl.constexpr):
    """The raw step of each lane channel at ``pos`` (the dt tensor's values; float32 when R > 0).

    R = 0: read from the per-channel planes (``co + pos``). 0 < R <= 4: the planes hold the
    route's rank-R step inputs (VMamba's dt_proj input, R planes ``PLANE`` apart, one load per
    lane each, shared by its channels) and W0..W3 the lane channels' dt_proj weights:
    raw = sum_r W_r dts_r in float32, rounded to the dt dtype as
    :func:`diffmf.ops.selective_scan.expand_delta` (a matmul in that dtype with float32
    accumulation) rounds its output; so the (K, D, H, W) step map is never written or read.
    (Each weight is its own tensor of the lane shape: an extra rank axis would give the
    sweep's tensors another layout and cost shared-memory conversions every step.)"""
    if R == 0:
        x = tl.load(dt_b + (co + pos))
    else:
        p0 = co * 0 + pos  # the lane channels' shape (same address for each)
        x = W0 * tl.load(dt_b + p0).to(tl.float32)
        if R > 1:
            x += W1 * tl.load(dt_b + (PLANE + p0)).to(tl.float32)
        if R > 2:
            x += W2 * tl.load(dt_b + (2 * PLANE + p0)).to(tl.float32)
        if R > 3:
            x += W3 * tl.load(dt_b + (3 * PLANE + p0)).to(tl.float32)
        if dt_b.dtype.element_ty == tl.bfloat16:
            # round to nearest even on the bits (finite values): the same on the GPU and in
            # the interpreter, whose float32 -> bfloat16 cast truncates
            bits = x.to(tl.uint32, bitcast=True)
            bits = (bits + (0x7FFF + ((bits >> 16) & 1))) & 0xFFFF0000
            x = bits.to(tl.float32, bitcast=True)
        elif dt_b.dtype.element_ty == tl.float16:
            x = x.to(tl.float16).to(tl.float32)
    return x


@triton.jit
def _dt_rows(W_ptr, kd, R: tl.constexpr):
    """dt_proj weights W[k*D + d, r] of the lane channels, r < R, as float32 tensors of the
    lane shape (0.0 for r >= R)."""
    w0 = 0.0
    w1 = 0.0
    w2 = 0.0
    w3 = 0.0
    if R > 0:
        w0 = tl.load(W_ptr + kd * R)
    if R > 1:
        w1 = tl.load(W_ptr + kd * R + 1)
    if R > 2:
        w2 = tl.load(W_ptr + kd * R + 2)
    if R > 3:
        w3 = tl.load(W_ptr + kd * R + 3)
    return w0, w1, w2, w3


# --------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------
@_jit
def _fwd_local_kernel(
    u_ptr, dt_ptr, A2_ptr, B_ptr, bias_ptr, W_ptr, hloc_ptr, dsum_ptr,
    su_b, su_k, sd_b, sd_k, sB_b, sB_k,
    PLANE, D, K, OUTER, INNER, S, NSEG, NSEG_STRIDE, so, si, k0, kstep, rev_from, kdiv, one,
    N: tl.constexpr, DPT: tl.constexpr, NPT: tl.constexpr, SG: tl.constexpr, CG: tl.constexpr, NS: tl.constexpr,
    SEG_FAST: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, PREFETCH: tl.constexpr, STAGES: tl.constexpr = 1,
    R: tl.constexpr = 0, NCH: tl.constexpr = 1, LF: tl.constexpr = False, OPAQUE: tl.constexpr = False,
):
    """Pass 1: each segment from h = 0 -> hloc[b,k,d,s,:] = h_end, dsum[b,k,d,s] = sum delta.
    R > 0: dt holds rank-R step inputs, expanded per channel with W (see :func:`_load_dt`)."""
    pid_l = tl.program_id(0)
    if OPAQUE:  # the strides' values hidden from Triton (module docstring)
        so = so * one
        si = si * one
    k = k0 + tl.program_id(1) * kstep
    b = tl.program_id(2).to(tl.int64)
    rev = (k >= rev_from).to(tl.int32)
    d, dc, n, nc, s, s_ok, o, p, cg, ns, db = _geometry(pid_l, D, NSEG, OUTER, N, DPT, NPT, SG, CG, NS, SEG_FAST, NCH, LF)
    d_ok = (d < D) & s_ok
    n_ok = n < N
    kd = k * D + dc
    co = dc * PLANE  # channel plane offset (all per-channel tensors are packed planes)
    A2 = tl.load(A2_ptr + kd * N + nc)
    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr + kd)
    W0, W1, W2, W3 = _dt_rows(W_ptr, kd, R)
    u_b = u_ptr + (b * su_b + k * su_k)
    dt_b = dt_ptr + (b * sd_b + (k // kdiv) * sd_k)
    B_b = B_ptr + (b * sB_b + (k // kdiv) * sB_k)
    h = tl.where(n_ok, A2 * 0.0, 0.0)
    dsum = tl.where(d_ok, 0.0, 0.0)
    pos_n, ok_n = _step(0, p, o, rev, S, INNER, so, si, s_ok)
    xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
    uu_n = tl.load(u_b + (co + pos_n))
    bb_n = tl.load(B_b + (pos_n * N + nc))
    for t in tl.range(0, S, num_stages=STAGES):
        if PREFETCH == 2:  # only the step input ahead (few registers); u and B read at the step
            pos, ok, xr = pos_n, ok_n, xr_n
            pos_n, ok_n = _step(t + 1, p, o, rev, S, INNER, so, si, s_ok)
            xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
            uu = tl.load(u_b + (co + pos))
            bb = tl.load(B_b + (pos * N + nc))
        elif PREFETCH:
            ok, xr, uu, bb = ok_n, xr_n, uu_n, bb_n
            pos_n, ok_n = _step(t + 1, p, o, rev, S, INNER, so, si, s_ok)
            xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
            uu_n = tl.load(u_b + (co + pos_n))
            bb_n = tl.load(B_b + (pos_n * N + nc))
        else:
            pos, ok = _step(t, p, o, rev, S, INNER, so, si, s_ok)
            xr = _load_dt(dt_b, W0, W1, W2, W3, co, pos, PLANE, R)
            uu = tl.load(u_b + (co + pos))
            bb = tl.load(B_b + (pos * N + nc))
        _, dl = _delta(xr, d_ok & ok, bias, HAS_BIAS, SOFTPLUS)
        h = tl.exp2(dl * A2) * h + (dl * uu.to(tl.float32)) * _states_only(bb, n_ok, N, NCH * NPT * NS)
        dsum += dl
    seg_row = (b * K + k) * D + d
    tl.store(hloc_ptr + (seg_row * NSEG_STRIDE + s) * N + n, h, mask=d_ok & n_ok)
    # with OPAQUE, dsum is stored from the state layout (as hloc): stored from its own, it would
    # take the layout of a store that vectorises over adjacent segments, and so would the
    # whole loop's per-channel arithmetic (shared-memory conversions every step)
    if OPAQUE:
        tl.store(dsum_ptr + (seg_row * NSEG_STRIDE + s) + n * 0, tl.where(n == 0, dsum, 0.0), mask=d_ok & (n == 0))
    else:
        tl.store(dsum_ptr + seg_row * NSEG_STRIDE + s, dsum, mask=d_ok & (ns == 0))


@_jit(all_ints=True)
def _chain_kernel(
    loc_ptr, dsum_ptr, A2_ptr, out_ptr,
    D, K, NSEG_STRIDE, rev_from, flip, OUTER0, P0, NSEG0, OUTER1, P1, NSEG1,
    N: tl.constexpr, NORI: tl.constexpr, CD: tl.constexpr, NB: tl.constexpr, CT: tl.constexpr,
):
    """Exclusive linear scan over the segments of a route, in route order (flip=0) or the
    reverse (flip=1, for the adjoint): out[c] = state entering chain position c, where
    chain position c applies h -> exp(A dsum_c) h + loc_c. Tiles of CT segments are scanned
    with tl.associative_scan; the running state is carried between tiles.

    One launch covers every route: route k belongs to orientation ``k % NORI`` (rows 0/2 and
    columns 1/3 of the 2-D op, one orientation for the 1-D op), whose segment grid is
    (OUTER, P pieces, NSEG). A program owns CD channels x NB states of one route (grid axis
    0 = channel blocks x state blocks), so that enough programs run at batch 1."""
    k = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    NBLK: tl.constexpr = (N + NB - 1) // NB
    pid = tl.program_id(0)
    backwards = (k >= rev_from).to(tl.int32) ^ flip
    odd = k % NORI  # orientation of route k (0 or 1), selected arithmetically
    OUTER = OUTER0 + odd * (OUTER1 - OUTER0)
    P = P0 + odd * (P1 - P0)
    NSEG = NSEG0 + odd * (NSEG1 - NSEG0)
    d = (pid // NBLK) * CD + tl.arange(0, CD)[:, None, None]
    n = (pid % NBLK) * NB + tl.arange(0, NB)[None, :, None]
    c = tl.arange(0, CT)[None, None, :]
    d_ok = d < D
    n_ok = n < N
    A2 = tl.load(A2_ptr + (k * D + d) * N + n, mask=d_ok & n_ok, other=0.0)
    seg_row = (b * K + k) * D + d  # (CD, 1, 1)
    carry = tl.sum(A2 * 0.0, axis=2)  # (CD, NB)
    for c0 in range(0, NSEG, CT):
        # element feeding output position c0 + c (exclusive scan)
        ce = c0 + c - 1
        e_ok = (ce >= 0) & (ce < NSEG) & d_ok & n_ok
        ch = ce + backwards * (NSEG - 1 - 2 * ce)
        se = (ch % P) * OUTER + ch // P
        dsum = tl.load(dsum_ptr + seg_row * NSEG_STRIDE + se, mask=e_ok, other=0.0)
        a = tl.where(e_ok, tl.exp2(A2 * dsum), 1.0)
        x = tl.load(loc_ptr + (seg_row * NSEG_STRIDE + se) * N + n, mask=e_ok, other=0.0)
        ap, xp = tl.associative_scan((a, x), 2, _lin_combine)
        state = xp + ap * carry[:, :, None]
        co = c0 + c
        o_ok = (co < NSEG) & d_ok & n_ok
        cho = co + backwards * (NSEG - 1 - 2 * co)
        so_ = (cho % P) * OUTER + cho // P
        tl.store(out_ptr + (seg_row * NSEG_STRIDE + so_) * N + n, state, mask=o_ok)
        last = c == CT - 1
        carry = tl.sum(tl.where(last, xp, 0.0), axis=2) + tl.sum(tl.where(last, ap, 0.0), axis=2) * carry


@_jit
def _fwd_out_kernel(
    u_ptr, dt_ptr, A2_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, W_ptr, hstart_ptr, y_ptr,
    su_b, su_k, sd_b, sd_k, sB_b, sB_k, sC_b, sC_k, sy_b, sy_k,
    PLANE, D, K, OUTER, INNER, S, NSEG, NSEG_STRIDE, so, si, k0, kstep, rev_from, kdiv, y_k0, y_kdiv, one,
    N: tl.constexpr, DPT: tl.constexpr, NPT: tl.constexpr, SG: tl.constexpr, CG: tl.constexpr, NS: tl.constexpr,
    SEG_FAST: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr,
    PHASES: tl.constexpr, ACCUM: tl.constexpr, PREFETCH: tl.constexpr, STAGES: tl.constexpr = 1,
    R: tl.constexpr = 0, NCH: tl.constexpr = 1, LF: tl.constexpr = False, OPAQUE: tl.constexpr = False,
):
    """Pass 3: each segment from its true start state -> y (float32). R > 0: dt holds rank-R
    step inputs, expanded per channel with W (see :func:`_load_dt`).

    Route k writes output slot ``(k - y_k0) // y_kdiv`` (``sy_k`` apart; 0 when the routes
    share one output). PHASES routes (k0, k0 + kstep, ...) run one after the other in the same
    program over the same pixels; phase 0 writes y (or adds to it if ACCUM), later phases add
    to it. PHASES = 1 with one slot per route gives twice the programs (the caller sums the
    slots in a fixed order)."""
    pid_l = tl.program_id(0)
    if OPAQUE:  # the strides' values hidden from Triton (module docstring)
        so = so * one
        si = si * one
    b = tl.program_id(2).to(tl.int64)
    for ph in tl.static_range(PHASES):
        k = k0 + (tl.program_id(1) * PHASES + ph) * kstep
        rev = (k >= rev_from).to(tl.int32)
        d, dc, n, nc, s, s_ok, o, p, cg, ns, db = _geometry(pid_l, D, NSEG, OUTER, N, DPT, NPT, SG, CG, NS, SEG_FAST, NCH, LF)
        d_ok = (d < D) & s_ok
        n_ok = n < N
        kd = k * D + dc
        co = dc * PLANE  # channel plane offset (all per-channel tensors are packed planes)
        A2 = tl.load(A2_ptr + kd * N + nc)
        bias = 0.0
        if HAS_BIAS:
            bias = tl.load(bias_ptr + kd)
        Dk = 0.0
        if HAS_D:
            Dk = tl.load(D_ptr + kd)
        seg_row = (b * K + k) * D + d
        h = tl.load(hstart_ptr + (seg_row * NSEG_STRIDE + s) * N + n, mask=d_ok & n_ok, other=0.0)
        W0, W1, W2, W3 = _dt_rows(W_ptr, kd, R)
        u_b = u_ptr + (b * su_b + k * su_k)
        dt_b = dt_ptr + (b * sd_b + (k // kdiv) * sd_k)
        B_b = B_ptr + (b * sB_b + (k // kdiv) * sB_k)
        C_b = C_ptr + (b * sC_b + (k // kdiv) * sC_k)
        y_b = y_ptr + (b * sy_b + ((k - y_k0) // y_kdiv) * sy_k)
        w_ok = d_ok & (ns == 0)
        pos_n, ok_n = _step(0, p, o, rev, S, INNER, so, si, s_ok)
        xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
        uu_n = tl.load(u_b + (co + pos_n))
        bb_n = tl.load(B_b + (pos_n * N + nc))
        cc_n = tl.load(C_b + (pos_n * N + nc))
        yo_n = tl.where(d_ok, 0.0, 0.0)  # y written before (by phase 0), added in later phases
        if ACCUM or ph > 0:
            yo_n = tl.load(y_b + (co + pos_n), mask=w_ok & ok_n, other=0.0)
        for t in tl.range(0, S, num_stages=STAGES):
            if PREFETCH == 2:  # late: step t + 1's loads are issued once step t is done with its operands
                pos, ok, xr, uu, bb, cc, yo = pos_n, ok_n, xr_n, uu_n, bb_n, cc_n, yo_n
                pos_n, ok_n = _step(t + 1, p, o, rev, S, INNER, so, si, s_ok)
            elif PREFETCH:  # loads for step t + 1 are in flight while step t computes
                pos, ok, xr, uu, bb, cc, yo = pos_n, ok_n, xr_n, uu_n, bb_n, cc_n, yo_n
                pos_n, ok_n = _step(t + 1, p, o, rev, S, INNER, so, si, s_ok)
                xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
                uu_n = tl.load(u_b + (co + pos_n))
                bb_n = tl.load(B_b + (pos_n * N + nc))
                cc_n = tl.load(C_b + (pos_n * N + nc))
                if ACCUM or ph > 0:
                    yo_n = tl.load(y_b + (co + pos_n), mask=w_ok & ok_n, other=0.0)
            else:
                pos, ok = _step(t, p, o, rev, S, INNER, so, si, s_ok)
                xr = _load_dt(dt_b, W0, W1, W2, W3, co, pos, PLANE, R)
                uu = tl.load(u_b + (co + pos))
                bb = tl.load(B_b + (pos * N + nc))
                cc = tl.load(C_b + (pos * N + nc))
                yo = yo_n
                if ACCUM or ph > 0:
                    yo = tl.load(y_b + (co + pos), mask=w_ok & ok, other=0.0)
            _, dl = _delta(xr, d_ok & ok, bias, HAS_BIAS, SOFTPLUS)
            uf = uu.to(tl.float32)
            h = tl.exp2(dl * A2) * h + (dl * uf) * _states_only(bb, n_ok, N, NCH * NPT * NS)
            if PREFETCH == 2:
                xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
                uu_n = tl.load(u_b + (co + pos_n))
                bb_n = tl.load(B_b + (pos_n * N + nc))
            yv = _sum_states(cc.to(tl.float32) * h, SEG_FAST, NCH, LF)
            if PREFETCH == 2:
                cc_n = tl.load(C_b + (pos_n * N + nc))
                if ACCUM or ph > 0:
                    yo_n = tl.load(y_b + (co + pos_n), mask=w_ok & ok_n, other=0.0)
            if HAS_D:
                yv += Dk * uf
            if ACCUM or ph > 0:
                yv += yo
            tl.store(y_b + (co + pos), yv, mask=w_ok & ok)
        if PHASES > 1:
            tl.debug_barrier()


# --------------------------------------------------------------------------------------
# backward
# --------------------------------------------------------------------------------------
@_jit
def _bwd_local_kernel(
    dt_ptr, A2_ptr, C_ptr, bias_ptr, W_ptr, dy_ptr, gloc_ptr,
    sd_b, sd_k, sC_b, sC_k, sy_b, sy_k,
    PLANE, D, K, OUTER, INNER, S, NSEG, NSEG_STRIDE, so, si, k0, kstep, rev_from, kdiv, one,
    N: tl.constexpr, DPT: tl.constexpr, NPT: tl.constexpr, SG: tl.constexpr, CG: tl.constexpr, NS: tl.constexpr,
    SEG_FAST: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, PREFETCH: tl.constexpr, STAGES: tl.constexpr = 1,
    R: tl.constexpr = 0, NCH: tl.constexpr = 1, LF: tl.constexpr = False, OPAQUE: tl.constexpr = False,
):
    """Backward pass 1: each segment backwards from a zero adjoint ->
    gloc[b,k,d,s,:] = a_s g_s (the adjoint the segment passes to the state before it)."""
    pid_l = tl.program_id(0)
    if OPAQUE:  # the strides' values hidden from Triton (module docstring)
        so = so * one
        si = si * one
    k = k0 + tl.program_id(1) * kstep
    b = tl.program_id(2).to(tl.int64)
    rev = 1 - (k >= rev_from).to(tl.int32)
    d, dc, n, nc, s, s_ok, o, p, cg, ns, db = _geometry(pid_l, D, NSEG, OUTER, N, DPT, NPT, SG, CG, NS, SEG_FAST, NCH, LF)
    d_ok = (d < D) & s_ok
    n_ok = n < N
    kd = k * D + dc
    co = dc * PLANE  # channel plane offset (all per-channel tensors are packed planes)
    A2 = tl.load(A2_ptr + kd * N + nc)
    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr + kd)
    W0, W1, W2, W3 = _dt_rows(W_ptr, kd, R)
    dt_b = dt_ptr + (b * sd_b + (k // kdiv) * sd_k)
    C_b = C_ptr + (b * sC_b + (k // kdiv) * sC_k)
    dy_b = dy_ptr + (b * sy_b + k * sy_k)
    g = tl.where(n_ok, A2 * 0.0, 0.0)
    pos_n, ok_n = _step(0, p, o, rev, S, INNER, so, si, s_ok)
    xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
    dy_n = tl.load(dy_b + (co + pos_n))
    cc_n = tl.load(C_b + (pos_n * N + nc))
    for t in tl.range(0, S, num_stages=STAGES):
        if PREFETCH == 2:  # only the step input ahead (few registers); dy and C read at the step
            pos, ok, xr = pos_n, ok_n, xr_n
            pos_n, ok_n = _step(t + 1, p, o, rev, S, INNER, so, si, s_ok)
            xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
            dy = tl.load(dy_b + (co + pos))
            cc = tl.load(C_b + (pos * N + nc))
        elif PREFETCH:
            ok, xr, dy, cc = ok_n, xr_n, dy_n, cc_n
            pos_n, ok_n = _step(t + 1, p, o, rev, S, INNER, so, si, s_ok)
            xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
            dy_n = tl.load(dy_b + (co + pos_n))
            cc_n = tl.load(C_b + (pos_n * N + nc))
        else:
            pos, ok = _step(t, p, o, rev, S, INNER, so, si, s_ok)
            xr = _load_dt(dt_b, W0, W1, W2, W3, co, pos, PLANE, R)
            dy = tl.load(dy_b + (co + pos))
            cc = tl.load(C_b + (pos * N + nc))
        m = d_ok & ok
        _, dl = _delta(xr, m, bias, HAS_BIAS, SOFTPLUS)
        dyf = tl.where(m, dy.to(tl.float32), 0.0)
        g = tl.exp2(dl * A2) * (cc.to(tl.float32) * dyf + g)
    seg_row = (b * K + k) * D + d
    tl.store(gloc_ptr + (seg_row * NSEG_STRIDE + s) * N + n, g, mask=d_ok & n_ok)


@_jit
def _bwd_fwd_kernel(
    u_ptr, dt_ptr, A2_ptr, B_ptr, C_ptr, bias_ptr, W_ptr, dy_ptr, hstart_ptr, gin_ptr,
    dC_ptr, zscr_ptr, zoff_ptr, dA_ptr, dD_ptr,
    su_b, su_k, sd_b, sd_k, sB_b, sB_k, sC_b, sC_k, sy_b, sy_k,
    sdc_blk, sdc_b, sdc_k, sz_b, sz_k,
    PLANE, D, K, OUTER, INNER, S, NSEG, NSEG_STRIDE, so, si, k0, kstep, rev_from, kdiv,
    N: tl.constexpr, DPT: tl.constexpr, NPT: tl.constexpr, SG: tl.constexpr, CG: tl.constexpr, NS: tl.constexpr,
    SEG_FAST: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, PREFETCH: tl.constexpr, STAGES: tl.constexpr = 1,
    R: tl.constexpr = 0, NCH: tl.constexpr = 1, LF: tl.constexpr = False,
):
    """Backward pass 2, forward in route order from the true start state h_{s-1} = hstart:

    dC_t = sum_d h_t dy_t;  zscr_t = sum_{j<t} ZH_j with ZH_j = sum_n A_n c_j a_j h_{j-1};
    dA (this half) = sum_j zh_j Dpre_j + Dseg x_{e+1} with Dpre_j = sum_{i<=j} delta_i and
    x_{e+1} = gin h_e; zoff = ZH_total + sum_n A_n x_{e+1}; dD = sum_t dy_t u_t."""
    pid_l = tl.program_id(0)
    k = k0 + tl.program_id(1) * kstep
    b = tl.program_id(2).to(tl.int64)
    rev = (k >= rev_from).to(tl.int32)
    d, dc, n, nc, s, s_ok, o, p, cg, ns, db = _geometry(pid_l, D, NSEG, OUTER, N, DPT, NPT, SG, CG, NS, SEG_FAST, NCH, LF)
    d_ok = (d < D) & s_ok
    n_ok = n < N
    kd = k * D + dc
    co = dc * PLANE  # channel plane offset (all per-channel tensors are packed planes)
    A2 = tl.load(A2_ptr + kd * N + nc)
    bias = 0.0
    if HAS_BIAS:
        bias = tl.load(bias_ptr + kd)
    seg_row = (b * K + k) * D + d
    h = tl.load(hstart_ptr + (seg_row * NSEG_STRIDE + s) * N + n, mask=d_ok & n_ok, other=0.0)
    u_b = u_ptr + (b * su_b + k * su_k)
    W0, W1, W2, W3 = _dt_rows(W_ptr, kd, R)
    dt_b = dt_ptr + (b * sd_b + (k // kdiv) * sd_k)
    B_b = B_ptr + (b * sB_b + (k // kdiv) * sB_k)
    C_b = C_ptr + (b * sC_b + (k // kdiv) * sC_k)
    dy_b = dy_ptr + (b * sy_b + k * sy_k)
    dC_b = dC_ptr + (db * sdc_blk + b * sdc_b + (k // kdiv) * sdc_k)
    z_b = zscr_ptr + (b * sz_b + k * sz_k)
    w_ok = d_ok & (ns == 0)
    c_ok = n_ok & (cg == 0)
    zpre = tl.where(d_ok, 0.0, 0.0)
    dpre = zpre
    dDacc = zpre
    dAf = h * 0.0
    pos_n, ok_n = _step(0, p, o, rev, S, INNER, so, si, s_ok)
    xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
    uu_n = tl.load(u_b + (co + pos_n))
    dy_n = tl.load(dy_b + (co + pos_n))
    bb_n = tl.load(B_b + (pos_n * N + nc))
    cc_n = tl.load(C_b + (pos_n * N + nc))
    for t in tl.range(0, S, num_stages=STAGES):
        if PREFETCH:
            pos, ok, xr, uu, dy, bb, cc = pos_n, ok_n, xr_n, uu_n, dy_n, bb_n, cc_n
            pos_n, ok_n = _step(t + 1, p, o, rev, S, INNER, so, si, s_ok)
            xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
            uu_n = tl.load(u_b + (co + pos_n))
            dy_n = tl.load(dy_b + (co + pos_n))
            bb_n = tl.load(B_b + (pos_n * N + nc))
            cc_n = tl.load(C_b + (pos_n * N + nc))
        else:
            pos, ok = _step(t, p, o, rev, S, INNER, so, si, s_ok)
            xr = _load_dt(dt_b, W0, W1, W2, W3, co, pos, PLANE, R)
            uu = tl.load(u_b + (co + pos))
            dy = tl.load(dy_b + (co + pos))
            bb = tl.load(B_b + (pos * N + nc))
            cc = tl.load(C_b + (pos * N + nc))
        m = d_ok & ok
        _, dl = _delta(xr, m, bias, HAS_BIAS, SOFTPLUS)
        uf = uu.to(tl.float32)
        dyf = tl.where(m, dy.to(tl.float32), 0.0)
        ah = tl.exp2(dl * A2) * h
        zh = (cc.to(tl.float32) * dyf) * ah
        tl.store(z_b + (co + pos), zpre, mask=w_ok & ok)
        zpre += _sum_states(zh * A2, SEG_FAST, NCH, LF) * LN2
        dpre += dl
        dAf += zh * dpre
        h = ah + (dl * uf) * _states_only(bb, n_ok, N, NCH * NPT * NS)
        dc_v = _sum_channels(h * dyf, SEG_FAST, LF) + (n * 0).to(tl.float32)
        tl.store(dC_b + (pos * N + n), dc_v, mask=c_ok & ok)
        dDacc += dyf * uf
    gi = tl.load(gin_ptr + (seg_row * NSEG_STRIDE + s) * N + n, mask=d_ok & n_ok, other=0.0)
    xe = gi * h
    dAf += dpre * xe
    zoff = zpre + _sum_states(xe * A2, SEG_FAST, NCH, LF) * LN2
    tl.store(zoff_ptr + seg_row * NSEG_STRIDE + s, zoff, mask=w_ok)
    tl.store(dA_ptr + (seg_row * NSEG_STRIDE + s) * N + n, dAf, mask=d_ok & n_ok)
    tl.store(dD_ptr + seg_row * NSEG_STRIDE + s, dDacc, mask=w_ok)


@_jit
def _bwd_rev_kernel(
    u_ptr, dt_ptr, A2_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, W_ptr, dy_ptr, gin_ptr, dsum_ptr, zscr_ptr, zoff_ptr,
    du_ptr, ddt_ptr, dB_ptr, dA_ptr, dbias_ptr,
    su_b, su_k, sd_b, sd_k, sB_b, sB_k, sC_b, sC_k, sy_b, sy_k,
    sdc_blk, sdc_b, sdc_k, sz_b, sz_k, sdu_b, sdu_k, sdd_b, sdd_k,
    PLANE, D, K, OUTER, INNER, S, NSEG, NSEG_STRIDE, so, si, k0, kstep, rev_from, kdiv, y_k0, y_kdiv,
    N: tl.constexpr, DPT: tl.constexpr, NPT: tl.constexpr, SG: tl.constexpr, CG: tl.constexpr, NS: tl.constexpr,
    SEG_FAST: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr,
    PHASES: tl.constexpr, ACCUM: tl.constexpr, PREFETCH: tl.constexpr, STAGES: tl.constexpr = 1,
    R: tl.constexpr = 0, NCH: tl.constexpr = 1, LF: tl.constexpr = False,
):
    """Backward pass 3, against route order from the adjoint gin entering the segment's end:

    g_t = c_t + gh_{t+1};  du_t = delta_t sum_n g_t B_t + D dy_t (merged over routes like y);
    dB_t = sum_d g_t delta_t u_t;  ZG_t = sum_n A_n b_t gh_{t+1};
    ddelta_t = u_t sum_n g_t B_t + zoff - zscr_t - sum_{j>=t} ZG_j, times softplus';
    dA -= sum_t zg_t Dpre_t;  dbias = sum_t ddt_t."""
    pid_l = tl.program_id(0)
    b = tl.program_id(2).to(tl.int64)
    for ph in tl.static_range(PHASES):
        k = k0 + (tl.program_id(1) * PHASES + ph) * kstep
        rev = 1 - (k >= rev_from).to(tl.int32)
        d, dc, n, nc, s, s_ok, o, p, cg, ns, db = _geometry(pid_l, D, NSEG, OUTER, N, DPT, NPT, SG, CG, NS, SEG_FAST, NCH, LF)
        d_ok = (d < D) & s_ok
        n_ok = n < N
        kd = k * D + dc
        co = dc * PLANE  # channel plane offset (all per-channel tensors are packed planes)
        A2 = tl.load(A2_ptr + kd * N + nc)
        bias = 0.0
        if HAS_BIAS:
            bias = tl.load(bias_ptr + kd)
        Dk = 0.0
        if HAS_D:
            Dk = tl.load(D_ptr + kd)
        seg_row = (b * K + k) * D + d
        gh = tl.load(gin_ptr + (seg_row * NSEG_STRIDE + s) * N + n, mask=d_ok & n_ok, other=0.0)
        zoff = tl.load(zoff_ptr + seg_row * NSEG_STRIDE + s, mask=d_ok, other=0.0)
        dseg = tl.load(dsum_ptr + seg_row * NSEG_STRIDE + s, mask=d_ok, other=0.0)
        u_b = u_ptr + (b * su_b + k * su_k)
        W0, W1, W2, W3 = _dt_rows(W_ptr, kd, R)
        dt_b = dt_ptr + (b * sd_b + (k // kdiv) * sd_k)
        B_b = B_ptr + (b * sB_b + (k // kdiv) * sB_k)
        C_b = C_ptr + (b * sC_b + (k // kdiv) * sC_k)
        dy_b = dy_ptr + (b * sy_b + k * sy_k)
        dB_b = dB_ptr + (db * sdc_blk + b * sdc_b + (k // kdiv) * sdc_k)
        z_b = zscr_ptr + (b * sz_b + k * sz_k)
        du_b = du_ptr + (b * sdu_b + ((k - y_k0) // y_kdiv) * sdu_k)  # du slot, as y's
        ddt_b = ddt_ptr + (b * sdd_b + (k // kdiv) * sdd_k)
        w_ok = d_ok & (ns == 0)
        c_ok = n_ok & (cg == 0)
        zgs = tl.where(d_ok, 0.0, 0.0)
        dsuf = zgs
        dbacc = zgs
        dAr = gh * 0.0
        pos_n, ok_n = _step(0, p, o, rev, S, INNER, so, si, s_ok)
        xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
        uu_n = tl.load(u_b + (co + pos_n))
        dy_n = tl.load(dy_b + (co + pos_n))
        bb_n = tl.load(B_b + (pos_n * N + nc))
        cc_n = tl.load(C_b + (pos_n * N + nc))
        zp_n = tl.load(z_b + (co + pos_n), mask=w_ok & ok_n, other=0.0)
        do_n = tl.where(d_ok, 0.0, 0.0)  # du written before (by phase 0), added in later phases
        if ACCUM or ph > 0:
            do_n = tl.load(du_b + (co + pos_n), mask=w_ok & ok_n, other=0.0)
        for t in tl.range(0, S, num_stages=STAGES):
            if PREFETCH:  # loads for step t + 1 are in flight while step t computes
                pos, ok, xr, uu, dy, bb, cc, zp, do = pos_n, ok_n, xr_n, uu_n, dy_n, bb_n, cc_n, zp_n, do_n
                pos_n, ok_n = _step(t + 1, p, o, rev, S, INNER, so, si, s_ok)
                xr_n = _load_dt(dt_b, W0, W1, W2, W3, co, pos_n, PLANE, R)
                uu_n = tl.load(u_b + (co + pos_n))
                dy_n = tl.load(dy_b + (co + pos_n))
                bb_n = tl.load(B_b + (pos_n * N + nc))
                cc_n = tl.load(C_b + (pos_n * N + nc))
                zp_n = tl.load(z_b + (co + pos_n), mask=w_ok & ok_n, other=0.0)
                if ACCUM or ph > 0:
                    do_n = tl.load(du_b + (co + pos_n), mask=w_ok & ok_n, other=0.0)
            else:
                pos, ok = _step(t, p, o, rev, S, INNER, so, si, s_ok)
                xr = _load_dt(dt_b, W0, W1, W2, W3, co, pos, PLANE, R)
                uu = tl.load(u_b + (co + pos))
                dy = tl.load(dy_b + (co + pos))
                bb = tl.load(B_b + (pos * N + nc))
                cc = tl.load(C_b + (pos * N + nc))
                zp = tl.load(z_b + (co + pos), mask=w_ok & ok, other=0.0)
                do = do_n
                if ACCUM or ph > 0:
                    do = tl.load(du_b + (co + pos), mask=w_ok & ok, other=0.0)
            m = d_ok & ok
            mw = w_ok & ok
            x, dl = _delta(xr, m, bias, HAS_BIAS, SOFTPLUS)
            uf = uu.to(tl.float32)
            dyf = tl.where(m, dy.to(tl.float32), 0.0)
            bf = _states_only(bb, n_ok, N, NCH * NPT * NS)
            g = cc.to(tl.float32) * dyf + gh
            gB = _sum_states(g * bf, SEG_FAST, NCH, LF)
            du = dl * gB
            if HAS_D:
                du += Dk * dyf
            if ACCUM or ph > 0:
                du += do
            tl.store(du_b + (co + pos), du, mask=mw)
            dlu = dl * uf
            zg = (dlu * bf) * gh
            zgs += _sum_states(zg * A2, SEG_FAST, NCH, LF) * LN2
            dAr += zg * (dseg - dsuf)
            dsuf += dl
            ddl = uf * gB + (zoff - zp - zgs)
            if SOFTPLUS:
                ddl = ddl * _softplus_grad(x)
            ddl = tl.where(m, ddl, 0.0)
            tl.store(ddt_b + (co + pos), ddl.to(ddt_ptr.dtype.element_ty), mask=mw)
            dbacc += ddl
            db_v = _sum_channels(g * dlu, SEG_FAST, LF) + (n * 0).to(tl.float32)
            tl.store(dB_b + (pos * N + n), db_v, mask=c_ok & ok)
            gh = tl.exp2(dl * A2) * g
        dA_p = dA_ptr + (seg_row * NSEG_STRIDE + s) * N + n
        tl.store(dA_p, tl.load(dA_p, mask=d_ok & n_ok, other=0.0) - dAr, mask=d_ok & n_ok)
        tl.store(dbias_ptr + seg_row * NSEG_STRIDE + s, dbacc, mask=w_ok)
        if PHASES > 1:
            tl.debug_barrier()


# --------------------------------------------------------------------------------------
# layout helper
# --------------------------------------------------------------------------------------
@_jit(all_ints=True)
def _transpose_kernel(
    x_ptr, y_ptr,
    sx1, sx2, sy1, sy2, P2, R, C,
    BR: tl.constexpr, BC: tl.constexpr,
):
    """y[p1, p2, c, r] = x[p1, p2, r, c] for (R, C) planes, tiled (coalesced both ways).

    Plane (p1, p2) starts at p1 * sx1 + p2 * sx2 in x (rows of C packed elements) and at
    p1 * sy1 + p2 * sy2 in y (rows of R)."""
    pid_p = tl.program_id(2)
    p1 = (pid_p // P2).to(tl.int64)
    p2 = (pid_p % P2).to(tl.int64)
    r = tl.program_id(0) * BR + tl.arange(0, BR)[:, None]
    c = tl.program_id(1) * BC + tl.arange(0, BC)[None, :]
    m = (r < R) & (c < C)
    x = tl.load(x_ptr + (p1 * sx1 + p2 * sx2) + r * C + c, mask=m, other=0.0)
    xt = tl.trans(x)  # (BC, BR)
    rt = tl.program_id(0) * BR + tl.arange(0, BR)[None, :]
    ct = tl.program_id(1) * BC + tl.arange(0, BC)[:, None]
    mt = (rt < R) & (ct < C)
    tl.store(y_ptr + (p1 * sy1 + p2 * sy2) + ct * R + rt, xt.to(y_ptr.dtype.element_ty), mask=mt)


# The relayout's strides and sizes stay specialised: "== 1" tells the compiler which dimension
# is contiguous on either side and "divisible by 16" (of H and W too: the tile masks) lets it
# use vector loads and stores; only the counts are not.
@triton.jit(do_not_specialize=["NBLK", "P2"])
def _relayout_kernel(
    x_ptr, y_ptr,
    sx_blk, sx1, sx2, sxn, sxh, sxw, sy1, sy2, syn, syh, syw,
    NBLK, P2, H, W,
    N: tl.constexpr, NP: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
):
    """y[p1, p2, n, h, w] = sum_{blk < NBLK} x[blk, p1, p2, n, h, w] (float32, blocks in
    order), cast to y's dtype; any strides on both sides (in elements).

    One pass for the B/C relayouts of the scan: planar (N, H, W) planes <-> state-contiguous
    pixels (H, W, N) or transposed (W, H, N), and the sum of the backward's channel-block
    partials of dB/dC on the way back. A program moves an (NP, BH, BW) tile: read with the
    lanes along x's contiguous dimension, written along y's (Triton exchanges the tile
    through shared memory between the two)."""
    pid_p = tl.program_id(2)
    p1 = (pid_p // P2).to(tl.int64)
    p2 = (pid_p % P2).to(tl.int64)
    n = tl.arange(0, NP)[:, None, None]
    h = tl.program_id(0) * BH + tl.arange(0, BH)[None, :, None]
    w = tl.program_id(1) * BW + tl.arange(0, BW)[None, None, :]
    m = (h < H) & (w < W)
    if NP > N:
        m = m & (n < N)
    x_p = x_ptr + (p1 * sx1 + p2 * sx2) + (n * sxn + h * sxh + w * sxw)
    acc = tl.load(x_p, mask=m, other=0.0).to(tl.float32)
    for _ in range(1, NBLK):
        x_p += sx_blk  # pointer (64-bit) steps: no int32 product over all the blocks
        acc += tl.load(x_p, mask=m, other=0.0).to(tl.float32)
    yo = p1 * sy1 + p2 * sy2 + (n * syn + h * syh + w * syw)
    tl.store(y_ptr + yo, acc.to(y_ptr.dtype.element_ty), mask=m)


@_jit(all_ints=True)
def _merge_kernel(
    c_ptr, r_ptr, y_ptr,
    sc_slot, sr_slot, H, W,
    NC: tl.constexpr, NR: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
):
    """The 2-D op's cross-merge in one pass: y = (c_0 + c_1) + (r_0 + r_1)^T per plane,
    float32, in this order (deterministic), for NC column-route slots ((H, W) planes) and NR
    row-route slots ((W, H) planes: the rows frame runs on transposed maps).

    Slot i of c / r starts ``i * sc_slot`` / ``i * sr_slot`` elements in; plane ``p`` (batch x
    channel) is packed at ``p * H * W``. The row slots are read as (BW, BH) tiles, summed and
    transposed in registers, so reads and writes stay coalesced. y may be c_0 itself."""
    plane = tl.program_id(2).to(tl.int64) * H * W
    h = tl.program_id(0) * BH + tl.arange(0, BH)[:, None]
    w = tl.program_id(1) * BW + tl.arange(0, BW)[None, :]
    m = (h < H) & (w < W)
    wt = tl.program_id(1) * BW + tl.arange(0, BW)[:, None]
    ht = tl.program_id(0) * BH + tl.arange(0, BH)[None, :]
    mt = (wt < W) & (ht < H)
    rs = tl.load(r_ptr + plane + wt * H + ht, mask=mt, other=0.0)
    for i in tl.static_range(1, NR):
        rs += tl.load(r_ptr + i * sr_slot + plane + wt * H + ht, mask=mt, other=0.0)
    acc = tl.trans(rs)
    if NC > 0:
        cs = tl.load(c_ptr + plane + h * W + w, mask=m, other=0.0)
        for i in tl.static_range(1, NC):
            cs += tl.load(c_ptr + i * sc_slot + plane + h * W + w, mask=m, other=0.0)
        acc = cs + acc
    tl.store(y_ptr + plane + h * W + w, acc, mask=m)
