"""Selective scan: exact oracle vs a float64 step loop, gradcheck, fast path vs oracle, 2-D op."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from diffmf.ops import cross_merge, cross_scan, selective_scan, selective_scan_2d, set_backend
from diffmf.ops.cross_scan import cross_scan_routes
from diffmf.ops.dispatch import resolve_backend
from diffmf.ops.scan_ref import selective_scan_ref
from diffmf.ops.scan_torch import selective_scan_torch


def make_inputs(b=2, g=4, d=3, n=5, length=37, dtype=torch.float64, delta_scale=1.0, a_scale=1.0):
    u = torch.randn(b, g * d, length, dtype=dtype)
    delta = torch.randn(b, g * d, length, dtype=dtype) * delta_scale
    A = -torch.exp(torch.randn(g * d, n, dtype=dtype)) * a_scale
    B = torch.randn(b, g, n, length, dtype=dtype)
    C = torch.randn(b, g, n, length, dtype=dtype)
    D = torch.randn(g * d, dtype=dtype)
    bias = torch.randn(g * d, dtype=dtype) * 0.5
    return u, delta, A, B, C, D, bias


def loop_float64(u, delta, A, B, C, D, bias):
    """Independent scalar-structured oracle: explicit per-(b, channel, state) recursion in float64."""
    u, delta, A, B, C, D, bias = (t.double() for t in (u, delta, A, B, C, D, bias))
    delta = F.softplus(delta + bias[:, None])
    b, gd, length = u.shape
    g, n = B.shape[1], A.shape[1]
    d = gd // g
    y = torch.zeros(b, gd, length, dtype=torch.float64)
    for bi in range(b):
        for ch in range(gd):
            h = torch.zeros(n, dtype=torch.float64)
            for t in range(length):
                h = torch.exp(delta[bi, ch, t] * A[ch]) * h + delta[bi, ch, t] * u[bi, ch, t] * B[bi, ch // d, :, t]
                y[bi, ch, t] = (C[bi, ch // d, :, t] * h).sum() + D[ch] * u[bi, ch, t]
    return y


def test_ref_matches_float64_loop():
    args = make_inputs(b=1, g=2, d=2, n=3, length=19)
    torch.testing.assert_close(selective_scan_ref(*args), loop_float64(*args), rtol=1e-12, atol=1e-12)


def test_ref_gradcheck():
    args = [t.requires_grad_() for t in make_inputs(b=1, g=2, d=2, n=3, length=7)]
    assert torch.autograd.gradcheck(lambda *a: selective_scan_ref(*a), args, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("length", [1, 2, 31, 100, 257])
def test_torch_matches_ref(length):
    args = make_inputs(length=length)
    torch.testing.assert_close(selective_scan_torch(*args, chunk=16), selective_scan_ref(*args), rtol=1e-10, atol=1e-10)


def test_torch_float32_matches_ref():
    args = make_inputs(length=300)
    y = selective_scan_torch(*(t.float() for t in args))
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), selective_scan_ref(*args), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("delta_scale,a_scale", [(8.0, 10.0), (30.0, 1.0)])
def test_torch_strong_decay_and_softplus_threshold(delta_scale, a_scale):
    """Chunks get cut where exp(-decay) would overflow; delta beyond softplus' threshold (20)."""
    args = make_inputs(length=120, delta_scale=delta_scale, a_scale=a_scale)
    y = selective_scan_torch(*(t.float() for t in args), chunk=64)
    assert torch.isfinite(y).all()
    ref = selective_scan_ref(*args)
    torch.testing.assert_close(y.double(), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_torch_gradients_match_ref():
    args = make_inputs(b=1, g=2, d=3, n=4, length=40)
    grads = []
    for fn in (selective_scan_ref, lambda *a: selective_scan_torch(*a, chunk=8)):
        leaves = [t.clone().requires_grad_() for t in args]
        (fn(*leaves) * torch.linspace(-1, 1, 40, dtype=torch.float64)).sum().backward()
        grads.append([t.grad for t in leaves])
    for g_ref, g_fast in zip(*grads):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-8, atol=1e-8)


def test_last_state_matches():
    args = make_inputs(length=50)
    _, h_ref = selective_scan_ref(*args, return_last_state=True)
    _, h_fast = selective_scan_torch(*args, return_last_state=True, chunk=16)
    torch.testing.assert_close(h_fast, h_ref)


def test_contract_errors():
    u, delta, A, B, C, D, bias = make_inputs()
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(u, delta, A[:-1], B, C, D, bias)
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(u, delta, A, B[..., :-1], C, D, bias)


