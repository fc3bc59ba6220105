"""SS2D's x_proj: the Triton kernel (CPU interpreter) that writes dt, B, C in the fused scan's
frame layouts vs its PyTorch twin (one bmm), the scan reading those frames in place, and the
backend rules (auto = Triton only at inference on CUDA with the Triton scan; an explicit
``triton`` that cannot run is an error, never a silent fall-back)."""
from __future__ import annotations

import pytest
import torch

from diffmf.ops import xproj as xp
from diffmf.ops.cross_scan import FrameMaps
from triton_interp import INTERPRETED, import_interpreted, interpret, needs_interpreter  # noqa: F401 (fixture)

needs_triton = needs_interpreter("test_xproj.py")

if INTERPRETED:
    import_interpreted("diffmf.ops.triton.kernels")
    (txp,) = import_interpreted("diffmf.ops.triton.xproj")
    from diffmf.ops.triton import scan as tscan
    from diffmf.ops.triton import selective_scan_2d_lowrank_triton


def _inputs(b, d, h, w, k, r, n, dtype=torch.float32):
    g = torch.Generator().manual_seed(b * 10000 + d * 1000 + h * 100 + w * 10 + k + r + n)
    x = torch.randn(b, d, h, w, generator=g).to(dtype)
    weight = torch.randn(k, r + 2 * n, d, generator=g) * d**-0.5
    return x, weight


@needs_triton
@pytest.mark.parametrize("b,d,h,w,k,r,n", [(1, 8, 5, 7, 4, 2, 16), (2, 12, 3, 9, 4, 2, 4), (1, 6, 1, 19, 2, 3, 8),
                                           (1, 5, 17, 1, 1, 1, 4), (2, 16, 4, 4, 4, 4, 16), (1, 8, 9, 13, 4, 2, 16)])
def test_frames_hold_the_bmm_values(b, d, h, w, k, r, n, interpret):
    """Every route's dt, B, C equal the bmm's (float32: no TF32 in the kernel), for ragged
    pixel blocks, channel counts that are not powers of two, 1-pixel rows / columns, 1, 2,
    4 routes, and more pixel blocks than programs (9 x 13: 8 blocks walked by 3 programs)."""
    x, weight = _inputs(b, d, h, w, k, r, n)
    got = txp.x_proj_triton(x, weight, r, n)
    want = xp.x_proj_reference(x, weight, r, n)
    for name, g, ref in zip(("dt", "B", "C"), got, want):
        assert isinstance(g, FrameMaps) and g.shape == ref.shape, name
        torch.testing.assert_close(g.dense(), ref, rtol=1e-5, atol=1e-5, msg=name)


@needs_triton
def test_frames_are_laid_out_as_the_scan_reads_them(interpret, monkeypatch):
    """B / C: state-contiguous, the rows routes over transposed (W, H) pixels; dt: packed
    planes, transposed for the rows routes. The scan then copies none of them (no relayout or
    transpose launch for them: only u's transpose remains)."""
    b, d, h, w, k, r, n = 1, 8, 5, 7, 4, 2, 4
    x, weight = _inputs(b, d, h, w, k, r, n)
    dts, Bs, Cs = txp.x_proj_triton(x, weight, r, n)
    for t in (Bs, Cs):
        assert tscan._is_state_major(t.rows, True) and tscan._is_state_major(t.cols, False)
    assert dts.rows.transpose(3, 4).stride()[2:] == (h * w, h, 1)
    assert dts.cols.stride()[2:] == (h * w, w, 1)

    calls = []
    monkeypatch.setattr(tscan, "relayout", lambda *a, **kw: calls.append("relayout"))
    real_transpose = tscan.transpose_planes
    monkeypatch.setattr(tscan, "transpose_planes", lambda *a, **kw: (calls.append("transpose"), real_transpose(*a, **kw))[1])
    A = -torch.rand(k * d, n) - 0.5
    with torch.no_grad():
        selective_scan_2d_lowrank_triton(x, dts, torch.randn(k, d, r), A, Bs, Cs, torch.ones(k * d), torch.zeros(k * d), True)
    assert calls == ["transpose"]  # u for the rows frame


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scan_on_frames_equals_scan_on_dense_maps(dtype, interpret):
    """The fused scan gives the same y, bit for bit, whether dt, B, C come as frame maps or as
    the dense maps with the same values."""
    b, d, h, w, k, r, n = 2, 6, 5, 6, 4, 2, 4
    x, weight = _inputs(b, d, h, w, k, r, n, dtype)
    dts, Bs, Cs = txp.x_proj_triton(x, weight, r, n)
    dtw = (torch.randn(k, d, r) * 0.8).to(dtype)
    A = -torch.rand(k * d, n) - 0.5
    D, bias = torch.randn(k * d), torch.randn(k * d) * 0.3
    with torch.no_grad():
        y_frames = selective_scan_2d_lowrank_triton(x, dts, dtw, A, Bs, Cs, D, bias, True)
        y_dense = selective_scan_2d_lowrank_triton(x, dts.dense(), dtw, A, Bs.dense(), Cs.dense(), D, bias, True)
    assert torch.equal(y_frames, y_dense)


