"""Triton selective-scan kernels vs the exact PyTorch oracle, run in Triton's CPU interpreter.

``TRITON_INTERPRET=1`` is set before the kernels are defined (this module imports them), so
the same kernel source that runs compiled on a GPU runs here in numpy, on tiny shapes with
short segments (several segments per line, ragged last pieces). Compiled-GPU checks at real
shapes: ``benchmarks/gpu_scan_check.py``.
"""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

if importlib.util.find_spec("triton") is None:
    pytest.skip("Triton is not installed (pip install triton; Linux x86_64)", allow_module_level=True)
if os.environ.get("TRITON_INTERPRET") != "1":
    # tests/conftest.py sets it unless the caller did; a GPU session with TRITON_INTERPRET=0
    # must not import the kernels interpreted (other modules' models would then run them on
    # the CPU): the compiled kernels are checked by benchmarks/gpu_scan_check.py there
    pytest.skip(
        "interpreter tests: run with TRITON_INTERPRET=1 (the default of tests/conftest.py); "
        "on a GPU the compiled kernels are checked by benchmarks/gpu_scan_check.py",
        allow_module_level=True,
    )

# The interpreter must be on when triton itself and the kernels are imported; it is switched
# back right after, so other test modules see the caller's environment (the fixture below
# turns it on again while these tests run).
from triton_interp import import_interpreted, interpreted  # noqa: E402

import_interpreted("diffmf.ops.triton.kernels")
from diffmf.ops import selective_scan, selective_scan_2d  # noqa: E402
from diffmf.ops.scan_ref import selective_scan_ref  # noqa: E402
from diffmf.ops.triton import scan as triton_scan  # noqa: E402
from diffmf.ops.triton import selective_scan_2d_triton, selective_scan_triton  # noqa: E402

NAMES = ("y", "du", "ddelta", "dA", "dB", "dC", "dD", "dbias")


@pytest.fixture(autouse=True, scope="module")
def _interpret():
    """Keep TRITON_INTERPRET=1 while this module runs, restore the caller's value after."""
    with interpreted():
        yield


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def grads(fn, ins, dy, *extra):
    xs = [None if t is None else t.detach().clone().requires_grad_() for t in ins]
    y = fn(*xs, *extra)
    live = [x for x in xs if x is not None]
    g = torch.autograd.grad(y, live, dy.to(y.dtype))
    it = iter(g)
    return [y.detach()] + [None if x is None else next(it) for x in xs]


def oracle(ins, dy, two_d: bool, softplus: bool = True):
    """float64 oracle from the same (already rounded) inputs."""
    x64 = [None if t is None else t.detach().double() for t in ins]
    if two_d:
        return grads(lambda *a: selective_scan_2d(*a, backend="ref"), x64, dy.double(), softplus)
    return grads(selective_scan_ref, x64, dy.double(), softplus)


def check(got, ref, tol=1e-5, low_precision=()):
    for name, g, r in zip(NAMES, got, ref):
        if r is None:
            assert g is None
            continue
        assert g.shape == r.shape, name
        assert torch.isfinite(g).all(), name
        limit = 1e-2 if name in low_precision else tol  # gradients returned in bf16/fp16
        assert rel(g, r) < limit, f"{name}: relative error {rel(g, r):.2e}"


def inputs_1d(b, g, d, n, length, dtype=torch.float32, dt_shift=0.0, a_scale=1.0):
    u = torch.randn(b, g * d, length).to(dtype)
    dt = (torch.randn(b, g * d, length) + dt_shift).to(dtype)
    A = -torch.exp(torch.randn(g * d, n)) * a_scale
    B = torch.randn(b, g, n, length).to(dtype)
    C = torch.randn(b, g, n, length).to(dtype)
    D = torch.randn(g * d)
    bias = torch.randn(g * d) * 0.5
    return [u, dt, A, B, C, D, bias]


