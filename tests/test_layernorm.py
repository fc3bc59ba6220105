"""Channel LayerNorm: Triton kernels (CPU interpreter) vs the PyTorch twin; FastLayerNorm on CPU.

The kernels run through Triton's interpreter on tiny shapes with 4-row tiles and 3 backward
programs (:mod:`diffmf.ops.triton.layernorm`), so ragged row tiles, masked channels
(C = 24, 33), several tiles per backward program and the partial dw/db sums are exercised.
Gradients are compared with autograd through :func:`layer_norm_reference` in float64.
"""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diffmf.ops import layernorm as ln
from diffmf.ops.layernorm import FastLayerNorm, layer_norm, layer_norm_reference
from triton_interp import INTERPRETED, import_interpreted, interpret, needs_interpreter  # noqa: F401 (fixture)

needs_triton = needs_interpreter("test_layernorm.py")

if INTERPRETED:
    (tln,) = import_interpreted("diffmf.ops.triton.layernorm")


def _fast_and_reference_ln(c: int):
    """A FastLayerNorm(c) with random affine parameters and an nn.LayerNorm holding the same."""
    m = FastLayerNorm(c)
    with torch.no_grad():
        m.weight.normal_()
        m.bias.normal_()
    ref = nn.LayerNorm(c)
    ref.load_state_dict(m.state_dict())
    return m, ref


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def run(fn, x, w, b, z, dy, view=lambda t: t, **kw):
    """Output and gradients (x, w, b[, z]) of fn(view(x), w, b, gate=z)."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    zl = None if z is None else z.detach().clone().requires_grad_()
    y = fn(view(leaves[0]), leaves[1], leaves[2], 1e-5, gate=zl, **kw)
    grads = torch.autograd.grad(y, leaves + ([zl] if zl is not None else []), dy.to(y.dtype))
    return [y.detach()] + list(grads)


def oracle(x, w, b, z, dy, view=lambda t: t, out_dtype=None):
    """float64 autograd through the twin, from the same (already rounded) inputs."""
    out_dtype = out_dtype or (z.dtype if z is not None else x.dtype)
    dy = dy.to(out_dtype).double()  # the kernels get dy in the output dtype
    got = run(layer_norm_reference, x.double(), w.double(), b.double(), None if z is None else z.double(), dy, view)
    return [got[0].to(out_dtype)] + got[1:]


def triton_ln(x, w, b, eps, gate=None, **kw):
    return layer_norm(x, w, b, eps, gate=gate, backend="triton", **kw)


def params(c):
    return torch.randn(c) * 0.5 + 1.0, torch.randn(c) * 0.1


def planar(t):
    """(B, C, H, W) planar -> (B, H, W, C) view (strides (CHW, W, 1, HW))."""
    return t.permute(0, 2, 3, 1)


# ------------------------------------------------------------------------------------------
# Triton kernels vs the twin
# ------------------------------------------------------------------------------------------
@needs_triton
@pytest.mark.parametrize("c", [24, 33, 64])
def test_channels_last_odd_channels_ragged_rows(c, interpret):
    """(2, 3, 5, C): 30 rows in 4-row tiles (ragged last), C padded to a power of two."""
    x = torch.randn(2, 3, 5, c) * 3 + 1.5
    w, b = params(c)
    dy = torch.randn(2, 3, 5, c)
    got, ref = run(triton_ln, x, w, b, None, dy), oracle(x, w, b, None, dy)
    for name, g, r in zip(("y", "dx", "dw", "db"), got, ref):
        assert g.dtype == torch.float32 and g.shape == r.shape
        assert rel(g, r) < 1e-5, f"{name}: {rel(g, r):.2e}"
    torch.testing.assert_close(got[0], F.layer_norm(x, (c,), w, b, 1e-5), rtol=1e-5, atol=1e-5)


@needs_triton
@pytest.mark.parametrize("shape", [(7, 33), (33,), (1, 1, 9, 24)])
def test_other_ranks_and_single_rows(shape, interpret):
    c = shape[-1]
    x = torch.randn(*shape)
    w, b = params(c)
    dy = torch.randn(*shape)
    for g, r in zip(run(triton_ln, x, w, b, None, dy), oracle(x, w, b, None, dy)):
        assert rel(g, r) < 1e-5


@needs_triton
@pytest.mark.parametrize("batch", [1, 2])
def test_planar_input_read_in_place(batch, interpret):
    """The permuted planar map is read through its strides; dx comes back planar."""
    c, h, w_ = 33, 3, 7
    xp = torch.randn(batch, c, h, w_)
    w, b = params(c)
    dy = torch.randn(batch, h, w_, c)
    got, ref = run(triton_ln, xp, w, b, None, dy, planar), oracle(xp, w, b, None, dy, planar)
    for g, r in zip(got, ref):
        assert rel(g, r) < 1e-5
    assert got[0].is_contiguous() and got[1].stride() == xp.stride()
    view = tln.rows_view(planar(xp))
    assert view.s_c == h * w_ and view.s_inner == 1 and view.layout == tln.LAYOUT_ROWS


@needs_triton
def test_channels_last_strided_scan_output(interpret):
    """y (B, D, H, W) that already arrives channels-last: strides (HWD, 1, WD, D)."""
    c = 24
    xc = torch.randn(2, 4, 5, c).permute(0, 3, 1, 2)  # (B, D, H, W), channels-last memory
    assert xc.stride() == (4 * 5 * c, 1, 5 * c, c)
    w, b = params(c)
    dy = torch.randn(2, 4, 5, c)
    got, ref = run(triton_ln, xc, w, b, None, dy, planar), oracle(xc, w, b, None, dy, planar)
    for g, r in zip(got, ref):
        assert rel(g, r) < 1e-5
    assert tln.rows_view(planar(xc)).layout == tln.LAYOUT_CHANNELS


@needs_triton
def test_strides_not_two_level_are_copied(interpret):
    """(H, B, W, C) view of a (B, H, W, C) tensor: three row runs, read after a copy."""
    c = 24
    x = torch.randn(2, 3, 5, c).permute(1, 0, 2, 3)
    assert tln.rows_view(x) is None
    w, b = params(c)
    dy = torch.randn(3, 2, 5, c)
    for g, r in zip(run(triton_ln, x, w, b, None, dy), oracle(x, w, b, None, dy)):
        assert rel(g, r) < 1e-5


@needs_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs(dtype, interpret):
    """bf16/fp16 in and out: statistics in float32, the output within its rounding."""
    c = 33
    x = (torch.randn(3, 5, c) * 2).to(dtype)
    w, b = params(c)
    dy = torch.randn(3, 5, c).to(dtype)
    got, ref = run(triton_ln, x, w, b, None, dy), oracle(x, w, b, None, dy)
    assert got[0].dtype == dtype and got[1].dtype == dtype and got[2].dtype == torch.float32
    eps = torch.finfo(dtype).eps
    y32 = layer_norm_reference(x, w, b, 1e-5, out_dtype=torch.float32)
    assert ((got[0].float() - y32).abs() <= eps * y32.abs() + 1e-6).all()  # correctly rounded (<= 1 ulp)
    for name, g, r in zip(("y", "dx", "dw", "db"), got, ref):
        assert rel(g, r) < (2 * eps if g.dtype == dtype else 1e-5), f"{name}: {rel(g, r):.2e}"


@needs_triton
@pytest.mark.parametrize("z_dtype", [torch.float32, torch.bfloat16])
def test_gated_planar_float32_input(z_dtype, interpret):
    """SS2D.output: LN(planar fp32 y) * silu(z), output and dz in z's dtype, dx fp32 planar."""
    c, h, w_ = 24, 3, 6
    y = torch.randn(2, c, h, w_)
    z = (torch.randn(2, h, w_, c) * 2).to(z_dtype)
    w, b = params(c)
    dy = torch.randn(2, h, w_, c)
    got, ref = run(triton_ln, y, w, b, z, dy, planar), oracle(y, w, b, z, dy, planar)
    assert got[0].dtype == z_dtype and got[4].dtype == z_dtype and got[1].dtype == torch.float32
    assert got[1].stride() == y.stride()
    tol = 1e-5 if z_dtype == torch.float32 else 2 * torch.finfo(z_dtype).eps
    for name, g, r in zip(("y", "dx", "dw", "db", "dz"), got, ref):
        limit = tol if g.dtype == z_dtype else 1e-5
        assert rel(g, r) < limit, f"{name}: {rel(g, r):.2e}"