@needs_triton
def test_frames_with_a_gradient_to_compute_go_dense(interpret):
    """A gradient through u with frame inputs: the scan makes them dense and runs its
    autograd op (same y as without the gradient)."""
    b, d, h, w, k, r, n = 1, 4, 3, 5, 4, 2, 4
    x, weight = _inputs(b, d, h, w, k, r, n)
    dts, Bs, Cs = txp.x_proj_triton(x, weight, r, n)
    args = (torch.randn(k, d, r), -torch.rand(k * d, n) - 0.5, Bs, Cs, torch.ones(k * d), torch.zeros(k * d), True)
    u = x.clone().requires_grad_()
    y = selective_scan_2d_lowrank_triton(u, dts, args[0], args[1], *args[2:])
    y.sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()
    with torch.no_grad():
        torch.testing.assert_close(y.detach(), selective_scan_2d_lowrank_triton(x, dts, *args), rtol=0, atol=0)


@needs_triton
def test_bf16_within_rounding_of_the_bmm(interpret):
    """bf16: weight rounded to bf16, float32 accumulation, output rounded to bf16 (the GPU
    rounds to nearest, the interpreter truncates): within 2 bf16 ulp of the bmm."""
    x, weight = _inputs(1, 16, 4, 6, 4, 2, 16, torch.bfloat16)
    got = txp.x_proj_triton(x, weight, 2, 16)
    want = xp.x_proj_reference(x, weight.bfloat16(), 2, 16)
    for g, ref in zip(got, want):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g.dense().float(), ref.float(), rtol=2 * 2.0**-8, atol=1e-3)


def test_auto_runs_torch_on_cpu_and_with_gradients():
    x, weight = _inputs(1, 4, 3, 3, 4, 2, 4)
    assert xp.resolve_proj_backend(x, weight) == "torch"
    out = xp.x_proj(x, weight, 2, 4)
    assert all(isinstance(t, torch.Tensor) for t in out)


@needs_triton
def test_explicit_triton_with_a_gradient_is_an_error(interpret):
    x, weight = _inputs(1, 4, 3, 3, 4, 2, 4)
    weight.requires_grad_()
    with pytest.raises(RuntimeError, match="no backward"):
        xp.x_proj(x, weight, 2, 4, backend="triton")
    with torch.no_grad():
        assert isinstance(xp.x_proj(x, weight, 2, 4, backend="triton")[1], FrameMaps)


@needs_triton
def test_schedule_defaults_and_override(monkeypatch):
    """GPU schedules per dtype (float32: persistent programs with staged x tiles; 16-bit: one
    program per block), the interpreter's, the benchmark override, and a malformed override
    named in the error."""
    monkeypatch.delenv(txp.TILE_ENV, raising=False)
    per_sm, _, _, stages = txp.schedule(torch.float32, False)
    assert per_sm > 0 and stages > 1
    per_sm, _, _, stages = txp.schedule(torch.bfloat16, False)
    assert per_sm == 0 and stages == 1
    assert txp.schedule(torch.float32, True) == (0, txp.INTERPRET_BLOCK_PIXELS, 1, 1)
    monkeypatch.setenv(txp.TILE_ENV, "4,16,1,2")
    assert txp.schedule(torch.bfloat16, False) == (4, 16, 1, 2)
    monkeypatch.setenv(txp.TILE_ENV, "4,16")
    with pytest.raises(ValueError, match=txp.TILE_ENV):
        txp.schedule(torch.bfloat16, False)


def test_shape_errors_name_the_shapes():
    x, weight = _inputs(1, 4, 3, 3, 4, 2, 4)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        xp.x_proj(x[:, :3], weight, 2, 4)
    with pytest.raises(ValueError, match="R \\+ 2N"):
        xp.x_proj(x, weight, 3, 4)


def test_frame_maps_dense_round_trip():
    """FrameMaps of a dense map's slices give the map back (routes interleaved 0, 1, 2, 3)."""
    m = torch.randn(2, 4, 3, 5, 6)
    fm = FrameMaps(m[:, 0::2], m[:, 1::2])
    assert fm.shape == m.shape and torch.equal(fm.dense(), m)
    one = FrameMaps(m[:, :1], m[:, 1:1])
    assert one.shape == (2, 1, 3, 5, 6) and torch.equal(one.dense(), m[:, :1])


@needs_triton
@pytest.mark.parametrize("routes", [4, 2])
def test_ss2d_at_inference_on_the_fused_paths_matches_torch(routes, interpret):
    """SS2D with every op on Triton (dwconv, x_proj into frame maps, the scan returning its
    route sums, the norm summing them) = SS2D on PyTorch, and the fused forms are taken."""
    import_interpreted("diffmf.ops.triton.layernorm", "diffmf.ops.triton.dwconv")
    from diffmf.model.vss import SS2D
    from diffmf.ops import dwconv, layernorm, set_backend
    from diffmf.ops.cross_scan import RouteSums

    setters = (set_backend, dwconv.set_conv_backend, xp.set_proj_backend, layernorm.set_norm_backend)
    torch.manual_seed(routes)
    m = SS2D(8, d_state=4, routes=routes).eval()
    x = torch.randn(2, 5, 6, 8)
    try:
        with torch.no_grad():
            for s in setters:
                s("torch")
            want = m(x)
            for s in setters:
                s("triton")
            p = m.project(x)
            assert all(isinstance(t, FrameMaps) for t in (p.dt, p.B, p.C))
            y = m.scan(p.x, p.dt, p.B, p.C)
            assert isinstance(y, RouteSums)
            got = m(x)
    finally:
        for s in setters:
            s(None)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