def inputs_2d(b, k, d, n, h, w, dtype=torch.float32):
    u = torch.randn(b, d, h, w).to(dtype)
    dt = (torch.randn(b, k, d, h, w) - 1.0).to(dtype)
    A = -torch.exp(torch.randn(k * d, n) * 0.5)
    B = torch.randn(b, k, n, h, w).to(dtype)
    C = torch.randn(b, k, n, h, w).to(dtype)
    D = torch.randn(k * d)
    bias = torch.randn(k * d) * 0.5
    return [u, dt, A, B, C, D, bias]


# ------------------------------------------------------------------------------------------
# 1-D contract
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefetch", [0, 1, 2])  # None (the default mix) runs in the other tests
def test_1d_ragged_segments_groups_padded_states(prefetch, monkeypatch):
    """L = 23 in pieces of 8 (3 segments, ragged last), 2 groups, N = 5 padded to 8."""
    monkeypatch.setattr(triton_scan, "INTERPRET_PREFETCH", prefetch)
    ins = inputs_1d(2, 2, 3, 5, 23)
    dy = torch.randn(2, 6, 23)
    check(grads(selective_scan_triton, ins, dy, True), oracle(ins, dy, False))


def test_1d_bf16_inputs():
    ins = inputs_1d(1, 2, 4, 16, 19, dtype=torch.bfloat16)
    dy = torch.randn(1, 8, 19)
    got = grads(selective_scan_triton, ins, dy, True)
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.bfloat16 and got[2].dtype == torch.bfloat16
    check(got, oracle(ins, dy, False), tol=1e-5, low_precision=("du", "ddelta", "dB", "dC"))


def test_1d_delta_beyond_softplus_threshold_and_strong_decay():
    """dt + bias around 22 (softplus is the identity past 20) and |A| x 30: decay e^-600."""
    ins = inputs_1d(1, 1, 4, 8, 17, dt_shift=22.0, a_scale=30.0)
    dy = torch.randn(1, 4, 17)
    check(grads(selective_scan_triton, ins, dy, True), oracle(ins, dy, False), tol=1e-5)
    ins = inputs_1d(1, 1, 4, 8, 17, dt_shift=1.0, a_scale=30.0)  # strong decay, softplus active
    check(grads(selective_scan_triton, ins, dy, True), oracle(ins, dy, False), tol=1e-5)


def test_1d_without_softplus_skip_and_bias():
    u, dt, A, B, C, _, _ = inputs_1d(2, 1, 3, 4, 13)
    dt = dt.abs() * 0.3  # a positive step when softplus is off
    ins = [u, dt, A, B, C, None, None]
    dy = torch.randn(2, 3, 13)
    check(grads(selective_scan_triton, ins, dy, False), oracle(ins, dy, False, softplus=False))


@pytest.mark.parametrize("seglen", ["1", "23"])
def test_1d_extreme_segment_lengths(seglen, monkeypatch):
    """Every step its own segment (long chains) / one segment per line (no chain)."""
    # 23 segments per line span several of the interpreter's chain tiles: the carry between tiles
    assert triton_scan._chain_layout(2, True, None)[2] < 23
    monkeypatch.setenv(triton_scan.SEGLEN_ENV, seglen)
    ins = inputs_1d(1, 2, 2, 4, 23)
    dy = torch.randn(1, 4, 23)
    check(grads(selective_scan_triton, ins, dy, True), oracle(ins, dy, False))


def test_dispatch_routes_to_triton_and_empty_sequence():
    ins = inputs_1d(1, 1, 2, 4, 9)
    y = selective_scan(*ins, True, backend="triton")
    torch.testing.assert_close(y, selective_scan_ref(*ins, True), rtol=1e-5, atol=1e-5)
    empty = inputs_1d(1, 1, 2, 4, 0)
    assert selective_scan_triton(*empty, True).shape == (1, 2, 0)


def test_triton_on_cpu_without_interpreter_is_an_actionable_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        selective_scan(*inputs_1d(1, 1, 2, 4, 5), True, backend="triton")


