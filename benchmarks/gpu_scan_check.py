"""Compiled correctness of the Triton selective scan on a CUDA GPU, at real shapes.

Compares the Triton kernels (forward and all gradients) with float64 oracles computed on the
same GPU from the same (already rounded) inputs:

* the exact step loop (:func:`diffmf.ops.scan_ref.selective_scan_ref`) on short sequences;
* the chunked PyTorch scan (:func:`diffmf.ops.scan_torch.selective_scan_torch`, autograd) in
  float64 on long ones, including the paper's shape (64 channels, N = 16, 4 routes);

with bf16 and fp32 inputs, every route, exchanged B/C, ragged sizes, delta beyond the
softplus threshold and strong decay; checks that two runs are bitwise identical; and the
network's rank-R call (dt_proj inside the sweeps: y and every gradient including
those of the step inputs and weights; ``--lowrank-only`` runs just these cases).
Errors are ||triton - oracle|| / ||oracle|| per tensor. Prints a table; ``--out DIR`` writes
``gpu_scan_check.json``. Exit status 1 if any check fails.

    PYTHONPATH=src python3 benchmarks/gpu_scan_check.py --out results/
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Dict, List, Optional

import torch

from diffmf.ops import selective_scan, selective_scan_2d
from diffmf.ops.triton import selective_scan_2d_triton, selective_scan_triton

NAMES = ("y", "du", "ddelta", "dA", "dB", "dC", "dD", "dbias")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def inputs_2d(batch, k, d, n, h, w, dtype, dev, *, dt_shift=0.0, a_scale=1.0, gen=None):
    g = gen
    u = torch.randn(batch, d, h, w, device=dev, generator=g).to(dtype)
    dt = (torch.randn(batch, k, d, h, w, device=dev, generator=g) * 0.5 + dt_shift - 2.0).to(dtype)
    A = -torch.exp(torch.randn(k * d, n, device=dev, generator=g) * 0.5) * a_scale
    B = torch.randn(batch, k, n, h, w, device=dev, generator=g).to(dtype)
    C = torch.randn(batch, k, n, h, w, device=dev, generator=g).to(dtype)
    D = torch.randn(k * d, device=dev, generator=g)
    bias = torch.randn(k * d, device=dev, generator=g) * 0.5
    return [u, dt, A, B, C, D, bias]


def run_2d(fn, ins, dy, oracle_backend: Optional[str] = None):
    xs = [t.detach().clone().requires_grad_() for t in ins]
    if oracle_backend is None:
        y = fn(*xs, True)
    else:
        xs = [t.detach().double().requires_grad_() for t in ins]
        y = selective_scan_2d(*xs, True, backend=oracle_backend)
    grads = torch.autograd.grad(y, xs, dy.to(y.dtype))
    return [y.detach()] + [g.detach() for g in grads]


def run_1d(ins, dy, oracle_backend: Optional[str] = None):
    if oracle_backend is None:
        xs = [t.detach().clone().requires_grad_() for t in ins]
        y = selective_scan_triton(*xs, True)
    else:
        xs = [t.detach().double().requires_grad_() for t in ins]
        y = selective_scan(*xs, True, backend=oracle_backend)
    grads = torch.autograd.grad(y, xs, dy.to(y.dtype))
    return [y.detach()] + [g.detach() for g in grads]


def tolerances(dtype: torch.dtype) -> Dict[str, float]:
    """float32 kernels vs float64: ~1e-7 per step, sums over long sequences ~1e-5; gradients
    returned in the input dtype (du, ddelta, dB, dC) carry that dtype's rounding."""
    tol = {"*": 5e-5, "dA": 2e-4, "dD": 2e-4, "dbias": 2e-4}
    low = {torch.bfloat16: 1e-2, torch.float16: 2e-3}.get(dtype)
    if low:
        tol.update(du=low, ddelta=low, dB=low, dC=low)
    return tol


