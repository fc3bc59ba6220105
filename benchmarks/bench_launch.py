"""Host cost of launching the scan's Triton kernels (CUDA GPU).

Records every kernel launch of one 2-D scan forward (and backward), then re-issues each
recorded launch ``--reps`` times two ways and reports microseconds per launch:

* ``jit``: ``kernel[grid](*args, **meta)``, Triton's normal path (argument binding,
  specialisation key, cache lookup, launch);
* ``direct``: the compiled kernel's own launcher (``CompiledKernel[grid](*args)``), i.e.
  only the final C launch.

Also the Python-side cost of one forward with every launch replaced by a no-op. Prints a
table; ``--out DIR`` writes ``bench_launch.json``.

    PYTHONPATH=src python3 benchmarks/bench_launch.py --out results/
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List

import torch


class _Recorder:
    """Stands in for a JITFunction: ``rec[grid](*args, **kw)`` launches it and records the
    call with the compiled kernel it returned."""

    def __init__(self, name: str, fn, log: List[tuple]):
        self.name, self.fn, self.log = name, fn, log

    def __getitem__(self, grid):
        def launch(*args, **kw):
            ck = self.fn[grid](*args, **kw)
            self.log.append((self.name, self.fn, grid, args, kw, ck))
            return ck
        return launch


def swap_kernels(make) -> Dict[str, object]:
    """Replace every scan kernel of :mod:`diffmf.ops.triton.kernels` by ``make(name, fn)``;
    returns the originals (for :func:`restore_kernels`)."""
    import triton

    from diffmf.ops.triton import kernels as K

    saved = {}
    for name in dir(K):
        obj = getattr(K, name)
        if isinstance(obj, triton.runtime.jit.JITFunction) and name.endswith("_kernel"):
            saved[name] = obj
            setattr(K, name, make(name, obj))
    return saved


def restore_kernels(saved: Dict[str, object]) -> None:
    from diffmf.ops.triton import kernels as K

    for name, obj in saved.items():
        setattr(K, name, obj)


def record(fn) -> List[tuple]:
    """Run ``fn`` with every scan-kernel launch recorded (and still executed)."""
    log: List[tuple] = []
    saved = swap_kernels(lambda name, f: _Recorder(name, f, log))
    try:
        fn()
    finally:
        restore_kernels(saved)
    return log


class _NoLaunch:
    def __getitem__(self, grid):
        return lambda *args, **kw: None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="480x640")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    import triton

    from diffmf.ops.triton.scan import selective_scan_2d_triton
    sys.path.insert(0, os.path.dirname(__file__))
    from bench_scan import host_ms, make_inputs

    h, w = (int(v) for v in a.shape.split("x"))
    dev = torch.device("cuda")
    ins = make_inputs(1, 4, 64, 16, h, w, torch.bfloat16, dev, 1)[0]
    ins = [t.requires_grad_() if t.is_floating_point() else t for t in ins]

    def step():
        y = selective_scan_2d_triton(*ins, True)
        y.backward(torch.ones_like(y))

    step()
    log = record(step)
    rows: List[Dict] = []
    for name, f, grid, args, kw, ck in log:
        meta = dict(kw)
        jit_us = 1e3 * host_ms(lambda i: f[grid](*args, **meta), a.reps)
        consts = [p.name for p in f.params if p.is_constexpr]
        bound = f.signature.bind(*args, **{k: v for k, v in meta.items() if k in f.signature.parameters})
        bound.apply_defaults()
        full = list(bound.arguments.values())
        runner = ck[tuple(grid) + (1,) * (3 - len(grid))]
        try:
            direct_us = 1e3 * host_ms(lambda i: runner(*full), a.reps)
        except Exception as exc:  # launcher signature differs across Triton versions
            direct_us = float("nan")
            print(f"direct launch of {name} failed: {exc!r}"[:200])
        rows.append(dict(kernel=name, args=len(args) + len(consts), jit_us=jit_us, direct_us=direct_us))
    saved = swap_kernels(lambda name, f: _NoLaunch())
    try:
        with torch.no_grad():
            py_us = 1e3 * host_ms(lambda i: selective_scan_2d_triton(*ins, True), 50)
    finally:
        restore_kernels(saved)
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}  {h}x{w}")
    print(f"{'kernel':<22} {'args':>4} {'jit us':>8} {'direct us':>9}")
    for r in rows:
        print(f"{r['kernel']:<22} {r['args']:>4} {r['jit_us']:8.1f} {r['direct_us']:9.1f}")
    print(f"launches per forward+backward: {len(rows)}; sum jit {sum(r['jit_us'] for r in rows):.0f} us, "
          f"sum direct {sum(r['direct_us'] for r in rows):.0f} us; forward Python side without launches {py_us:.0f} us")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "bench_launch.json"), "w") as fh:
            json.dump(dict(rows=rows, python_forward_us=py_us, triton=triton.__version__, torch=torch.__version__), fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