# ------------------------------------------------------------------------------------------
# 2-D fused cross-scan / scan / cross-merge
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,h,w", [(4, 4, 5), (2, 4, 5), (1, 3, 5), (4, 1, 7), (4, 5, 1)])
def test_2d_every_route_matches_oracle(k, h, w):
    """Rows/columns split into pieces of ceil(len/3): several segments per line, ragged."""
    ins = inputs_2d(2, k, 3, 5, h, w)
    dy = torch.randn(2, 3, h, w)
    check(grads(selective_scan_2d_triton, ins, dy, True), oracle(ins, dy, True))


@pytest.mark.parametrize("prefetch", [0, 1, 2])
def test_2d_prefetch_paths(prefetch, monkeypatch):
    """The three load schedules (none, early, late / step input only), including the
    prefetched read-add-write of y and du (phase 2)."""
    monkeypatch.setattr(triton_scan, "INTERPRET_PREFETCH", prefetch)
    ins = inputs_2d(1, 4, 3, 4, 4, 5)
    dy = torch.randn(1, 3, 4, 5)
    check(grads(selective_scan_2d_triton, ins, dy, True), oracle(ins, dy, True))


@pytest.mark.parametrize("lanes_first", [False, True])
@pytest.mark.parametrize("dtype,n,chunks", [(torch.float32, 16, 4), (torch.bfloat16, 16, 2), (torch.float32, 5, 2)])
def test_2d_designed_layout(dtype, n, chunks, lanes_first, monkeypatch):
    """Every sweep on the designed layout, in both axis orders: lanes holding their states as
    2 or 4 chunks (16 fp32 / bf16 states; 5 fp32 states padded to 8, the padding clamped),
    the strides hidden, with the prefetched schedules."""
    monkeypatch.setenv(triton_scan.DESIGNED_ENV, ",".join(triton_scan.SWEEPS))
    monkeypatch.setattr(triton_scan, "TIES_ASCENDING", lanes_first)
    lay = triton_scan._layout(3, n, False, True, interpret=True)
    meta = lay.meta(torch.empty(0, dtype=dtype).element_size(), designed=True)
    assert (meta["NCH"], meta["LF"], meta["OPAQUE"]) == (chunks, lanes_first, True)
    ins = inputs_2d(1, 4, 3, n, 4, 5, dtype=dtype)
    dy = torch.randn(1, 3, 4, 5)
    low = ("du", "ddelta", "dB", "dC") if dtype == torch.bfloat16 else ()
    check(grads(selective_scan_2d_triton, ins, dy, True), oracle(ins, dy, True), low_precision=low)


@pytest.mark.parametrize("lanes_first", [False, True])
def test_1d_designed_layout(lanes_first, monkeypatch):
    """The 1-D op's lanes (channel groups adjacent, ragged segments, two groups) on the designed
    layout in both axis orders, float32 (4 chunks)."""
    monkeypatch.setenv(triton_scan.DESIGNED_ENV, ",".join(triton_scan.SWEEPS))
    monkeypatch.setattr(triton_scan, "TIES_ASCENDING", lanes_first)
    ins = inputs_1d(1, 2, 4, 16, 19)
    dy = torch.randn(1, 8, 19)
    check(grads(selective_scan_triton, ins, dy, True), oracle(ins, dy, False))


@pytest.mark.parametrize("phases", ["1", "2"])
def test_2d_route_schedules(phases, monkeypatch):
    """One program per route with an output slot each (default) and the two routes of an axis
    one after the other in one program (DIFFMF_TRITON_PHASES=2) both match the oracle."""
    monkeypatch.setenv(triton_scan.PHASES_ENV, phases)
    for k in (2, 4):
        ins = inputs_2d(2, k, 3, 4, 5, 6)
        dy = torch.randn(2, 3, 5, 6)
        check(grads(selective_scan_2d_triton, ins, dy, True), oracle(ins, dy, True))