def test_cross_scan_merge_roundtrip():
    x = torch.randn(2, 3, 5, 7)
    xs = cross_scan(x)
    assert xs.shape == (2, 4, 3, 35)
    # route k read order: rows, columns, reversed rows, reversed columns
    torch.testing.assert_close(xs[:, 1, :, :5], x[:, :, :, 0])
    torch.testing.assert_close(xs[:, 2].flip(-1), xs[:, 0])
    # merging the scanned copies gives 4x the map (every route maps back exactly)
    torch.testing.assert_close(cross_merge(xs, 5, 7), 4 * x)
    per_route = x.unsqueeze(1).expand(2, 4, 3, 5, 7)
    torch.testing.assert_close(cross_scan_routes(per_route), xs)


def test_selective_scan_2d_equals_four_1d_scans():
    b, k, d, n, h, w = 1, 4, 3, 4, 5, 6
    u = torch.randn(b, d, h, w, dtype=torch.float64)
    delta = torch.randn(b, k, d, h, w, dtype=torch.float64)
    A = -torch.exp(torch.randn(k * d, n, dtype=torch.float64))
    Bm, Cm = torch.randn(b, k, n, h, w, dtype=torch.float64), torch.randn(b, k, n, h, w, dtype=torch.float64)
    D, bias = torch.randn(k * d, dtype=torch.float64), torch.randn(k * d, dtype=torch.float64)
    y = selective_scan_2d(u, delta, A, Bm, Cm, D, bias)
    expect = torch.zeros(b, d, h, w, dtype=torch.float64)
    orders = [
        lambda t: t.flatten(-2),
        lambda t: t.transpose(-1, -2).flatten(-2),
        lambda t: t.flatten(-2).flip(-1),
        lambda t: t.transpose(-1, -2).flatten(-2).flip(-1),
    ]
    for r, order in enumerate(orders):
        sl = slice(r * d, (r + 1) * d)
        yr = selective_scan_ref(order(u), order(delta[:, r]), A[sl], order(Bm[:, r]).unsqueeze(1), order(Cm[:, r]).unsqueeze(1), D[sl], bias[sl])
        # place back: invert the order on a map of indices
        idx = order(torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w)).long().view(-1)
        back = torch.empty_like(yr)
        back[..., idx] = yr
        expect += back.view(b, d, h, w)
    torch.testing.assert_close(y, expect)


def test_backend_selection(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("DIFFMF_SCAN_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert resolve_backend(cpu) == "torch"
    monkeypatch.setenv("DIFFMF_SCAN_BACKEND", "ref")
    assert resolve_backend(cpu) == "ref"
    set_backend("torch")
    try:
        assert resolve_backend(cpu) == "torch"
    finally:
        set_backend(None)
    with pytest.raises(RuntimeError, match="triton"):
        resolve_backend(cpu, "triton")
    with pytest.raises(ValueError, match="unknown scan backend"):
        resolve_backend(cpu, "cuda-kernels")


def test_torch_gradients_finite_at_decay_bound():
    """Long chunks that reach the decay bound must not overflow in the backward pass."""
    args = [t.float() for t in make_inputs(b=1, g=1, d=2, n=16, length=200, delta_scale=0.3)]
    args[2] = -torch.arange(1, 17, dtype=torch.float32).repeat(2, 1)  # S4D-real A, strong decay
    leaves = [t.clone().requires_grad_() for t in args]
    selective_scan_torch(*leaves).square().mean().backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)
    ref_leaves = [t.double().clone().requires_grad_() for t in args]
    selective_scan_ref(*ref_leaves).square().mean().backward()
    for a, b in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad.double(), b.grad, rtol=2e-3, atol=2e-3 * b.grad.abs().max().item())


# ---------------------------------------------------------------- inference (no-grad) CPU path


@pytest.fixture
def small_blocks(monkeypatch):
    """Tiny blocks and stretches, so short sequences cross many block and stretch boundaries."""
    import diffmf.ops.scan_torch as st

    monkeypatch.setattr(st, "_BLOCK_ELEMENTS", 2 * 4 * 3 * 5 * 8)  # 8 positions per block at b=2, G*D=12, N=5
    monkeypatch.setattr(st, "_BLOCK_ELEMENTS_1T", 2 * 2 * 3 * 5 * 8)  # the same for 2 routes on one thread
    monkeypatch.setattr(st, "_SUPER_BLOCKS", 3)


@pytest.mark.parametrize("length", [1, 2, 7, 31, 100, 257])
@pytest.mark.parametrize("chunk", [1, 3, 4, 16])
def test_inference_path_matches_ref_odd_lengths(small_blocks, length, chunk):
    args = make_inputs(length=length)
    with torch.no_grad():
        y, h = selective_scan_torch(*args, chunk=chunk, return_last_state=True)
    y_ref, h_ref = selective_scan_ref(*args, return_last_state=True)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("max_decay", [0.5, 3.0, 60.0])