@needs_triton
def test_gated_noncontiguous_gate_and_explicit_out_dtype(interpret):
    """A gate sliced from a wider projection (row stride 2C) is read in place; out_dtype wins."""
    c = 24
    x = torch.randn(2, 3, 4, c)
    z = torch.randn(2, 3, 4, 2 * c)[..., c:]
    w, b = params(c)
    dy = torch.randn(2, 3, 4, c)
    got = run(triton_ln, x, w, b, z, dy, out_dtype=torch.bfloat16)
    ref = oracle(x, w, b, z, dy, out_dtype=torch.bfloat16)
    assert got[0].dtype == torch.bfloat16
    assert rel(got[0], ref[0]) < 2 * torch.finfo(torch.bfloat16).eps
    for g, r in zip(got[1:], ref[1:]):  # gradients from a bf16 dy: compare in float32 terms
        assert rel(g, r) < 1e-5


@needs_triton
def test_without_affine_and_frozen_parameters(interpret):
    c = 33
    x = torch.randn(3, 7, c)
    y = layer_norm(x, None, None, 1e-5, backend="triton")
    torch.testing.assert_close(y, F.layer_norm(x, (c,), eps=1e-5), rtol=1e-5, atol=1e-5)
    dy = torch.randn(3, 7, c)
    for w, b in [(None, None), params(c)]:  # no affine; parameters that do not require grad
        xg = x.clone().requires_grad_()
        (dx,) = torch.autograd.grad(layer_norm(xg, w, b, 1e-5, backend="triton"), xg, dy)
        xr = x.double().requires_grad_()
        wr, br = (None, None) if w is None else (w.double(), b.double())
        (dr,) = torch.autograd.grad(layer_norm_reference(xr, wr, br, 1e-5), xr, dy.double())
        assert rel(dx, dr) < 1e-5