@pytest.mark.parametrize("nc,nr", [(2, 2), (1, 1), (0, 1)])
def test_merge_kernel_sums_slots_in_fixed_order(nc, nr):
    """_merge_kernel: y = (c0 + c1) + (r0 + r1)^T, the row slots (W, H) planes, odd sizes over
    several tiles; bitwise the float32 sum in that order (what the three passes before gave)."""
    b, d, h, w = 2, 3, 19, 37
    c = torch.randn(max(nc, 1), b, d, h, w)
    r = torch.randn(nr, b, d, w, h)
    rr = r.transpose(-1, -2)
    ref = rr[0] if nr == 1 else rr[0] + rr[1]
    if nc:
        ref = (c[0] if nc == 1 else c[0] + c[1]) + ref
    out = torch.full((b, d, h, w), float("nan"))
    bufs = [r, c[:nc]] if nc else [r]
    triton_scan._merge_slots(bufs, out)
    assert torch.equal(out, ref)


def test_kernel_specialisation_plan():
    """Only route/channel-selecting integers (and the forward-type sweeps' ``one``) are
    unspecialised in the sweeps: sizes, strides and segment geometry must stay specialised
    (without their divisibility the sweeps lost their vector loads and ran ~2.3x slower on an
    H100); the designed layout hides the line strides through ``one`` instead."""
    from diffmf.ops.triton import kernels

    geometry = {"S", "INNER", "OUTER", "PLANE", "so", "si", "NSEG", "NSEG_STRIDE", "su_b", "sd_k", "sB_k"}
    for name in ("_fwd_local_kernel", "_fwd_out_kernel", "_bwd_local_kernel", "_bwd_fwd_kernel", "_bwd_rev_kernel"):
        free = set(getattr(kernels, name).unspecialised)
        assert {"k0", "kstep", "rev_from", "kdiv"} <= free, name
        assert not free & geometry, (name, free & geometry)
        assert ("one" in free) == (name in ("_fwd_local_kernel", "_fwd_out_kernel", "_bwd_local_kernel")), name
        assert not any(n.endswith("_ptr") for n in free)
    chain = set(kernels._chain_kernel.unspecialised)
    assert {"OUTER0", "NSEG0", "P0", "OUTER1", "NSEG1", "P1"} <= chain


def test_designed_layout_choice(monkeypatch):
    """Which sweeps run on the designed thread layout (float32 B / C: all but the output pass),
    its state chunks (2 or 4 loads of 16 bytes per lane, forward-type sweeps only), the axis
    order per Triton version, and the checked override."""
    monkeypatch.delenv(triton_scan.DESIGNED_ENV, raising=False)
    monkeypatch.delenv(triton_scan.LAYOUT_FWD_ENV, raising=False)
    monkeypatch.delenv(triton_scan.LAYOUT_BWD_ENV, raising=False)
    assert [triton_scan._designed(s, 4) for s in triton_scan.SWEEPS] == [True, False, True, True, True]
    assert not any(triton_scan._designed(s, 2) for s in triton_scan.SWEEPS)
    fwd = triton_scan._layout(64, 16, False, True, interpret=False)
    bwd = triton_scan._layout(64, 16, True, True, interpret=False)
    assert (fwd.npt, fwd.chunk_count(2), fwd.chunk_count(4), bwd.chunk_count(4)) == (16, 2, 4, 1)
    meta = fwd.meta(4, designed=True)
    assert (meta["NCH"], meta["NPT"], meta["OPAQUE"], meta["one"]) == (4, 4, True, 1)
    assert meta["LF"] == triton_scan.TIES_ASCENDING
    plain = fwd.meta(4)
    assert (plain["NCH"], plain["NPT"], plain["OPAQUE"], plain["LF"]) == (1, 16, False, False)
    assert "OPAQUE" not in bwd.meta(4, designed=True) and "one" not in bwd.meta(4, designed=True)
    assert triton_scan._layout(64, 4, False, True, interpret=False).chunk_count(2) == 1  # one load
    assert triton_scan._layout(64, 64, False, True, interpret=False).chunk_count(4) == 1  # 16 loads
    assert triton_scan._ties_ascending("3.6.0") and not triton_scan._ties_ascending("3.7.1")
    assert not triton_scan._ties_ascending("4.0.0+git1234")
    monkeypatch.setenv(triton_scan.DESIGNED_ENV, "fwd_out,bwd_rev")
    assert [triton_scan._designed(s, 2) for s in triton_scan.SWEEPS] == [False, True, False, False, True]
    monkeypatch.setenv(triton_scan.DESIGNED_ENV, "none")
    assert not any(triton_scan._designed(s, 4) for s in triton_scan.SWEEPS)
    monkeypatch.setenv(triton_scan.DESIGNED_ENV, "fwd")
    with pytest.raises(ValueError, match="DESIGNED"):
        triton_scan._designed("fwd_out", 4)


