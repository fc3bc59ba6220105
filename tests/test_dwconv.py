"""SS2D's depthwise conv + SiLU: the Triton kernel (CPU interpreter) vs the PyTorch twin,
and the backend rules (auto = Triton only on CUDA at inference; an explicit ``triton`` that
cannot run is an error, never a silent fall-back)."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from diffmf.ops import dwconv as dw
from triton_interp import INTERPRETED, import_interpreted, interpret, needs_interpreter  # noqa: F401 (fixture)

needs_triton = needs_interpreter("test_dwconv.py")

if INTERPRETED:
    (tdw,) = import_interpreted("diffmf.ops.triton.dwconv")


def _inputs(b, h, w, c, k, dtype=torch.float32, bias=True):
    g = torch.Generator().manual_seed(b * 1000 + h * 100 + w * 10 + c + k)
    x = torch.randn(b, h, w, c, generator=g).to(dtype)
    weight = torch.randn(c, 1, k, k, generator=g) * 0.5
    bb = torch.randn(c, generator=g) if bias else None
    return x, weight, bb


@needs_triton
@pytest.mark.parametrize("b,h,w,c,k", [(2, 5, 7, 10, 3), (1, 1, 19, 3, 3), (1, 17, 1, 33, 3), (1, 6, 9, 5, 5), (1, 4, 4, 2, 1)])
def test_triton_matches_the_pytorch_twin(b, h, w, c, k, interpret):
    """Odd sizes (several channel / column tiles, masked edges), 1-pixel rows and columns
    (all taps but the centre padded), kernel sizes 1, 3, 5."""
    x, weight, bias = _inputs(b, h, w, c, k)
    got = tdw.dwconv_silu_triton(x, weight, bias, torch.float32)
    ref = dw.dwconv_silu_reference(x, weight, bias, (k - 1) // 2)
    assert got.shape == (b, c, h, w) and got.is_contiguous()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@needs_triton
def test_strided_channels_last_view_and_no_bias(interpret):
    """A channels-last view with strides (a slice of a wider last dim, as x of an in_proj
    output would be) is read in place; bias None."""
    wide, weight, _ = _inputs(2, 6, 7, 12, 3, bias=False)
    x = wide[..., 2:9]
    weight = weight[:7]
    got = tdw.dwconv_silu_triton(x, weight, None, torch.float32)
    torch.testing.assert_close(got, dw.dwconv_silu_reference(x, weight, None, 1), rtol=1e-5, atol=1e-5)


@needs_triton
def test_bf16_rounds_like_pytorch(interpret):
    """bf16 input: weight and bias rounded to bf16 (autocast's rule for conv2d), the conv
    output rounded before the SiLU; within bf16 rounding of the twin run in bf16."""
    x, weight, bias = _inputs(1, 5, 8, 6, 3, dtype=torch.bfloat16)
    got = tdw.dwconv_silu_triton(x, weight, bias, torch.bfloat16)
    ref = dw.dwconv_silu_reference(x, weight.bfloat16(), bias.bfloat16(), 1)
    assert got.dtype == torch.bfloat16
    # two roundings to bf16 (the interpreter truncates where the GPU rounds to nearest): 2 ulp
    torch.testing.assert_close(got.float(), ref.float(), rtol=2**-6, atol=2**-6)
    assert (got.float() - ref.float()).abs().mean() < 2**-8


@needs_triton
def test_public_op_dispatch_under_the_interpreter(interpret, monkeypatch):
    """backend='triton' runs the kernel (no grad); with a gradient needed it is an error
    that says what to do; auto with a gradient takes the PyTorch path (autograd works)."""
    x, weight, bias = _inputs(1, 4, 5, 3, 3)
    with torch.no_grad():
        y = dw.dwconv_silu(x, weight, bias, 1, backend="triton")
    torch.testing.assert_close(y, dw.dwconv_silu_reference(x, weight, bias, 1), rtol=1e-5, atol=1e-5)
    wg = weight.clone().requires_grad_()
    with pytest.raises(RuntimeError, match="no backward.*DIFFMF_CONV_BACKEND"):
        dw.dwconv_silu(x, wg, bias, 1, backend="triton")
    assert dw.resolve_conv_backend(x, wg, bias, "auto") == "torch"


def test_cpu_auto_is_the_exact_previous_path(monkeypatch):
    """On the CPU, auto is the PyTorch path bit for bit (planar copy, conv2d, SiLU), and the
    SS2D module output is unchanged with the backend forced to torch."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, weight, bias = _inputs(2, 5, 6, 4, 3)
    ref = F.silu(F.conv2d(x.permute(0, 3, 1, 2).contiguous(), weight, bias, padding=1, groups=4))
    assert dw.resolve_conv_backend(x, weight, bias) == "torch"
    assert torch.equal(dw.dwconv_silu(x, weight, bias, 1), ref)
    with pytest.raises(RuntimeError, match="conv backend 'triton' unavailable"):
        dw.dwconv_silu(x, weight, bias, 1, backend="triton")


def test_bad_weight_shapes_are_refused():
    x, weight, bias = _inputs(1, 4, 4, 3, 3)
    with pytest.raises(ValueError, match="depthwise"):
        dw.dwconv_silu(x, weight[:2], bias, 1)
    with pytest.raises(ValueError, match="padding"):
        dw.dwconv_silu(x, weight, bias, 0)
    with pytest.raises(ValueError, match="unknown conv backend"):
        dw.dwconv_silu(x, weight, bias, 1, backend="cudnn")


@pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                    reason="compiled-kernel check: needs a CUDA GPU and TRITON_INTERPRET=0 "
                    "(TRITON_INTERPRET=0 pytest tests/test_dwconv.py)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_kernel_on_gpu(dtype, monkeypatch):
    """The compiled kernel at a real SS2D shape (and an odd one) against the PyTorch twin on the GPU."""
    from diffmf.ops.triton.dwconv import dwconv_silu_triton

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # an fp32 twin in fp32

    for b, h, w, c in ((1, 480, 640, 64), (2, 37, 53, 129)):
        x, weight, bias = (t.cuda() for t in _inputs(b, h, w, c, 3, dtype=dtype))
        got = dwconv_silu_triton(x, weight, bias, dtype)
        ref = dw.dwconv_silu_reference(x, weight.to(dtype), bias.to(dtype), 1)
        tol = 1e-5 if dtype == torch.float32 else 2**-7
        torch.testing.assert_close(got.float(), ref.float(), rtol=tol, atol=tol)


@needs_triton
def test_malformed_tile_override_names_the_variable(monkeypatch):
    """The benchmark override of the GPU tile is parsed before any launch; a malformed value is
    an error that names the variable and the expected form."""
    monkeypatch.setattr(tdw, "triton_interpreting", lambda: False)
    monkeypatch.setenv(tdw.TILE_ENV, "32,32")
    x, weight, bias = _inputs(1, 4, 5, 8, 3)
    with pytest.raises(ValueError, match=f"{tdw.TILE_ENV}.*channels,columns,warps"):
        tdw.dwconv_silu_triton(x, weight, bias, torch.float32)