def test_inference_path_decay_bound_splits_chunks(small_blocks, monkeypatch, max_decay):
    """Chunks whose decay span exceeds the bound are re-run with halved chunks, exactly."""
    import diffmf.ops.scan_torch as st

    calls = []
    real_aligned = st.InferenceScan._aligned
    monkeypatch.setattr(st.InferenceScan, "_aligned", lambda self, *a: calls.append(a[-2]) or real_aligned(self, *a))
    args = make_inputs(length=150, delta_scale=3.0, a_scale=3.0)
    with torch.no_grad():
        y = selective_scan_torch(*args, chunk=16, max_decay=max_decay)
    torch.testing.assert_close(y, selective_scan_ref(*args), rtol=1e-9, atol=1e-9)
    if max_decay < 60:
        assert min(calls) < 16  # some chunks were cut


def test_inference_path_exponents_stay_bounded(small_blocks, monkeypatch):
    """Every exponent of the closed form stays within +-max_decay (float32 cannot overflow)."""
    import diffmf.ops.scan_torch as st

    seen = []
    real_block = st.InferenceScan._block
    monkeypatch.setattr(st.InferenceScan, "_block", lambda self, S, *a: seen.append(
        (S.unsqueeze(3) * self.A2_6).abs().max().item() * math.log(2.0)) or real_block(self, S, *a))
    args = [t.float() for t in make_inputs(length=300, delta_scale=8.0, a_scale=10.0)]
    with torch.no_grad():
        y = selective_scan_torch(*args, chunk=64, max_decay=20.0)
    assert torch.isfinite(y).all() and seen and max(seen) <= 20.0 * (1 + 1e-5)
    ref = selective_scan_ref(*(t.double() for t in args))
    torch.testing.assert_close(y.double(), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_inference_path_float32_realistic_scale():
    """Paper-like sizes and initialisation (S4D-real A, Mamba dt), float32 vs float64 oracle."""
    b, g, d, n, length = 1, 4, 8, 16, 700
    u = torch.randn(b, g * d, length)
    step = torch.exp(torch.rand(g * d) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    bias = step + torch.log(-torch.expm1(-step))
    delta = torch.randn(b, g * d, length) * 0.5
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(g * d, 1)
    B, C = torch.randn(b, g, n, length), torch.randn(b, g, n, length)
    D = torch.ones(g * d)
    with torch.inference_mode():
        y = selective_scan_torch(u, delta, A, B, C, D, bias)
    ref = selective_scan_ref(*(t.double() for t in (u, delta, A, B, C, D, bias)))
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_inference_and_autograd_paths_agree_and_grad_path_is_taken():
    args = [t.float() for t in make_inputs(length=90)]
    with torch.no_grad():
        y_fast = selective_scan_torch(*args)
    leaves = [t.clone().requires_grad_() for t in args]
    y_grad = selective_scan_torch(*leaves)
    assert y_grad.requires_grad
    y_grad.sum().backward()
    assert all(t.grad is not None for t in leaves)
    torch.testing.assert_close(y_fast, y_grad.detach(), rtol=1e-5, atol=1e-5)


def test_inference_path_noncontiguous_inputs_and_buffer_reuse(small_blocks):
    """Views (as SS2D passes them) work, and scratch buffers reused across calls of other
    shapes never leak into results."""
    u, delta, A, B, C, D, bias = make_inputs(length=60)
    BC = torch.cat([B, C], dim=2)  # B and C as views of one tensor
    Bv, Cv = BC[:, :, :5], BC[:, :, 5:]
    ref = selective_scan_ref(u, delta, A, B, C, D, bias)
    with torch.no_grad():
        first = selective_scan_torch(u, delta, A, Bv, Cv, D, bias)
        selective_scan_torch(*make_inputs(b=1, g=2, d=2, n=3, length=13))  # other shapes in between
        again = selective_scan_torch(u, delta, A, Bv, Cv, D, bias)
    torch.testing.assert_close(first, ref, rtol=1e-10, atol=1e-10)
    assert torch.equal(first, again)


@pytest.mark.parametrize("routes", [1, 2, 4])
@pytest.mark.parametrize("hw", [(1, 1), (1, 9), (9, 1), (5, 6), (7, 13), (16, 16)])
def test_selective_scan_2d_streamed_matches_cross_scan_composition(small_blocks, routes, hw):
    """The streamed no-grad 2-D path equals CrossScan -> exact scan -> CrossMerge."""
    h, w = hw
    b, d, n = 2, 3, 5
    u = torch.randn(b, d, h, w, dtype=torch.float64)
    delta = torch.randn(b, routes, d, h, w, dtype=torch.float64)
    A = -torch.exp(torch.randn(routes * d, n, dtype=torch.float64))
    Bm, Cm = torch.randn(b, routes, n, h, w, dtype=torch.float64), torch.randn(b, routes, n, h, w, dtype=torch.float64)
    D, bias = torch.randn(routes * d, dtype=torch.float64), torch.randn(routes * d, dtype=torch.float64)
    with torch.no_grad():
        y = selective_scan_2d(u, delta, A, Bm, Cm, D, bias, backend="torch")
    seq = cross_scan(u, routes).reshape(b, routes * d, h * w)
    y_ref = selective_scan_ref(seq, cross_scan_routes(delta).reshape(b, routes * d, h * w), A, cross_scan_routes(Bm), cross_scan_routes(Cm), D, bias)
    torch.testing.assert_close(y, cross_merge(y_ref.view(b, routes, d, h * w), h, w), rtol=1e-10, atol=1e-10)


def test_selective_scan_2d_grad_path_unchanged():
    """With inputs requiring grad, the 2-D op still differentiates (cross-scan + autograd scan)."""
    b, k, d, n, h, w = 1, 4, 2, 3, 4, 5
    u = torch.randn(b, d, h, w, dtype=torch.float64, requires_grad=True)
    delta = torch.randn(b, k, d, h, w, dtype=torch.float64)
    A = -torch.exp(torch.randn(k * d, n, dtype=torch.float64))
    Bm, Cm = torch.randn(b, k, n, h, w, dtype=torch.float64), torch.randn(b, k, n, h, w, dtype=torch.float64)
    y = selective_scan_2d(u, delta, A, Bm, Cm, None, None, True, backend="torch")
    y.sum().backward()
    with torch.no_grad():
        y_fast = selective_scan_2d(u, delta, A, Bm, Cm, None, None, True, backend="torch")
    assert u.grad is not None and torch.isfinite(u.grad).all()
    torch.testing.assert_close(y.detach(), y_fast, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("grad", [False, True])
def test_selective_scan_2d_lowrank_equals_expanded_delta(small_blocks, rank, grad):
    """dt_proj inside the op (streamed on the no-grad path) = expanding delta first."""
    from diffmf.ops.selective_scan import expand_delta, selective_scan_2d_lowrank

    b, k, d, n, h, w = 2, 4, 3, 5, 7, 6
    u = torch.randn(b, d, h, w, dtype=torch.float64)
    dts = torch.randn(b, k, rank, h, w, dtype=torch.float64)
    weight = torch.randn(k, d, rank, dtype=torch.float64, requires_grad=grad)
    A = -torch.exp(torch.randn(k * d, n, dtype=torch.float64))
    Bm, Cm = torch.randn(b, k, n, h, w, dtype=torch.float64), torch.randn(b, k, n, h, w, dtype=torch.float64)
    D, bias = torch.randn(k * d, dtype=torch.float64), torch.randn(k * d, dtype=torch.float64)
    delta = torch.einsum("bkrhw,kdr->bkdhw", dts, weight)
    torch.testing.assert_close(expand_delta(dts, weight), delta)
    y = selective_scan_2d_lowrank(u, dts, weight, A, Bm, Cm, D, bias, backend="torch")
    torch.testing.assert_close(y, selective_scan_2d(u, delta, A, Bm, Cm, D, bias, backend="ref"), rtol=1e-10, atol=1e-10)
    if grad:
        y.sum().backward()
        assert weight.grad is not None and torch.isfinite(weight.grad).all()
    with pytest.raises(ValueError, match="dts must be"):
        selective_scan_2d_lowrank(u, dts[:, :, :, :-1], weight, A, Bm, Cm, D, bias)


def test_selective_scan_2d_route_threads_same_values(small_blocks):
    """Routes split over two Python threads (two or more intra-op threads) or run in one: the same
    values (up to rounding: vectorised and scalar tails of exp2 fall on other elements)."""
    b, k, d, n, h, w = 1, 4, 3, 5, 9, 7
    args = tuple(t.double() for t in (
        torch.randn(b, d, h, w), torch.randn(b, k, d, h, w), -torch.exp(torch.randn(k * d, n)),
        torch.randn(b, k, n, h, w), torch.randn(b, k, n, h, w), torch.randn(k * d), torch.randn(k * d),
    ))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            one = selective_scan_2d(*args, backend="torch")
        torch.set_num_threads(2)
        with torch.inference_mode():
            two = selective_scan_2d(*args, backend="torch")
        assert torch.get_num_threads() == 2  # restored after the split
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(one, two, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(one, selective_scan_2d(*args, backend="ref"), rtol=1e-10, atol=1e-10)