def test_memoised_planning_follows_the_environment(monkeypatch):
    """Segment lengths and lane layouts are memoised per call shape, yet the environment
    overrides still apply from the next call on (and going back restores the default)."""
    monkeypatch.delenv(triton_scan.SEGLEN_ENV, raising=False)
    monkeypatch.delenv(triton_scan.LAYOUT_FWD_ENV, raising=False)
    monkeypatch.delenv(triton_scan.LAYOUT_BWD_ENV, raising=False)
    o = triton_scan.Orientation((1, 3), outer=7, inner=30, so=1, si=7, seg_fast=True)
    p = triton_scan.Problem(batch=1, K=4, D=64, N=16, length=7 * 30, orients=(o,), rev_from=2, u_shared=True)
    cpu = torch.device("cpu")
    first = triton_scan._finish(p, cpu).orients[0].seglen
    monkeypatch.setenv(triton_scan.SEGLEN_ENV, "4")
    assert triton_scan._finish(p, cpu).orients[0].seglen == 4 != first
    monkeypatch.delenv(triton_scan.SEGLEN_ENV)
    assert triton_scan._finish(p, cpu).orients[0].seglen == first
    gpu = triton_scan._layout(64, 16, False, True, interpret=False)
    assert (gpu.dpt, gpu.maxnreg, gpu.prefetch, gpu.stages) == (2, 128, 1, 1)
    # float32 B / C and the rank-R output pass: no early prefetch (registers), the late schedule
    assert triton_scan._layout(64, 16, False, True, interpret=False, heavy=True).prefetch == 2
    monkeypatch.setenv(triton_scan.HEAVY_PREFETCH_ENV, "0")
    assert triton_scan._layout(64, 16, False, True, interpret=False, heavy=True).prefetch == 0
    assert triton_scan._layout(64, 16, False, True, interpret=False).prefetch == 1
    monkeypatch.setenv(triton_scan.HEAVY_PREFETCH_ENV, "3")
    with pytest.raises(ValueError, match="HEAVY_PREFETCH"):
        triton_scan._layout(64, 16, False, True, interpret=False, heavy=True)
    monkeypatch.delenv(triton_scan.HEAVY_PREFETCH_ENV)
    with pytest.raises(ValueError, match="prefetch field"):
        triton_scan._parse_layout("2,1,4,5")
    assert triton_scan._chain_layout(16, False, "2,8,256,8") == (2, 8, 256, 8)
    with pytest.raises(ValueError, match=f"{triton_scan.CHAIN_ENV}.*channels,states,tile,warps"):
        triton_scan._chain_layout(16, False, "1,4")
    bf, z = torch.zeros(1, dtype=torch.bfloat16), (0, 0)
    T = triton_scan._Tensors(u=bf, dt=bf, A2=bf, B=bf, C=bf, D=None, bias=None, su=z, sd=z, sB=z, sC=z, sy=z)
    assert not triton_scan._heavy(T, out=False) and not triton_scan._heavy(T, out=True)
    T.W = torch.zeros(4, 2)  # rank-2 step inputs
    assert T.rank == 2 and triton_scan._heavy(T, out=True) and not triton_scan._heavy(T, out=False)
    T.W, T.B = None, torch.zeros(1)
    assert triton_scan._heavy(T, out=False)
    bwd = triton_scan._layout(64, 16, True, True, interpret=False)
    monkeypatch.setenv(triton_scan.LAYOUT_FWD_ENV, "1,1,4,1")
    lay = triton_scan._layout(64, 16, False, True, interpret=False)
    assert (lay.dpt, lay.maxnreg, lay.num_warps) == (1, 0, 4)
    assert triton_scan._layout(64, 16, True, True, interpret=False) == bwd  # the backward keeps its own setting
    monkeypatch.setenv(triton_scan.LAYOUT_FWD_ENV, "2,1,4,0,16,128,3")  # every optional field
    lay = triton_scan._layout(64, 16, False, True, interpret=False)
    assert (lay.prefetch, lay.cg, lay.maxnreg, lay.stages) == (0, 16, 128, 3)
    monkeypatch.setenv(triton_scan.LAYOUT_BWD_ENV, "1,1,4,1")
    assert triton_scan._layout(64, 16, True, True, interpret=False).dpt == 1
    monkeypatch.delenv(triton_scan.LAYOUT_BWD_ENV)
    assert triton_scan._layout(64, 16, True, True, interpret=False) == bwd