def compare(name: str, got: List[torch.Tensor], ref: List[torch.Tensor], tol: Dict[str, float], rows: list) -> bool:
    errs = {n: rel(a, b) for n, a, b in zip(NAMES, got, ref)}
    finite = all(bool(torch.isfinite(t).all()) for t in got)
    ok = finite and all(errs[n] <= tol.get(n, tol["*"]) for n in errs)
    rows.append(dict(case=name, ok=ok, finite=finite, **{n: errs[n] for n in errs}))
    print(f"{name:46s} {'PASS' if ok else 'FAIL'} " + " ".join(f"{n}={errs[n]:.1e}" for n in NAMES), flush=True)
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="directory for gpu_scan_check.json")
    ap.add_argument("--full", default="480x640", help="HxW of the paper-shape forward check")
    ap.add_argument("--lowrank-only", action="store_true", help="only the rank-R (dt_proj inside the sweeps) cases")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    import triton

    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(1234)
    info = dict(
        gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
        python=platform.python_version(), date=time.strftime("%Y-%m-%d"),
    )
    print(info, flush=True)
    rows: list = []
    ok = True
    t0 = time.time()

    # 1. short sequences against the exact loop (float64), 1-D contract: ragged, groups, padded N
    for (b, g, d, n, L, dtype) in [] if args.lowrank_only else [(2, 3, 5, 16, 200, torch.float32), (1, 2, 64, 16, 333, torch.bfloat16), (2, 1, 7, 5, 129, torch.float16)]:
        u = torch.randn(b, g * d, L, device=dev, generator=gen).to(dtype)
        dt = (torch.randn(b, g * d, L, device=dev, generator=gen) - 1.0).to(dtype)
        A = -torch.exp(torch.randn(g * d, n, device=dev, generator=gen))
        Bm = torch.randn(b, g, n, L, device=dev, generator=gen).to(dtype)
        Cm = torch.randn(b, g, n, L, device=dev, generator=gen).to(dtype)
        D = torch.randn(g * d, device=dev, generator=gen)
        bias = torch.randn(g * d, device=dev, generator=gen) * 0.5
        ins = [u, dt, A, Bm, Cm, D, bias]
        dy = torch.randn(b, g * d, L, device=dev, generator=gen)
        ok &= compare(f"1d b{b} g{g} d{d} n{n} L{L} {str(dtype)[6:]} vs loop", run_1d(ins, dy), run_1d(ins, dy, "ref"), tolerances(dtype), rows)

    if not args.lowrank_only:  # sections 2-4
        # 2. 2-D fused op, every route, against the exact float64 loop (autograd), several regimes
        cases = [
            ("2d k4 d64 n16 120x160 bf16", dict(batch=1, k=4, d=64, n=16, h=120, w=160, dtype=torch.bfloat16)),
            ("2d k4 d64 n16 61x77 fp32 ragged b2", dict(batch=2, k=4, d=64, n=16, h=61, w=77, dtype=torch.float32)),
            ("2d k2 d48 n16 67x93 bf16", dict(batch=1, k=2, d=48, n=16, h=67, w=93, dtype=torch.bfloat16)),
            ("2d k1 d32 n8 40x300 fp16", dict(batch=1, k=1, d=32, n=8, h=40, w=300, dtype=torch.float16)),
            ("2d k4 d64 n16 48x64 delta>20", dict(batch=1, k=4, d=64, n=16, h=48, w=64, dtype=torch.float32, dt_shift=24.0)),
            ("2d k4 d64 n16 48x64 strong decay", dict(batch=1, k=4, d=64, n=16, h=48, w=64, dtype=torch.float32, dt_shift=3.0, a_scale=30.0)),
            ("2d k4 d200 n16 40x40 (channel blocks)", dict(batch=1, k=4, d=200, n=16, h=40, w=40, dtype=torch.float32)),
        ]
        for name, c in cases:
            ins = inputs_2d(c["batch"], c["k"], c["d"], c["n"], c["h"], c["w"], c["dtype"], dev,
                            dt_shift=c.get("dt_shift", 0.0), a_scale=c.get("a_scale", 1.0), gen=gen)
            dy = torch.randn(c["batch"], c["d"], c["h"], c["w"], device=dev, generator=gen)
            got = run_2d(selective_scan_2d_triton, ins, dy)
            ref = run_2d(None, ins, dy, "ref")
            ok &= compare(name + " vs loop", got, ref, tolerances(c["dtype"]), rows)

        # 3. exchanged B/C: modality 1's scan uses modality 2's B and C; gradients reach both
        d, n, h, w = 64, 16, 60, 80
        ins1 = inputs_2d(1, 4, d, n, h, w, torch.bfloat16, dev, gen=gen)
        ins2 = inputs_2d(1, 4, d, n, h, w, torch.bfloat16, dev, gen=gen)
        dy = torch.randn(1, d, h, w, device=dev, generator=gen)
        def exchanged(fn_or_backend):
            x1 = [t.detach().clone() for t in ins1]
            x2 = [t.detach().clone() for t in ins2]
            if fn_or_backend == "triton":
                x1 = [t.requires_grad_() for t in x1]
                x2 = [t.requires_grad_() for t in x2]
                y = selective_scan_2d_triton(x1[0], x1[1], x1[2], x2[3], x2[4], x1[5], x1[6], True)
                y = y + selective_scan_2d_triton(x2[0], x2[1], x2[2], x1[3], x1[4], x2[5], x2[6], True)
            else:
                x1 = [t.double().requires_grad_() for t in x1]
                x2 = [t.double().requires_grad_() for t in x2]
                y = selective_scan_2d(x1[0], x1[1], x1[2], x2[3], x2[4], x1[5], x1[6], True, backend="ref")
                y = y + selective_scan_2d(x2[0], x2[1], x2[2], x1[3], x1[4], x2[5], x2[6], True, backend="ref")
            g = torch.autograd.grad(y, [x1[3], x1[4], x2[3], x2[4]], dy.to(y.dtype))
            return [y.detach(), g[0], g[1], g[2], g[3]]
        got, ref = exchanged("triton"), exchanged("torch")
        errs = [rel(a, b) for a, b in zip(got, ref)]
        ex_ok = all(e <= 1e-2 for e in errs[1:]) and errs[0] <= 5e-5  # dB, dC returned in bf16
        ok &= ex_ok
        rows.append(dict(case="exchanged B/C", ok=ex_ok, errors=errs))
        print(f"{'exchanged B/C (y, dB1, dC1, dB2, dC2)':46s} {'PASS' if ex_ok else 'FAIL'} " + " ".join(f"{e:.1e}" for e in errs), flush=True)

        # 4. the paper shape: forward vs the loop at 240x320; at the full size, two segment
        #    lengths (different chains) must agree, and runs must be bitwise repeatable
        ins = inputs_2d(1, 4, 64, 16, 240, 320, torch.bfloat16, dev, gen=gen)
        with torch.no_grad():
            y1 = selective_scan_2d_triton(*ins, True)
        yr = selective_scan_2d(*[t.double() for t in ins], True, backend="ref")
        e = rel(y1, yr)
        f_ok = e <= 5e-5 and bool(torch.isfinite(y1).all())
        ok &= f_ok
        rows.append(dict(case="2d k4 d64 n16 240x320 bf16 forward vs loop", ok=f_ok, y=e))
        print(f"{'2d k4 d64 n16 240x320 bf16 forward vs loop':46s} {'PASS' if f_ok else 'FAIL'} y={e:.1e}", flush=True)
        H, W = (int(v) for v in args.full.split("x"))
        ins = inputs_2d(1, 4, 64, 16, H, W, torch.bfloat16, dev, gen=gen)
        with torch.no_grad():
            y1 = selective_scan_2d_triton(*ins, True)
            y2 = selective_scan_2d_triton(*ins, True)
            os.environ["DIFFMF_TRITON_SEGLEN"] = str(max(H, W))  # one segment per line
            y3 = selective_scan_2d_triton(*ins, True)
            del os.environ["DIFFMF_TRITON_SEGLEN"]
        e = rel(y1, y3)
        same = bool(torch.equal(y1, y2))
        f_ok = e <= 1e-5 and same and bool(torch.isfinite(y1).all())
        ok &= f_ok
        rows.append(dict(case=f"2d k4 d64 n16 {H}x{W} bf16 forward, two segmentations", ok=f_ok, y=e, deterministic=same))
        print(f"{f'2d {H}x{W} bf16 fwd: seglen auto vs {max(H, W)}':46s} {'PASS' if f_ok else 'FAIL'} y={e:.1e} bitwise-repeatable={same}", flush=True)
        ins = inputs_2d(1, 4, 64, 16, 240, 320, torch.bfloat16, dev, gen=gen)
        dy = torch.randn(1, 64, 240, 320, device=dev, generator=gen)
        g1, g2 = run_2d(selective_scan_2d_triton, ins, dy), run_2d(selective_scan_2d_triton, ins, dy)
        det = all(torch.equal(a, b) for a, b in zip(g1, g2))
        ok &= det
        rows.append(dict(case="backward bitwise repeatable 240x320", ok=det))
        print(f"{'backward bitwise repeatable 240x320':46s} {'PASS' if det else 'FAIL'}", flush=True)

    # 5. dt_proj inside the sweeps (the network's call): rank-R step inputs + weights.
    #    Gradients (including those of dts and of the weights) against the float64 loop on
    #    the expanded map; bf16 forward against the fused op on expand_delta's bf16 map.
    from diffmf.ops.selective_scan import expand_delta
    from diffmf.ops.triton import selective_scan_2d_lowrank_triton

    lr_names = ("y", "du", "ddts", "dW", "dA", "dB", "dC", "dD", "dbias")
    for (b, k, d, n, h, w, r, dtype) in [(2, 4, 64, 16, 61, 77, 2, torch.float32), (1, 4, 64, 16, 60, 80, 2, torch.bfloat16),
                                         (1, 2, 48, 16, 33, 50, 3, torch.float32)]:
        u, _, A, Bm, Cm, D, bias = inputs_2d(b, k, d, n, h, w, dtype, dev, gen=gen)
        dts = (torch.randn(b, k, r, h, w, device=dev, generator=gen) * 0.7 - 1.0).to(dtype)
        W = (torch.randn(k, d, r, device=dev, generator=gen) * 0.7).to(dtype)
        dy = torch.randn(b, d, h, w, device=dev, generator=gen)
        ins = [u, dts, W, A, Bm, Cm, D, bias]
        xs = [t.detach().clone().requires_grad_() for t in ins]
        y = selective_scan_2d_lowrank_triton(*xs, True)
        got = [y.detach()] + list(torch.autograd.grad(y, xs, dy))
        x64 = [t.detach().double().requires_grad_() for t in ins]
        delta = expand_delta(x64[1], x64[2])
        with torch.no_grad():  # rounded to the input dtype from float32 sums (as the kernels, and
            # as expand_delta on the CPU; cuBLAS's bf16 bmm may reduce in lower precision)
            rounded = expand_delta(dts.float(), W.float()).to(dtype).double()
        delta = delta + (rounded - delta).detach()
        y64 = selective_scan_2d(x64[0], delta, *x64[3:], True, backend="ref")
        ref = [y64.detach()] + list(torch.autograd.grad(y64, x64, dy.double()))
        errs = {nm: rel(a_, b_) for nm, a_, b_ in zip(lr_names, got, ref)}
        tol = tolerances(dtype)
        low = 1e-2 if dtype == torch.bfloat16 else None
        limit = {nm: (low if (low and nm in ("du", "ddts", "dW", "dB", "dC")) else tol.get(nm, 2e-4 if nm == "dW" else tol["*"])) for nm in lr_names}
        case_ok = all(bool(torch.isfinite(t).all()) for t in got) and all(errs[nm] <= limit[nm] for nm in lr_names)
        name = f"2d lowrank R{r} k{k} d{d} n{n} {h}x{w} {str(dtype)[6:]} b{b}"
        with torch.no_grad():
            y_exp = selective_scan_2d_triton(u, rounded.to(dtype), A, Bm, Cm, D, bias, True)
            y_fused = selective_scan_2d_lowrank_triton(u, dts, W, A, Bm, Cm, D, bias, True)
        e_exp = rel(y_fused, y_exp)
        # bf16: the same rounded steps into the same kernels -> bitwise; fp32: FMA order only
        case_ok &= bool(torch.equal(y_fused, y_exp)) if dtype == torch.bfloat16 else e_exp <= 1e-6
        ok &= case_ok
        rows.append(dict(case=name, ok=case_ok, vs_expanded_map=e_exp, bitwise_vs_expanded=bool(torch.equal(y_fused, y_exp)), **errs))
        print(f"{name:46s} {'PASS' if case_ok else 'FAIL'} " + " ".join(f"{nm}={errs[nm]:.1e}" for nm in lr_names)
              + f" | y vs expanded map {e_exp:.1e} (bitwise {torch.equal(y_fused, y_exp)})", flush=True)

    print(f"{'ALL PASS' if ok else 'SOME FAILED'} in {time.time() - t0:.0f} s", flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "gpu_scan_check.json"), "w") as f:
            json.dump(dict(info=info, ok=ok, rows=rows), f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
