"""Global loads in the inner loop of the scan sweeps, from sm_90 SASS compiled here (no GPU).

    PYTHONPATH=src python benchmarks/sass_loads.py                    # 480x640 bf16, D=64, K=4, N=16
    PYTHONPATH=src python benchmarks/sass_loads.py --kernels all --floors   # + each sweep's issue / MUFU floor
    PYTHONPATH=src python benchmarks/sass_loads.py --kernels all --h 128 --w 128 --dtype float32
    python benchmarks/sass_loads.py --src /tmp/other_checkout/src       # compare another version

The 2-D op (forward + backward) runs on CPU tensors of the requested shape with every Triton
launch replaced by a recorder; each recorded sweep launch is then specialised exactly as
Triton's JIT would specialise that call (pointer alignment, "== 1" and "divisible by 16"
integers, the unspecialised route arguments) with the GPU default lane layouts
(``scan._layout``, ``interpret=False``) and compiled for ``sm_<arch>``. Printed per kernel
and frame: global loads in the inner loop (the longest backward branch of the SASS) and of
which vectorized (64/128-bit ``LDG`` or ``LDGSTS``), with the instruction mix, and the
registers per thread. The loop
stays the per-step loop: the sweeps' ``range(0, S)`` is the only loop of those kernels.
TRITON_INTERPRET must be unset.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

SWEEPS = ("_fwd_local_kernel", "_fwd_out_kernel", "_bwd_local_kernel", "_bwd_fwd_kernel", "_bwd_rev_kernel")
DEFAULT = ("_fwd_out_kernel", "_bwd_rev_kernel")
LAUNCH_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg", "enable_fp_fusion")


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=None, help="put this directory first on sys.path (another checkout's src/)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--h", type=int, default=480)
    ap.add_argument("--w", type=int, default=640)
    ap.add_argument("--d", type=int, default=64, help="channels per route")
    ap.add_argument("--k", type=int, default=4, help="routes")
    ap.add_argument("--n", type=int, default=16, help="states")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--sms", type=int, default=132, help="SM count the segment lengths are chosen for (H100: 132)")
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--lowrank", type=int, default=0, metavar="R", help="record the rank-R call (dt_proj inside the sweeps)")
    ap.add_argument("--kernels", default=",".join(DEFAULT), help="comma list of sweep kernels, or 'all'")
    ap.add_argument("--layout-fwd", default=None, help="DIFFMF_TRITON_LAYOUT_FWD for the recorded calls (default: GPU defaults)")
    ap.add_argument("--layout-bwd", default=None, help="DIFFMF_TRITON_LAYOUT_BWD likewise")
    ap.add_argument("--dump", default=None, help="write each kernel's SASS (and TTGIR, PTX) into this directory")
    ap.add_argument("--floors", action="store_true",
                    help="also print each sweep's issue and MUFU floor for the shape (all routes, both frames)")
    ap.add_argument("--clock-ghz", type=float, default=1.75,
                    help="SM clock for --floors (1.75: the H100's ~3.7e12 exp/s at 16 MUFU lanes per clock and SM)")
    return ap.parse_args(argv)


class _Recorder:
    """Stands in for a JITFunction: ``rec[grid](*args, **kw)`` records the call."""

    def __init__(self, name: str, fn, log: List[Tuple[str, object, tuple, dict]]):
        self.name, self.fn, self.log = name, fn, log

    def __getitem__(self, grid):
        return lambda *args, **kw: self.log.append((self.name, grid, args, kw))


def record_launches(a) -> List[Tuple[str, object, tuple, dict]]:
    """Run the 2-D op forward and backward on CPU with every kernel launch recorded."""
    import torch
    from bench_launch import swap_kernels  # this folder is on sys.path when run as a script

    from diffmf.ops.triton import scan as S

    log: List[Tuple[str, object, tuple, dict]] = []
    swap_kernels(lambda name, fn: _Recorder(name, fn, log))  # for the rest of this process
    S._sm_count = lambda device: a.sms
    S.triton_interpreting = lambda: False
    dt = getattr(torch, a.dtype)
    g = torch.Generator().manual_seed(0)
    b, k, d, n, h, w = a.batch, a.k, a.d, a.n, a.h, a.w
    u = torch.randn(b, d, h, w, generator=g).to(dt).requires_grad_()
    delta = torch.randn(b, k, d, h, w, generator=g).to(dt).requires_grad_()
    A = (-torch.rand(k * d, n, generator=g)).requires_grad_()
    B = torch.randn(b, k, n, h, w, generator=g).to(dt).requires_grad_()
    C = torch.randn(b, k, n, h, w, generator=g).to(dt).requires_grad_()
    D = torch.randn(k * d, generator=g).requires_grad_()
    bias = torch.randn(k * d, generator=g).requires_grad_()
    if a.lowrank:  # the network's call: rank-R step inputs, dt_proj inside the sweeps
        dts = torch.randn(b, k, a.lowrank, h, w, generator=g).to(dt).requires_grad_()
        W = torch.randn(k, d, a.lowrank, generator=g).to(dt).requires_grad_()
        y = S.selective_scan_2d_lowrank_triton(u, dts, W, A, B, C, D, bias, True)
    else:
        y = S.selective_scan_2d_triton(u, delta, A, B, C, D, bias, True)
    y.backward(torch.ones_like(y))
    return log


def specialise(jit_fn, args: tuple, kw: dict, backend_cls):
    """(signature, constexprs, attrs, options) as ``JITFunction.run`` builds them for this call."""
    from triton._C.libtriton import native_specialize_impl

    kw = dict(kw)
    options = {o: kw.pop(o) for o in LAUNCH_OPTIONS if o in kw}
    bound = jit_fn.signature.bind(*args, **kw)
    bound.apply_defaults()
    signature, constexprs, attrs = {}, {}, {}
    for i, (kp, (name, val)) in enumerate(zip(jit_fn.params, bound.arguments.items())):
        if kp.is_constexpr:
            signature[name] = "constexpr"
            constexprs[(i,)] = val
            continue
        ty, attr = native_specialize_impl(backend_cls, val, kp.is_const, not kp.do_not_specialize, not kp.do_not_specialize_on_alignment)
        signature[name] = ty
        if ty == "constexpr":
            constexprs[(i,)] = val
        else:
            attrs[(i,)] = backend_cls.parse_attr(attr or "")
    return signature, constexprs, attrs, options


def _ops(sass: str) -> List[Tuple[int, str]]:
    """(address, instruction without predicate) of a cuobjdump SASS listing."""
    out = []
    for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", sass):
        out.append((int(m.group(1), 16), re.sub(r"^@!?U?P\w+\s+", "", m.group(2).strip())))
    return out


def loop_loads(sass: str, whole: bool = False) -> Dict[str, object]:
    """Memory instructions of the longest loop (backward branch) of a SASS listing, or of the
    whole kernel with ``whole``: global loads (LDG / LDGSTS) with their widths, global stores,
    shared-memory accesses (layout exchanges) and barriers."""
    ops = _ops(sass)
    lo, hi = (0, 1 << 62)
    if not whole:
        best = None
        for addr, ins in ops:
            m = re.match(r"BRA\s+0x([0-9a-f]+)", ins)
            if m and int(m.group(1), 16) < addr:
                span = (int(m.group(1), 16), addr)
                if best is None or span[1] - span[0] > best[1] - best[0]:
                    best = span
        if best is None:
            return dict(instr=0, loads=0, vector=0, mix=Counter(), stores=Counter(), smem=0, bar=0, mufu=0)
        lo, hi = best
    names = [ins.split()[0] for addr, ins in ops if lo <= addr <= hi]
    mix = Counter(op for op in names if op.startswith("LDG"))  # LDG.E[.64|.128], LDGSTS.E...
    return dict(
        instr=len(names),
        loads=sum(mix.values()),
        vector=sum(c for op, c in mix.items() if re.search(r"\.(64|128)\b", op)),
        mix=mix,
        stores=Counter(op for op in names if op.startswith("STG")),
        smem=sum(1 for op in names if re.match(r"(LDS|STS|LDSM|STSM)\b", op)),
        bar=sum(1 for op in names if op.startswith("BAR")),
        mufu=sum(1 for op in names if op.startswith("MUFU")),
    )


def cuobjdump(cubin: bytes, flag: str) -> str:
    """``cuobjdump FLAG`` (Triton's bundled copy) of a compiled kernel's cubin."""
    tool = Path(__import__("triton").__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "k.cubin"
        p.write_bytes(cubin)
        return subprocess.run([str(tool), flag, str(p)], capture_output=True, text=True, check=True).stdout


def registers(cubin: bytes) -> str:
    """Registers per thread of a compiled kernel (``cuobjdump --dump-resource-usage``)."""
    m = re.search(r"REG:(\d+)", cuobjdump(cubin, "--dump-resource-usage"))
    return m.group(1) if m else "?"


def main(argv: Optional[Sequence[str]] = None) -> int:
    a = _parse(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("TRITON_INTERPRET must be unset (the interpreter compiles nothing)")
    if a.src:
        sys.path.insert(0, str(Path(a.src).resolve()))
    for env, val in (("DIFFMF_TRITON_LAYOUT_FWD", a.layout_fwd), ("DIFFMF_TRITON_LAYOUT_BWD", a.layout_bwd)):
        if val:
            os.environ[env] = val
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend

    wanted = SWEEPS if a.kernels == "all" else tuple(a.kernels.split(","))
    log = record_launches(a)
    from diffmf.ops.triton import kernels
    target = GPUTarget("cuda", a.arch, 32)
    backend_cls = type(make_backend(target))
    seen, rows, order, frames = set(), [], [], {}
    count = Counter()
    for name, grid, args, kw in log:
        if name not in wanted:
            continue
        i = count[name]
        count[name] += 1
        n_frames = 2 if a.k >= 2 else 1
        frame = ("rows", "cols")[i % n_frames] if name in SWEEPS else str(i)
        jit_fn = getattr(kernels, name).fn  # the JITFunction behind the recorder
        sig, consts, attrs, opts = specialise(jit_fn, args, kw, backend_cls)
        key = (name, str(sig), str(sorted(consts.items())), str(sorted(attrs.items())), str(opts))
        if key in seen:
            if frame not in frames[key]:
                frames[key].append(frame)
            continue
        seen.add(key)
        k = triton.compile(ASTSource(fn=jit_fn, signature=sig, constexprs=consts, attrs=attrs), target=target, options=opts)
        sass = k.asm.get("sass") if hasattr(k.asm, "get") else None
        if not sass:
            sass = cuobjdump(k.asm["cubin"], "-sass")
        if a.dump:
            Path(a.dump).mkdir(parents=True, exist_ok=True)
            (Path(a.dump) / f"{name}_{frame}.sass").write_text(sass)
            for ir in ("ttgir", "ptx"):  # the layouts Triton chose, and what ptxas got
                if ir in k.asm:
                    (Path(a.dump) / f"{name}_{frame}.{ir}").write_text(k.asm[ir])
        r = loop_loads(sass, whole=name not in SWEEPS)
        r["regs"] = registers(k.asm["cubin"])
        r["lane_elements"] = int(kw.get("DPT", 1)) * int(kw.get("NPT", 1)) * int(kw.get("NCH", 1))
        rows.append((name, r))
        frames[key] = [frame]
        order.append(key)
    print(f"{a.batch}x{a.h}x{a.w} {a.dtype}, D={a.d} K={a.k} N={a.n}, sm_{a.arch}; counts in the sweeps' "
          f"inner loop (whole kernel for others); vector = 64/128-bit")
    print(f"{'kernel':<18} {'frames':<9} {'regs':>5} {'instr':>6} {'loads':>6} {'vector':>6} {'smem':>5} {'bar':>4}  loads / stores")
    for key, (name, r) in zip(order, rows):
        mix = ", ".join(f"{op} x{c}" for op, c in sorted(r["mix"].items()))
        st = ", ".join(f"{op} x{c}" for op, c in sorted(r["stores"].items()))
        print(f"{name:<18} {'+'.join(frames[key]):<9} {r['regs']!s:>5} {r['instr']:>6} {r['loads']:>6} {r['vector']:>6} {r['smem']:>5} {r['bar']:>4}  {mix} / {st}")
    if a.floors:
        print_floors(a, [(name, r) for name, r in rows if name in SWEEPS])
    return 0


def print_floors(a: argparse.Namespace, rows) -> None:
    """Issue and MUFU time of each sweep's inner loop over the whole shape (every route, both
    frames): state elements / (elements per thread and step) / 32 = warp-steps; issue floor =
    warp-steps x loop instructions / (4 schedulers x SMs x clock); MUFU floor = warp-steps x
    MUFU instructions x 32 / (16 MUFU lanes x SMs x clock). The floor is the larger."""
    elements = a.batch * a.k * a.d * a.n * a.h * a.w
    issue_rate = 4 * a.sms * a.clock_ghz * 1e9
    mufu_rate = 16 * a.sms * a.clock_ghz * 1e9
    print(f"\nfloors: {elements:.4g} state elements per sweep, {a.sms} SMs at {a.clock_ghz} GHz")
    print(f"{'kernel':<18} {'elem/thread':>11} {'instr':>6} {'MUFU':>5} {'issue ms':>9} {'MUFU ms':>8} {'floor ms':>9}")
    seen = set()
    for name, r in rows:
        if name in seen:  # one line per kernel (the frames share the loop when they share the build)
            continue
        seen.add(name)
        warp_steps = elements / r["lane_elements"] / 32
        t_issue = warp_steps * r["instr"] / issue_rate * 1e3
        t_mufu = warp_steps * r["mufu"] * 32 / mufu_rate * 1e3
        print(f"{name:<18} {r['lane_elements']:>11} {r['instr']:>6} {r['mufu']:>5} {t_issue:>9.3f} {t_mufu:>8.3f} {max(t_issue, t_mufu):>9.3f}")


if __name__ == "__main__":
    sys.exit(main())