@pytest.mark.parametrize("inner", [5, 17, 130, 480, 641])
def test_gpu_segment_lengths_are_multiples_of_16(inner):
    """The GPU segment length is a multiple of 16 for any line length (one compiled kernel per
    size class fewer), and the segments still cover the line."""
    o = triton_scan.Orientation((1, 3), outer=7, inner=inner, so=1, si=7, seg_fast=True)
    p = triton_scan.Problem(batch=1, K=4, D=64, N=16, length=7 * inner, orients=(o,), rev_from=2, u_shared=True)
    S = triton_scan._seglen(o, p, 32, torch.device("cpu"), interpret=False)
    assert S % 16 == 0 and S >= 16
    assert -(-inner // S) * S >= inner


# ------------------------------------------------------------------------------------------
# B / C relayout (planar <-> state-contiguous) and state-contiguous inputs
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,h,w", [(5, 7, 9), (16, 3, 17), (3, 1, 13), (4, 11, 1)])
def test_relayout_planar_to_state_major(dtype, n, h, w):
    """Odd sizes over several (4 x 8 interpreter) tiles, from a strided input (every other
    route of a (2, 4, n, h, w) tensor): pixels (H, W, N), or (W, H, N) with transpose."""
    x = torch.randn(2, 4, n, h, w).to(dtype)[:, 1::2]
    for transpose in (False, True):
        got = triton_scan.state_major(x, transpose)
        assert got.shape == x.shape and got.dtype == dtype and torch.equal(got, x)
        mem = got.permute(0, 1, 4, 3, 2) if transpose else got.permute(0, 1, 3, 4, 2)
        assert mem.is_contiguous()  # states innermost, then H (transpose) or W


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("transpose", [False, True])
def test_relayout_sums_state_major_blocks_back_to_planar(dtype, transpose):
    """The backward's way back: float32 channel-block partials, state-contiguous (plane
    (W, H) with transpose), summed in block order into the planar output's dtype."""
    blocks, b, k, n, h, w = 3, 2, 2, 5, 6, 9
    parts = torch.randn(blocks, b, k, h * w, n)
    view = triton_scan.grad_planes(parts, h, w, transpose)  # (blocks, b, k, n, h, w)
    out = torch.empty(b, 4, n, h, w, dtype=dtype)[:, 0::2]  # every other route, as the frames
    triton_scan.relayout(view, out)
    ref = view[0] + view[1] + view[2]  # same order, float32
    one = triton_scan.relayout(view[1], torch.empty(b, k, n, h, w, dtype=dtype))
    if dtype == torch.float32:
        assert torch.equal(out, ref) and torch.equal(one, view[1])
    else:  # the interpreter casts float32 -> bf16 by truncation (the GPU rounds to nearest)
        torch.testing.assert_close(out.float(), ref, rtol=2**-7, atol=0)
        torch.testing.assert_close(one.float(), view[1], rtol=2**-7, atol=0)


def test_state_major_input_is_used_without_a_copy(monkeypatch):
    """B / C already state-contiguous (as a model could produce them) go to the kernels as
    they are: no relayout for that frame, identical results and gradients (dB / dC come
    back in the input's layout)."""
    copies = []
    relayout = triton_scan.relayout
    monkeypatch.setattr(triton_scan, "relayout", lambda x, out: copies.append(tuple(out.shape)) or relayout(x, out))
    x = torch.randn(1, 2, 3, 4, 5)
    sc = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # (B, K, N, H, W) view of (B, K, H, W, N)
    assert triton_scan.state_major(sc, False) is sc and not copies
    sct = x.permute(0, 1, 4, 3, 2).contiguous().permute(0, 1, 4, 3, 2)  # memory (B, K, W, H, N)
    assert triton_scan.state_major(sct, True) is sct and not copies
    assert triton_scan.state_major(sc, True) is not sc and len(copies) == 1

    # 2-D op, K = 2: route 1 (columns frame) reads B / C in place, route 0 gets a copy
    ins = inputs_2d(1, 2, 3, 4, 4, 5)
    dy = torch.randn(1, 3, 4, 5)
    ref = grads(selective_scan_2d_triton, ins, dy, True)
    sc_ins = list(ins)
    for i in (3, 4):
        sc_ins[i] = ins[i].permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    copies.clear()
    got = grads(selective_scan_2d_triton, sc_ins, dy, True)
    # forward: B, C of route 0 (rows frame); backward: the same again, and dB, dC of each frame
    assert copies == [(1, 1, 4, 4, 5)] * 8
    for a, b in zip(got, ref):
        assert (a is None and b is None) or torch.equal(a, b)
    assert got[4].stride() == sc_ins[3].stride()  # dB in B's layout

    # 1-D op: (batch, G, L, N) memory read in place
    ins = inputs_1d(2, 2, 3, 4, 11)
    dy = torch.randn(2, 6, 11)
    ref = grads(selective_scan_triton, ins, dy, True)
    sc_ins = list(ins)
    for i in (3, 4):
        sc_ins[i] = ins[i].transpose(2, 3).contiguous().transpose(2, 3)
    copies.clear()
    got = grads(selective_scan_triton, sc_ins, dy, True)
    assert len(copies) == 2  # only dB, dC back (into the input's layout)
    for a, b in zip(got, ref):
        assert (a is None and b is None) or torch.equal(a, b)


def test_2d_bf16_inputs_and_channel_blocks():
    """bf16 inputs; D = 10 > the 8 channels of one interpreter program (partial dB/dC sums)."""
    ins = inputs_2d(1, 4, 10, 4, 4, 5, dtype=torch.bfloat16)
    dy = torch.randn(1, 10, 4, 5)
    got = grads(selective_scan_2d_triton, ins, dy, True)
    check(got, oracle(ins, dy, True), tol=1e-5, low_precision=("du", "ddelta", "dB", "dC"))


def test_2d_exchanged_bc_between_modalities():
    """Cross-modal SSD exchange: each modality's scan uses the other's B and C."""
    ir, vi = inputs_2d(1, 4, 2, 4, 4, 5), inputs_2d(1, 4, 2, 4, 4, 5)
    dy = torch.randn(1, 2, 4, 5)

    def both(fn, a, b):
        return fn(a[0], a[1], a[2], b[3], b[4], a[5], a[6], True) + fn(b[0], b[1], b[2], a[3], a[4], b[5], b[6], True)

    def run(fn, dtype):
        a = [t.detach().to(dtype).requires_grad_() for t in ir]
        b = [t.detach().to(dtype).requires_grad_() for t in vi]
        y = both(fn, a, b)
        return [y] + list(torch.autograd.grad(y, [a[3], a[4], b[3], b[4], a[0], b[0]], dy.to(dtype)))

    got = run(selective_scan_2d_triton, torch.float32)
    ref = run(lambda *x: selective_scan_2d(*x, backend="ref"), torch.float64)
    for g, r in zip(got, ref):
        assert rel(g, r) < 1e-5


def _lowrank_inputs(rank, dtype, k=4, d=3, n=4, h=5, w=6, b=2):
    u, _, A, Bm, Cm, D, bias = inputs_2d(b, k, d, n, h, w, dtype)
    dts = (torch.randn(b, k, rank, h, w) * 0.7 - 0.5).to(dtype)
    weight = (torch.randn(k, d, rank) * 0.8).to(dtype)
    return [u, dts, weight, A, Bm, Cm, D, bias]


@pytest.mark.parametrize("rank,k,dtype", [(2, 4, torch.float32), (3, 4, torch.float32), (1, 2, torch.float32),
                                         (4, 4, torch.float32), (5, 4, torch.float32), (2, 4, torch.bfloat16)])
def test_2d_lowrank_matches_expanded_delta(rank, k, dtype):
    """dt_proj inside the forward sweeps (ranks 1-4; rank 5 takes the expanded path) = the op
    on the expanded step map: y and every gradient, including those of the rank-R step inputs
    and the dt_proj weight (through expand_delta's matmul), against the float64 oracle."""
    from diffmf.ops.selective_scan import expand_delta
    from diffmf.ops.triton import selective_scan_2d_lowrank_triton

    ins = _lowrank_inputs(rank, dtype, k=k)
    dy = torch.randn(2, 3, 5, 6)
    got = grads(selective_scan_2d_lowrank_triton, ins, dy, True)

    def ref(u, dts, weight, *rest):
        delta = expand_delta(dts, weight)
        with torch.no_grad():  # the value rounded as expand_delta rounds it in the input dtype
            rounded = expand_delta(dts.to(dtype), weight.to(dtype)).double()
        delta = delta + (rounded - delta).detach()
        return selective_scan_2d(u, delta, *rest, backend="ref")

    want = grads(ref, [t.double() for t in ins], dy.double(), True)
    names = ("y", "du", "ddts", "dW", "dA", "dB", "dC", "dD", "dbias")
    for name, g, r in zip(names, got, want):
        assert g.shape == r.shape and torch.isfinite(g).all(), name
        limit = 1e-2 if (dtype == torch.bfloat16 and name not in ("y", "dD", "dbias")) else 1e-5
        assert rel(g, r) < limit, f"{name}: relative error {rel(g, r):.2e}"


def test_2d_lowrank_rounds_the_step_like_expand_delta():
    """bf16 inputs: the kernels round sum_r W dts to bf16 as expand_delta's matmul does, so
    the fused low-rank forward equals the fused forward on the expanded map (bitwise here:
    same kernels, same rounded steps)."""
    from diffmf.ops.selective_scan import expand_delta
    from diffmf.ops.triton import selective_scan_2d_lowrank_triton

    u, dts, weight, A, Bm, Cm, D, bias = _lowrank_inputs(2, torch.bfloat16)
    y = selective_scan_2d_lowrank_triton(u, dts, weight, A, Bm, Cm, D, bias, True)
    y_ref = selective_scan_2d_triton(u, expand_delta(dts, weight), A, Bm, Cm, D, bias, True)
    assert torch.equal(y, y_ref)


def test_2d_deterministic():
    ins = inputs_2d(1, 4, 3, 4, 4, 6)
    dy = torch.randn(1, 3, 4, 6)
    first = grads(selective_scan_2d_triton, ins, dy, True)
    second = grads(selective_scan_2d_triton, ins, dy, True)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_2d_through_the_public_op():
    ins = inputs_2d(1, 4, 2, 4, 3, 4)
    y = selective_scan_2d(*ins, True, backend="triton")
    torch.testing.assert_close(y, selective_scan_2d(*ins, True, backend="ref"), rtol=1e-5, atol=1e-5)


def test_doctor_reports_and_passes_its_self_check(capsys):
    """`diffmf doctor` on this CPU: versions, the active backend and why, a passing check."""
    from diffmf.cli.main import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "triton" in out and "scan" in out and "check  ok" in out
    assert "branches  in order (cpu" in out
    assert "compile  " not in out  # the PyTorch path compiles nothing


def test_doctor_says_the_interpreter_compiles_nothing(capsys):
    from diffmf.cli.main import main

    assert main(["doctor", "--backend", "triton", "--no-check"]) == 0
    out = capsys.readouterr().out
    assert "scan  triton on cpu" in out and "compile  nothing: the interpreter runs the kernels" in out
