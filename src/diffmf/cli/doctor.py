"""``diffmf doctor``: what this installation runs on, and a quick self-check of the scan.

Reports the versions of Python, PyTorch and Triton, the GPU(s), which selective-scan backend
is active for the device and why, then runs the fused 2-D scan (forward and every gradient)
on a small random problem with the active backend and compares it with the exact PyTorch
oracle (:func:`diffmf.ops.scan_ref.selective_scan_ref`, float64). Exit status 0 when the
check passes. With the Triton backend the first run also compiles the kernels (Triton caches
them on disk, later runs take about a second).
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import platform
import time
from typing import List, Optional, Tuple

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # relative error of float32 kernels against the float64 oracle


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "doctor",
        help="versions, GPU, active scan backend and a self-check against the PyTorch oracle",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--device", default=None, help="device to check (default: cuda if available, else cpu)")
    p.add_argument("--backend", default=None, choices=["auto", "torch", "ref", "triton"],
                   help="check this scan backend instead of the configured one")
    p.add_argument("--no-check", action="store_true", help="only report, skip the self-check")
    p.set_defaults(func=run)
    return p


def _versions() -> List[Tuple[str, str]]:
    import torch

    from diffmf import __version__

    rows = [
        ("diffmf", __version__),
        ("python", f"{platform.python_version()} ({platform.platform()})"),
        ("torch", f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})"),
    ]
    if importlib.util.find_spec("triton") is not None:
        try:
            import triton

            rows.append(("triton", triton.__version__))
        except Exception as exc:  # a broken install must not hide the rest of the report
            rows.append(("triton", f"installed but fails to import: {exc!r}"))
    else:
        rows.append(("triton", "not installed"))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            prop = torch.cuda.get_device_properties(i)
            mem = prop.total_memory / 2**30
            desc = f"{prop.name}, {mem:.0f} GiB, sm_{prop.major}{prop.minor}, {prop.multi_processor_count} SMs"
            rows.append((f"gpu {i}", desc))
    else:
        rows.append(("gpu", "none visible to PyTorch"))
    return rows


def _backend_reason(device, requested: Optional[str]) -> Tuple[str, str]:
    """(resolved backend, why) for tensors on ``device``."""
    from diffmf.ops.dispatch import ENV_VAR, get_backend, resolve_backend, triton_interpreting, triton_status

    configured = requested or get_backend()
    source = "--backend" if requested else (f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "default")
    try:
        name = resolve_backend(device, requested)
    except RuntimeError as exc:
        return "unavailable", f"{configured!r} from {source}: {exc}"
    if configured == "auto":
        status = triton_status(device)
        if name == "triton":
            why = f"auto ({source}): {device.type} tensors and Triton importable"
        elif device.type != "cuda":
            why = f"auto ({source}): {device.type} tensors use the PyTorch path"
        else:
            why = f"auto ({source}): Triton cannot run here ({status})"
    else:
        why = f"{configured!r} requested ({source})"
    if name == "triton" and triton_interpreting():
        why += "; TRITON_INTERPRET=1: kernels run in Triton's CPU interpreter (slow, for tests)"
    return name, why


def _self_check(device, backend: str) -> Tuple[bool, str]:
    """Fused 2-D scan, forward and gradients, active backend vs the float64 loop oracle: the
    op on a per-channel step map and the network's call (rank-2 step inputs and dt_proj
    weights, which the Triton backend expands inside its forward sweeps)."""
    import torch

    from diffmf.ops import selective_scan_2d
    from diffmf.ops.selective_scan import expand_delta, selective_scan_2d_lowrank

    gen = torch.Generator().manual_seed(0)
    b, k, d, n, h, w, r = 1, 4, 8, 16, 10, 12, 2
    u = torch.randn(b, d, h, w, generator=gen)
    delta = torch.randn(b, k, d, h, w, generator=gen) - 1.0
    rest = [
        -torch.exp(torch.randn(k * d, n, generator=gen) * 0.5),
        torch.randn(b, k, n, h, w, generator=gen),
        torch.randn(b, k, n, h, w, generator=gen),
        torch.randn(k * d, generator=gen),
        torch.randn(k * d, generator=gen) * 0.5,
    ]
    dts, weight = torch.randn(b, k, r, h, w, generator=gen) - 0.5, torch.randn(k, d, r, generator=gen) * 0.7
    dy = torch.randn(b, d, h, w, generator=gen)
    cases = {
        "": ([u, delta, *rest], lambda *x, be: selective_scan_2d(*x, True, backend=be),
             ("y", "du", "ddelta", "dA", "dB", "dC", "dD", "dbias")),
        "rank-2 ": ([u, dts, weight, *rest], lambda *x, be: selective_scan_2d_lowrank(*x, True, backend=be),
                    ("y", "du", "ddts", "dW", "dA", "dB", "dC", "dD", "dbias")),
    }
    def run_case(cpu, fn):
        xs = [t.to(device).requires_grad_() for t in cpu]
        y = fn(*xs, be=backend)
        return [y] + list(torch.autograd.grad(y, xs, dy.to(device)))

    compiled = ""
    if device.type == "cuda" and backend == "triton":  # compile the kernels on threads first
        from diffmf.ops.triton.precompile import precompile

        stats = precompile(*(lambda c=c, f=f: run_case(c, f) for c, f, _ in cases.values()))
        if stats.recorded:
            compiled = f"; {stats.recorded} kernels compiled first in {stats.seconds:.1f} s on {stats.threads} threads"
    errs = {}
    t0 = time.perf_counter()
    for prefix, (cpu, fn, names) in cases.items():
        got = run_case(cpu, fn)
        refs_in = [t.double().requires_grad_() for t in cpu]
        if prefix:  # the oracle on the expanded map
            yr = selective_scan_2d(refs_in[0], expand_delta(refs_in[1], refs_in[2]), *refs_in[3:], True, backend="ref")
        else:
            yr = selective_scan_2d(*refs_in, True, backend="ref")
        ref = [yr] + list(torch.autograd.grad(yr, refs_in, dy.double()))
        for nm, g, rr in zip(names, got, ref):
            rr = rr.detach()
            errs[prefix + nm] = float((g.detach().double().cpu() - rr).norm() / rr.norm().clamp_min(1e-300))
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    worst = max(errs, key=errs.get)
    ok = all(e <= TOLERANCE and e == e for e in errs.values())  # e == e: not NaN
    per_tensor = " ".join(f"{k}={v:.0e}" for k, v in errs.items())
    detail = f"{elapsed:.2f} s{compiled}; max relative error {errs[worst]:.1e} ({worst}); {per_tensor}"
    return ok, detail


def run(args: argparse.Namespace) -> int:
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for key, value in _versions():
        print(f"{key:>10s}  {value}")
    name, why = _backend_reason(device, args.backend)
    print(f"{'scan':>10s}  {name} on {device.type}: {why}")
    from diffmf.ops.branches import describe

    print(f"{'branches':>10s}  {describe(device)}")
    if name == "triton":
        from diffmf.ops.dispatch import triton_interpreting
        from diffmf.ops.triton.precompile import describe as compiling

        print(f"{'compile':>10s}  {'nothing: the interpreter runs the kernels' if triton_interpreting() else compiling()}")
    if name == "unavailable":
        return 1
    if args.no_check:
        return 0
    try:
        ok, detail = _self_check(device, name)
    except Exception as exc:  # report, do not crash: this command is for diagnosing failures
        log.debug("self-check failed", exc_info=True)
        print(f"{'check':>10s}  FAILED with {type(exc).__name__}: {exc}")
        return 1
    print(f"{'check':>10s}  {'ok' if ok else 'FAILED'}: {name} vs float64 oracle, 2-D scan forward + 7 gradients and its rank-2 call (+ 8), {detail}")
    return 0 if ok else 1