@needs_triton
def test_deterministic_parameter_gradients(interpret):
    c = 24
    x, dy = torch.randn(4, 9, c), torch.randn(4, 9, c)
    w, b = params(c)
    first, second = run(triton_ln, x, w, b, None, dy), run(triton_ln, x, w, b, None, dy)
    for a, b_ in zip(first, second):
        assert torch.equal(a, b_)


@needs_triton
def test_default_out_dtype_follows_autocast(interpret):
    c = 24
    x = torch.randn(2, 5, c)
    w, b = params(c)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer_norm(x, w, b, 1e-5, backend="triton")
    assert y.dtype == torch.bfloat16
    assert rel(y, layer_norm_reference(x, w, b)) < 2 * torch.finfo(torch.bfloat16).eps
    assert layer_norm(x, w, b, 1e-5, backend="triton").dtype == torch.float32


@needs_triton
def test_fast_layernorm_triton_backend(interpret):
    """The module on the Triton backend (what CUDA tensors get) = nn.LayerNorm in float32."""
    m, ref = _fast_and_reference_ln(33)
    x = torch.randn(2, 33, 3, 4)
    ln.set_norm_backend("triton")
    try:
        y = m(planar(x))
    finally:
        ln.set_norm_backend(None)
    torch.testing.assert_close(y, ref(planar(x)), rtol=1e-5, atol=1e-5)


