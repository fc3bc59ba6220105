"""Compiled checks of SS2D's fused inference I/O on a GPU (twelfth session):

* ``x_proj`` (:mod:`diffmf.ops.triton.xproj`): every route's dt, B, C against the bmm twin,
  float32 against a float64 product, bf16 / fp16 within one rounding of the float32 product;
  outputs poisoned with NaN first (every element must be written);
* the fused scan on those frame maps = on the dense maps, bit for bit;
* the merged norm (``_merge_ln_fwd_kernel``) against merge + the reference norm;
* SS2D and the whole paper network at inference with the fused forms against the same
  network with ``x_proj`` on the bmm and the norm backend on PyTorch (fp32 and bf16 autocast).

    PYTHONPATH=src python3 benchmarks/gpu_fused_io.py [--out DIR]

Prints one line per case and a PASS / FAIL summary; exits non-zero on a failure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _poison_cache(nbytes: int = 1 << 28) -> None:
    """Fill the allocator's cached blocks with NaN so that an unwritten output shows."""
    t = torch.full((nbytes // 4,), float("nan"), device="cuda")
    del t


def check_xproj(results: list) -> None:
    from diffmf.ops.triton.xproj import x_proj_triton
    from diffmf.ops.xproj import x_proj_reference

    shapes = [(1, 64, 480, 640, 4, 2, 16), (2, 64, 61, 77, 4, 2, 16), (1, 96, 33, 17, 2, 3, 8), (1, 64, 1, 130, 4, 2, 16)]
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for b, d, h, w, k, r, n in shapes:
            x = torch.randn(b, d, h, w, device="cuda").to(dtype)
            weight = torch.randn(k, r + 2 * n, d, device="cuda") * d**-0.5
            _poison_cache()
            got = [t.dense() for t in x_proj_triton(x, weight, r, n)]
            wq = weight.to(dtype)
            exact = x_proj_reference(x.double(), wq.double(), r, n)
            ok = True
            worst = 0.0
            for g, e in zip(got, exact):
                if not torch.isfinite(g).all():
                    ok = False
                    continue
                if dtype == torch.float32:  # tf32x3 products: a few float32 ulp
                    err = rel(g, e)
                    ok &= err < 2e-6
                else:  # one rounding of the float32-accumulated product (1/2 ulp, +accumulation)
                    ulp = torch.finfo(dtype).eps
                    err = float(((g.double() - e).abs() / (e.abs() + 1e-3)).max())
                    ok &= err < ulp
                worst = max(worst, err)
            results.append(dict(case=f"x_proj {dtype} {b}x{d}x{h}x{w} K={k} R={r} N={n}", ok=bool(ok), err=worst))


def check_scan_frames(results: list) -> None:
    from diffmf.ops.triton import selective_scan_2d_lowrank_triton
    from diffmf.ops.triton.xproj import x_proj_triton

    for dtype, (b, h, w) in ((torch.bfloat16, (1, 480, 640)), (torch.float32, (2, 61, 77))):
        k, d, r, n = 4, 64, 2, 16
        x = torch.randn(b, d, h, w, device="cuda").to(dtype)
        dts, Bs, Cs = x_proj_triton(x, torch.randn(k, r + 2 * n, d, device="cuda") * 0.125, r, n)
        dtw = (torch.randn(k, d, r, device="cuda") * 0.8).to(dtype)
        A = -torch.exp(torch.randn(k * d, n, device="cuda") * 0.5)
        D, bias = torch.randn(k * d, device="cuda"), torch.randn(k * d, device="cuda") * 0.3 - 2
        with torch.no_grad():
            y_f = selective_scan_2d_lowrank_triton(x, dts, dtw, A, Bs, Cs, D, bias, True)
            y_d = selective_scan_2d_lowrank_triton(x, dts.dense(), dtw, A, Bs.dense(), Cs.dense(), D, bias, True)
            sums = selective_scan_2d_lowrank_triton(x, dts, dtw, A, Bs, Cs, D, bias, True, merge=False)
        results.append(dict(case=f"scan on frame maps == dense {dtype} {b}x{h}x{w}", ok=bool(torch.equal(y_f, y_d)), err=rel(y_f, y_d)))
        results.append(dict(case=f"scan route sums merged == merged scan {dtype} {b}x{h}x{w}",
                            ok=bool(torch.equal(sums.merge(), y_f)), err=rel(sums.merge(), y_f)))


def check_merged_norm(results: list) -> None:
    from diffmf.ops.cross_scan import RouteSums
    from diffmf.ops.layernorm import layer_norm_reference, merged_layer_norm

    for (nc, nr, b, c, h, w) in ((2, 2, 1, 64, 480, 640), (2, 2, 2, 64, 61, 77), (0, 1, 1, 96, 33, 17), (1, 1, 1, 128, 7, 300)):
        sums = RouteSums(torch.randn(nc, b, c, h, w, device="cuda"), torch.randn(nr, b, c, w, h, device="cuda") + 0.3)
        weight, bias = torch.randn(c, device="cuda"), torch.randn(c, device="cuda")
        for gdt in (torch.float32, torch.bfloat16):
            z = torch.randn(b, h, w, c, device="cuda").to(gdt)
            _poison_cache()
            with torch.no_grad():
                got = merged_layer_norm(sums, weight, bias, 1e-5, gate=z, backend="triton")
            want = layer_norm_reference(sums.merge().permute(0, 2, 3, 1).double(), weight, bias, 1e-5, gate=z, out_dtype=torch.float64)
            # float32: relative to the output's norm; bf16 gate: one rounding of each element
            if not torch.isfinite(got).all():
                err = float("inf")
            elif gdt == torch.float32:
                err = rel(got, want)
            else:
                err = float(((got.double() - want).abs() / (want.abs() + 1e-2)).max())
            lim = 1e-6 if gdt == torch.float32 else 2**-8
            results.append(dict(case=f"merged norm {gdt} gate, slots {nc}+{nr}, {b}x{c}x{h}x{w}", ok=err < lim, err=err))


def check_network(results: list) -> None:
    """The paper network (shipped weights) at inference: fused forms on (defaults) against
    x_proj on the bmm and every norm on PyTorch, fp32 and bf16 autocast, 480x640."""
    from diffmf.engine.checkpoint import load_weights
    from diffmf.ops import layernorm, xproj

    weights = Path(__file__).resolve().parents[1] / "src" / "diffmf" / "weights" / "diffmf_paper.roadscene.safetensors"
    model = load_weights(weights).cuda().eval()
    ir, vi = torch.rand(1, 1, 480, 640, device="cuda"), torch.rand(1, 1, 480, 640, device="cuda")
    for amp in (False, True):
        outs = []
        for proj, norm in (("auto", "auto"), ("torch", "torch")):
            xproj.set_proj_backend(proj)
            layernorm.set_norm_backend(norm)
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                outs.append(model(ir, vi).float())
        xproj.set_proj_backend(None)
        layernorm.set_norm_backend(None)
        d = (outs[0] - outs[1]).abs()
        lim = 5e-2 if amp else 1e-3  # output in [0, 1]: 13 / 0.26 grey levels
        results.append(dict(case=f"paper network {'bf16 autocast' if amp else 'fp32'}: fused I/O vs bmm + torch norms",
                            ok=bool(torch.isfinite(outs[0]).all() and d.max() < lim), err=float(d.max()), mean=float(d.mean())))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("unset TRITON_INTERPRET (these are the compiled checks)")
    results: list = []
    for fn in (check_xproj, check_scan_frames, check_merged_norm, check_network):
        try:
            fn(results)
        except Exception as e:  # report and go on with the other checks
            results.append(dict(case=f"{fn.__name__} raised {type(e).__name__}: {e}", ok=False, err=float("nan")))
    for r in results:
        extra = f" mean {r['mean']:.2e}" if "mean" in r else ""
        print(f"{'PASS' if r['ok'] else 'FAIL'}  {r['case']}: err {r['err']:.3e}{extra}")
    n_ok = sum(r["ok"] for r in results)
    print(f"{n_ok}/{len(results)} passed on {torch.cuda.get_device_name()}")
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "gpu_fused_io.json").write_text(json.dumps(results, indent=1))
    return 0 if n_ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