@needs_triton
def test_model_norm_triton_matches_torch(interpret, monkeypatch):
    """The tiny network with every LayerNorm on the Triton kernels = the PyTorch norms."""
    from diffmf.model import build_model

    monkeypatch.setattr(tln, "INTERPRET_BLOCK_ROWS", 64)  # fewer programs: the interpreter runs them one by one

    model = build_model("diffmf_tiny")
    ir, vi = torch.rand(1, 1, 4, 8), torch.rand(1, 1, 4, 8)
    results = []
    try:
        for backend in ("torch", "triton"):
            ln.set_norm_backend(backend)
            model.zero_grad()
            y = model(ir, vi)
            y.square().mean().backward()
            results.append((y.detach(), [p.grad.clone() for p in model.parameters()]))
    finally:
        ln.set_norm_backend(None)
    (y_t, g_t), (y_k, g_k) = results
    torch.testing.assert_close(y_k, y_t, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_k, g_t):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


@needs_triton
def test_calls_the_kernels_cannot_take(interpret, monkeypatch):
    """float64 (or a normalized_shape of two dims): an explicit triton is an error that says
    what to do; auto takes the PyTorch path with the same result as F.layer_norm."""
    monkeypatch.delenv(ln.ENV_VAR, raising=False)
    x = torch.randn(3, 8, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=f"cannot take this call: dtype torch.float64.*{ln.ENV_VAR}"):
        layer_norm(x, None, None, backend="triton")
    assert torch.equal(layer_norm(x, None, None, backend="auto"), F.layer_norm(x, (8,)))
    x2 = torch.randn(3, 4, 8)
    with pytest.raises(RuntimeError, match="is not one dim"):
        layer_norm(x2, None, None, backend="triton", normalized_shape=(4, 8))
    ln.set_norm_backend("triton")  # the process-wide setting counts as asking explicitly
    try:
        with pytest.raises(RuntimeError, match="cannot take this call"):
            layer_norm(x, None, None)
    finally:
        ln.set_norm_backend(None)


@needs_triton
def test_triton_on_cpu_without_interpreter_is_an_actionable_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        layer_norm(torch.randn(2, 8), None, None, backend="triton")


# ------------------------------------------------------------------------------------------
# CPU behaviour, dispatch, model state
# ------------------------------------------------------------------------------------------
def test_fast_layernorm_on_cpu_is_nn_layernorm_exactly():
    m, ref = _fast_and_reference_ln(33)
    assert list(m.state_dict()) == ["weight", "bias"]
    xp = torch.randn(2, 33, 3, 4, requires_grad=True)
    y, y_ref = m(planar(xp)), ref(planar(xp))
    assert torch.equal(y, y_ref)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, [xp, m.weight, m.bias], g)
    want = torch.autograd.grad(y_ref, [xp, ref.weight, ref.bias], g)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    # gated form = what SS2D.output computed before: LN(y.to(z.dtype)) * silu(z)
    z = torch.randn(2, 3, 4, 33)
    with torch.no_grad():
        assert torch.equal(m(planar(xp), gate=z), ref(planar(xp).to(z.dtype)) * F.silu(z))
    assert torch.equal(m(planar(xp), gate=z), ref(planar(xp)) * F.silu(z))


def test_backend_selection(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(ln.ENV_VAR, raising=False)
    assert ln.resolve_norm_backend(cpu) == "torch"
    monkeypatch.setenv(ln.ENV_VAR, "torch")
    assert ln.resolve_norm_backend(torch.device("cuda")) == "torch"
    monkeypatch.setenv(ln.ENV_VAR, "fast")
    with pytest.raises(ValueError, match=ln.ENV_VAR):
        ln.get_norm_backend()
    with pytest.raises(ValueError, match="unknown norm backend"):
        ln.set_norm_backend("cuda")
    with pytest.raises(ValueError, match="normalized_shape"):
        layer_norm(torch.randn(2, 8), None, None, normalized_shape=(4,))


def test_twin_matches_torch_layer_norm():
    x = torch.randn(5, 7, 24, dtype=torch.float64)
    w, b = (t.double() for t in params(24))
    torch.testing.assert_close(layer_norm_reference(x, w, b), F.layer_norm(x, (24,), w, b, 1e-5))


def test_model_layernorms_are_fast_and_keys_match_shipped_weights():
    from diffmf.engine.checkpoint import read_weights
    from diffmf.model import build_model
    from diffmf.weights import DEFAULT, resolve

    state, cfg, _ = read_weights(resolve(DEFAULT))
    model = build_model(config=cfg)
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(isinstance(m, FastLayerNorm) for m in norms)
    assert set(model.state_dict()) == set(state)
    restormer = build_model("diffmf_tiny", block="restormer")
    assert all(isinstance(m, FastLayerNorm) for m in restormer.modules() if isinstance(m, nn.LayerNorm))


# ------------------------------------------------------------------------------------------
# the merged form: SS2D's output norm read from the fused scan's route slots
# ------------------------------------------------------------------------------------------
def _route_sums(nc, nr, b, c, h, w, seed=0):
    from diffmf.ops.cross_scan import RouteSums

    g = torch.Generator().manual_seed(seed)
    return RouteSums(torch.randn(nc, b, c, h, w, generator=g), torch.randn(nr, b, c, w, h, generator=g) + 0.5)


def test_route_sums_merge_in_the_scan_order():
    """merge() = (cols summed) + (rows summed)^T, each sum left to right (the order of the
    scan's merge kernel): bitwise equal to that expression, not just close."""
    s = _route_sums(2, 2, 2, 3, 4, 5)
    want = (s.cols[0] + s.cols[1]) + (s.rows[0] + s.rows[1]).transpose(-1, -2)
    assert s.shape == (2, 3, 4, 5) and torch.equal(s.merge(), want)
    one = _route_sums(0, 1, 1, 3, 4, 5)
    assert torch.equal(one.merge(), one.rows[0].transpose(-1, -2))


@needs_triton
@pytest.mark.parametrize("nc,nr,b,c,h,w", [(2, 2, 2, 24, 5, 7), (1, 1, 1, 33, 3, 9), (0, 1, 1, 8, 6, 1), (2, 2, 1, 16, 1, 5)])
def test_merged_norm_matches_merge_then_norm(nc, nr, b, c, h, w, interpret):
    """The Triton merged form (ragged pixel tiles, masked channels, no columns routes, 1-pixel
    rows / columns) = merge, then the gated reference norm, in float32 and with a bf16 gate."""
    from diffmf.ops.layernorm import merged_layer_norm

    sums = _route_sums(nc, nr, b, c, h, w, seed=c)
    m, _ = _fast_and_reference_ln(c)
    for gdt in (torch.float32, torch.bfloat16):
        z = torch.randn(b, h, w, c).to(gdt)
        with torch.no_grad():
            got = merged_layer_norm(sums, m.weight, m.bias, m.eps, gate=z, backend="triton")
            want = layer_norm_reference(sums.merge().permute(0, 2, 3, 1), m.weight, m.bias, m.eps, gate=z)
        assert got.dtype == gdt and got.shape == (b, h, w, c) and got.is_contiguous()
        tol = 1e-5 if gdt == torch.float32 else 2**-7
        torch.testing.assert_close(got.float(), want.float(), rtol=tol, atol=tol)
    with torch.no_grad():  # no gate, no affine parameters
        got = merged_layer_norm(sums, None, None, 1e-5, backend="triton")
    torch.testing.assert_close(got, layer_norm_reference(sums.merge().permute(0, 2, 3, 1), None, None, 1e-5), rtol=1e-5, atol=1e-5)


@needs_triton
def test_merged_norm_with_a_gradient_is_an_error_and_torch_merges(interpret):
    from diffmf.ops.layernorm import merged_layer_norm

    sums = _route_sums(2, 2, 1, 8, 3, 4)
    m, _ = _fast_and_reference_ln(8)
    z = torch.randn(1, 3, 4, 8)
    with pytest.raises(RuntimeError, match="no backward"):
        merged_layer_norm(sums, m.weight, m.bias, gate=z, backend="triton")
    got = merged_layer_norm(sums, m.weight, m.bias, gate=z, backend="torch")  # autograd through the merge
    got.sum().backward()
    assert m.weight.grad is not None
    want = m(sums.merge().permute(0, 2, 3, 1), gate=z)
    torch.testing.assert_close(got, want)
