"""Benchmark of the channel LayerNorm: PyTorch as the model used it vs the Triton kernels.

Cases (x is (B, C, H, W); rows = B*H*W; under bf16 autocast unless ``--no-autocast``):

* ``planar``  -- LN of a planar float32 map through its permuted view (B, H, W, C).
  torch: ``F.layer_norm(x.permute(0, 2, 3, 1))`` (autocast: float32 out, copies the input);
  triton: reads the view in place, writes the autocast dtype.
* ``gated``   -- SS2D.output's ``LN(y) * silu(z)`` with y planar float32, z (B, H, W, C) bf16.
  torch: the model's former code ``out_norm(y.permute(0, 2, 3, 1).to(z.dtype)) * silu(z)``;
  triton: one fused kernel (out and dz in z's dtype).
* ``cl``      -- LN of a contiguous channels-last map (VSSBlock.norm/norm2, ``--cl-dtype``).

For each: forward (no grad) and forward+backward (dx, dweight, dbias[, dz]) times, CUDA-event
medians after warm-up (inputs rotated over copies so no run starts from a warm L2), and GB/s
over the minimum bytes the Triton path moves (each input read once per pass, each output
written once; the same count for both, so the columns compare directly). The ``err`` columns
are each path's largest relative error (norm of the difference over the norm) of output and
gradients against the float64 twin from the same inputs: ~1e-7 for float32 results, bf16
rounding (~3e-3) where the output is bf16; the torch ``gated`` path rounds y to bf16 before
normalising, so its dx error is larger.

    PYTHONPATH=src python benchmarks/bench_layernorm.py --out results/
    PYTHONPATH=src python benchmarks/bench_layernorm.py --device cpu --dry-run     # logic check
    PYTHONPATH=src python benchmarks/bench_layernorm.py --compile-check             # sm_90 registers, no GPU

``--compile-check`` compiles the kernels for sm_90 (no GPU needed; TRITON_INTERPRET must be
unset) and prints registers, spills and shared memory per variant (cuobjdump).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

log = logging.getLogger("bench_layernorm")

SHAPES = [(1, 480, 640), (16, 128, 128)]  # (B, H, W)
CHANNELS = [32, 64, 128]
CASES = ["planar", "gated", "cl"]
DRY_SHAPES = [(1, 5, 6), (2, 3, 4)]  # --dry-run: tiny, the CPU interpreter runs every program


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --dry-run: logic check)")
    ap.add_argument("--shapes", default=",".join(f"{b}x{h}x{w}" for b, h, w in SHAPES), help="BxHxW list")
    ap.add_argument("--channels", default=",".join(map(str, CHANNELS)), help="C list")
    ap.add_argument("--cases", default=",".join(CASES), help=f"subset of {CASES}")
    ap.add_argument("--cl-dtype", default="float32", choices=["float32", "bfloat16"], help="input dtype of the cl case")
    ap.add_argument("--no-autocast", action="store_true", help="float32 throughout (no bf16 autocast)")
    ap.add_argument("--tiles", default="", help="';'-separated launch shapes to compare, each a $DIFFMF_LN_TILES value "
                    "'fwd_tile,fwd_warps,bwd_tile,bwd_warps[,bwd_programs_per_sm]' (default: the built-in one)")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", default=None, help="folder for bench_layernorm.json")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes, 2 reps: checks the script's paths")
    ap.add_argument("--model", default="", help="also time the whole network (diffmf_paper) with the norm backend "
                    "torch vs triton: fuse at these HxW sizes (bf16 autocast, inference) and one training step "
                    "(batch 16, 128x128), e.g. --model 480x640,256x256")
    ap.add_argument("--compile-check", action="store_true", help="compile for sm_90 and report registers; no GPU")
    ap.add_argument("--arch", type=int, default=90, help="compute capability for --compile-check")
    args = ap.parse_args(argv)
    bad = set(args.cases.split(",")) - set(CASES)
    if bad:
        ap.error(f"unknown cases {sorted(bad)}; choose from {CASES}")
    if args.device.startswith("cpu") and not (args.dry_run or args.compile_check):
        ap.error("--device cpu only runs with --dry-run (the Triton kernels run in the CPU interpreter)")
    return args


def _hw(text: str) -> List[Tuple[int, int]]:
    return [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",")]  # type: ignore[misc]


def _shapes(text: str) -> List[Tuple[int, int, int]]:
    out = []
    for s in text.split(","):
        b, h, w = (int(v) for v in s.lower().split("x"))
        out.append((b, h, w))
    return out


# ------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------
def _sleep_cycles_per_ms(device) -> float:
    """Clock cycles of ``torch.cuda._sleep`` per millisecond on this GPU."""
    import torch

    n = 1 << 22
    torch.cuda._sleep(n)  # first call: warm-up
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    torch.cuda._sleep(n)
    e.record()
    torch.cuda.synchronize(device)
    return n / max(s.elapsed_time(e), 1e-3)


def time_ms(fn: Callable[[int], None], reps: int, warmup: int, device) -> Tuple[List[float], List[float]]:
    """(device ms, host ms) per call.

    On a GPU the device time is what the GPU spends from the call's first kernel to its last
    (CUDA events), measured behind a ``torch.cuda._sleep`` long enough for the host to enqueue
    the whole call first, so Python and launch overhead do not show in it; the host time is how
    long the call takes to enqueue (what bounds it when the GPU is idle, as for tiny inputs).
    On the CPU both are the wall time of the call.
    """
    import torch

    cuda = device.type == "cuda"
    wall = []
    for i in range(warmup):
        t = time.perf_counter()
        fn(i)
        if cuda:
            torch.cuda.synchronize(device)
        wall.append((time.perf_counter() - t) * 1e3)
    dev_ms, host_ms = [], []
    if cuda:
        cycles = int(_sleep_cycles_per_ms(device) * (3 * max(wall) + 1.0))
    for i in range(reps):
        if cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda._sleep(cycles)
            s.record()
            t = time.perf_counter()
            fn(i)
            host_ms.append((time.perf_counter() - t) * 1e3)
            e.record()
            torch.cuda.synchronize(device)
            dev_ms.append(s.elapsed_time(e))
        else:
            t = time.perf_counter()
            fn(i)
            host_ms.append((time.perf_counter() - t) * 1e3)
            dev_ms.append(host_ms[-1])
    return dev_ms, host_ms


def min_bytes(case: str, rows: int, c: int, x_bytes: int, out_bytes: int) -> Dict[str, int]:
    """Bytes each pass must move: fwd reads x (and z), writes out; bwd reads x, dy (and z),
    writes dx (and dz); plus the per-row mean/rstd when training."""
    n = rows * c
    z = n * out_bytes if case == "gated" else 0
    fwd = n * x_bytes + z + n * out_bytes
    stats = 2 * rows * 4
    bwd = n * x_bytes + z + n * out_bytes + n * x_bytes + z + stats
    return {"fwd": fwd, "fwd_bwd": fwd + stats + bwd}


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


# ------------------------------------------------------------------------------------------
# the two paths
# ------------------------------------------------------------------------------------------
def make_case(case: str, b: int, c: int, h: int, w: int, device, cl_dtype, copies: int):
    """Input sets: (x as the op sees it, its leaf, gate or None) x copies, and weight, bias."""
    import torch

    sets = []
    for _ in range(copies):
        if case == "cl":
            leaf = (torch.randn(b, h, w, c, device=device) * 2 + 0.5).to(cl_dtype)
            z = None
        else:
            leaf = torch.randn(b, c, h, w, device=device) * 2 + 0.5  # planar float32 scan output
            z = torch.randn(b, h, w, c, device=device).to(torch.bfloat16) if case == "gated" else None
        sets.append((leaf, z))
    weight = torch.randn(c, device=device) * 0.2 + 1.0
    bias = torch.randn(c, device=device) * 0.1
    return sets, weight, bias


def view_of(case: str, leaf):
    return leaf if case == "cl" else leaf.permute(0, 2, 3, 1)


def torch_path(case: str, x, weight, bias, z, eps: float = 1e-5):
    """What the model ran before (nn.LayerNorm under autocast)."""
    import torch.nn.functional as F

    c = x.shape[-1]
    if case == "gated":
        y = F.layer_norm(x.to(z.dtype), (c,), weight, bias, eps)
        import torch

        return y.mul_(F.silu(z)) if not torch.is_grad_enabled() else y * F.silu(z)
    return F.layer_norm(x, (c,), weight, bias, eps)


def triton_path(case: str, x, weight, bias, z, eps: float = 1e-5):
    from diffmf.ops.layernorm import layer_norm

    return layer_norm(x, weight, bias, eps, gate=z, backend="triton")


def twin_errors(case: str, leaves, dy, y, grads) -> Dict[str, float]:
    """Relative errors of one path's output and gradients against the float64 twin
    (:func:`diffmf.ops.layernorm.layer_norm_reference`) from the same inputs and the same
    (output-dtype) dy."""
    import torch

    from diffmf.ops.layernorm import layer_norm_reference

    l64 = [t.detach().double().requires_grad_() for t in leaves]
    y64 = layer_norm_reference(view_of(case, l64[0]), l64[1], l64[2], 1e-5, gate=l64[3] if len(l64) > 3 else None,
                               out_dtype=torch.float64)
    g64 = torch.autograd.grad(y64, l64, dy.to(y.dtype).double())
    names = ["y", "dx", "dw", "db", "dz"]
    return {n: _rel(a, r) for n, a, r in zip(names, [y] + list(grads), [y64] + list(g64))}


def bench_one(case: str, b: int, c: int, h: int, w: int, args, device) -> Dict:
    import torch

    cl_dtype = getattr(torch, args.cl_dtype)
    copies = 1 if args.dry_run else 3
    sets, weight, bias = make_case(case, b, c, h, w, device, cl_dtype, copies)
    amp = not args.no_autocast and device.type == "cuda"
    amp_ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else (lambda: torch.autocast(device.type, enabled=False))
    res: Dict = dict(case=case, batch=b, c=c, h=h, w=w, rows=b * h * w, autocast=amp)
    paths = {"torch": torch_path, "triton": triton_path}
    dys = [torch.randn(b, h, w, c, device=device) for _ in range(copies)]
    for name, fn in paths.items():
        def fwd(i, fn=fn):
            leaf, z = sets[i % copies]
            with torch.no_grad(), amp_ctx():
                fn(case, view_of(case, leaf), weight, bias, z)

        graphs = []
        for leaf, z in sets:
            leaves = [leaf.detach().requires_grad_(), weight.detach().requires_grad_(), bias.detach().requires_grad_()]
            if z is not None:
                leaves.append(z.detach().requires_grad_())
            graphs.append(leaves)

        def fwd_bwd(i, fn=fn):
            leaves = graphs[i % copies]
            with amp_ctx():
                y = fn(case, view_of(case, leaves[0]), leaves[1], leaves[2], leaves[3] if len(leaves) > 3 else None)
            return torch.autograd.grad(y, leaves, dys[i % copies].to(y.dtype)), y

        t_f, h_f = time_ms(fwd, args.reps, args.warmup, device)
        t_fb, h_fb = time_ms(lambda i: fwd_bwd(i), args.reps, args.warmup, device)
        res[f"{name}_fwd_host_ms"] = statistics.median(h_f)
        res[f"{name}_fwd_bwd_host_ms"] = statistics.median(h_fb)
        grads, y = fwd_bwd(0)
        errs = twin_errors(case, graphs[0], dys[0], y, grads)
        res[f"{name}_err"] = errs
        res[f"{name}_err_max"] = max(errs.values())
        res[f"{name}_fwd_ms"] = statistics.median(t_f)
        res[f"{name}_fwd_bwd_ms"] = statistics.median(t_fb)
        res[f"{name}_out_dtype"] = str(y.dtype).replace("torch.", "")
    leaf = sets[0][0]
    nb = min_bytes(case, b * h * w, c, leaf.element_size(), torch.empty(0, dtype=getattr(torch, res["triton_out_dtype"])).element_size())
    res["bytes"] = nb
    for name in paths:
        res[f"{name}_fwd_gbs"] = nb["fwd"] / (res[f"{name}_fwd_ms"] * 1e-3) / 1e9
        res[f"{name}_fwd_bwd_gbs"] = nb["fwd_bwd"] / (res[f"{name}_fwd_bwd_ms"] * 1e-3) / 1e9
    res["speedup_fwd"] = res["torch_fwd_ms"] / res["triton_fwd_ms"]
    res["speedup_fwd_bwd"] = res["torch_fwd_bwd_ms"] / res["triton_fwd_bwd_ms"]
    return res


def bench_model(sizes: Sequence[Tuple[int, int]], args, device) -> List[Dict]:
    """Whole network, norm backend torch vs triton: device and host ms of a fuse per size and
    of one training step (forward, loss, backward, AdamW)."""
    import torch

    import diffmf
    from diffmf.losses import FusionLoss
    from diffmf.ops.layernorm import set_norm_backend

    model = diffmf.build_model("diffmf_paper").to(device).eval()
    out = []
    jobs: List[Tuple[str, Callable[[int], None]]] = []
    for h, w in sizes:
        ir, vi = torch.rand(1, 1, h, w, device=device), torch.rand(1, 1, h, w, device=device)

        def fuse(i, ir=ir, vi=vi):
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                model(ir, vi)

        jobs.append((f"fuse {w}x{h}", fuse))
    if not args.dry_run:
        tb, crop = 16, 128
        tir, tvi = torch.rand(tb, 1, crop, crop, device=device), torch.rand(tb, 1, crop, crop, device=device)
        loss_fn = FusionLoss()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)

        def train(i):
            model.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                fused = model(tir, tvi)
            loss, _ = loss_fn(fused, tir, tvi)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.eval()

        jobs.append((f"train b{tb} {crop}x{crop}", train))
    for what, fn in jobs:
        row: Dict = {"what": what}
        for backend in ("torch", "triton"):
            set_norm_backend(backend)
            try:
                reps, warm = (1, 1) if args.dry_run else (max(3, args.reps // 3), max(2, args.warmup))
                d, hst = time_ms(fn, reps, warm, device)
            finally:
                set_norm_backend(None)
            row[f"{backend}_ms"], row[f"{backend}_host_ms"] = statistics.median(d), statistics.median(hst)
        out.append(row)
        print(f"model {what:18s} device ms torch {row['torch_ms']:8.2f}  triton {row['triton_ms']:8.2f}   "
              f"host ms torch {row['torch_host_ms']:8.2f}  triton {row['triton_host_ms']:8.2f}", flush=True)
    return out


def print_table(rows: List[Dict]) -> None:
    """One line per case: device ms (torch, triton, speed-up), host ms, triton GB/s, errors."""
    hdr = (f"{'case':6s} {'B':>3s} {'C':>4s} {'HxW':>8s} {'tiles':>14s} | {'fwd ms torch':>12s} {'triton':>7s} {'x':>5s} "
           f"{'host':>11s} | {'f+b ms torch':>12s} {'triton':>7s} {'x':>5s} {'host':>11s} | "
           f"{'GB/s f':>6s} {'f+b':>5s} | {'out':>8s} {'err tr/torch':>17s}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        head = f"{r['case']:6s} {r['batch']:3d} {r['c']:4d} {str(r['h']) + 'x' + str(r['w']):>8s} {r.get('tiles') or 'default':>14s} | "
        if "error" in r:
            print(head + f"ERROR {r['error']}")
            continue
        print(
            head
            + f"{r['torch_fwd_ms']:12.3f} {r['triton_fwd_ms']:7.3f} {r['speedup_fwd']:5.2f} "
            f"{r['torch_fwd_host_ms']:5.2f}/{r['triton_fwd_host_ms']:5.2f} | "
            f"{r['torch_fwd_bwd_ms']:12.3f} {r['triton_fwd_bwd_ms']:7.3f} {r['speedup_fwd_bwd']:5.2f} "
            f"{r['torch_fwd_bwd_host_ms']:5.2f}/{r['triton_fwd_bwd_host_ms']:5.2f} | "
            f"{r['triton_fwd_gbs']:6.0f} {r['triton_fwd_bwd_gbs']:5.0f} | "
            f"{r['triton_out_dtype']:>8s} {r['triton_err_max']:8.1e}/{r['torch_err_max']:8.1e}"
        )


# ------------------------------------------------------------------------------------------
# sm_90 compile check (no GPU)
# ------------------------------------------------------------------------------------------
def _resource_usage(cubin: bytes) -> Dict[str, int]:
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        text = subprocess.run([str(tool), "--dump-resource-usage", str(path)], capture_output=True, text=True, check=True).stdout
    out = {}
    for key, pat in (("regs", r"REG:(\d+)"), ("stack", r"STACK:(\d+)"), ("shared", r"SHARED:(\d+)"), ("local", r"LOCAL:(\d+)")):
        m = re.search(pat, text)
        out[key] = int(m.group(1)) if m else -1
    return out


def compile_check(arch: int, channels: Sequence[int]) -> List[Dict]:
    """Compile every kernel variant the model and the benchmark use, for sm_<arch>."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("--compile-check needs TRITON_INTERPRET unset (the interpreter compiles nothing)")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from diffmf.ops.triton import layernorm as tln

    target = GPUTarget("cuda", arch, 32)
    tl_dtype = {"float32": "fp32", "bfloat16": "bf16"}
    div16 = [["tt.divisibility", 16]]
    cfg = tln.tiles()
    results = []
    variants = []
    for c in channels:
        for x_dt, layout, gate in (("float32", tln.LAYOUT_ROWS, False), ("float32", tln.LAYOUT_ROWS, True),
                                   ("float32", tln.LAYOUT_CHANNELS, False), ("bfloat16", tln.LAYOUT_CHANNELS, False),
                                   ("float32", tln.LAYOUT_CHANNELS, True)):
            out_dt = "bfloat16"
            variants.append((c, x_dt, out_dt, layout, gate))
    for c, x_dt, out_dt, layout, gate in variants:
        bc = 1 << (c - 1).bit_length()
        for kind in ("fwd", "bwd"):
            if kind == "fwd":
                fn = tln._ln_fwd_kernel
                br, warps = max(1, min(tln.MAX_BLOCK_ROWS, cfg.fwd_tile // bc)), cfg.fwd_warps
                ptrs = {"X": x_dt, "W": "float32", "Bias": "float32", "Z": out_dt, "Y": out_dt, "MEAN": "float32", "RSTD": "float32"}
                consts = dict(BLOCK_R=br, BLOCK_C=bc, X_LAYOUT=layout, HAS_W=True, HAS_B=True, GATE=gate, STATS=True, OFF64=False)
                scalars = {"eps": "fp32"}
            else:
                fn = tln._ln_bwd_kernel
                br, warps = max(1, min(tln.MAX_BLOCK_ROWS, cfg.bwd_tile // bc)), cfg.bwd_warps
                ptrs = {"X": x_dt, "W": "float32", "Bias": "float32", "Z": out_dt, "DY": out_dt, "DX": x_dt, "DZ": out_dt,
                        "MEAN": "float32", "RSTD": "float32", "DW_PART": "float32", "DB_PART": "float32"}
                consts = dict(BLOCK_R=br, BLOCK_C=bc, X_LAYOUT=layout, DX_LAYOUT=layout, HAS_W=True, HAS_B=True, GATE=gate,
                              PARTIALS=True, OFF64=False)
                scalars = {}
            unit = {"sx_c", "sdx_c"} if layout == tln.LAYOUT_CHANNELS else {"sx_i", "sdx_i"}  # stride 1, unused
            sig, attrs = {}, {}
            for i, name in enumerate(fn.arg_names):
                if name in consts:
                    sig[name] = "constexpr"
                elif name in ptrs:
                    sig[name] = "*" + tl_dtype[ptrs[name]]
                    attrs[(i,)] = div16
                elif name in scalars:
                    sig[name] = scalars[name]
                else:
                    sig[name] = "i32"
                    if name.startswith("s") and name not in unit:
                        attrs[(i,)] = div16  # the other strides of the benchmark shapes are multiples of 16
            t = time.perf_counter()
            k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs), target=target,
                               options={"num_warps": warps})
            use = _resource_usage(k.asm["cubin"])
            use["shared"] = int(k.metadata.shared)  # dynamic shared memory the launch asks for
            row = dict(kernel=kind, c=c, x=x_dt, out=out_dt, layout={1: "channels", 2: "rows"}[layout], gate=gate,
                       block_r=br, block_c=bc, warps=warps, compile_s=time.perf_counter() - t, **use)
            results.append(row)
            print(f"{kind} C={c:4d} x={x_dt:8s} layout={row['layout']:8s} gate={int(gate)} tile={br}x{bc} warps={warps}: "
                  f"{use['regs']:3d} regs, {use['local']} B spill/local, {use['stack']} B stack, {use['shared']} B smem "
                  f"({row['compile_s']:.1f} s)", flush=True)
    return results


# ------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    channels = [int(c) for c in args.channels.split(",")]
    if args.compile_check:
        rows = compile_check(args.arch, channels)
        report = {"compile_check": rows}
    else:
        if args.device.startswith("cpu"):
            os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported: the kernels run in numpy
        import torch

        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("no CUDA device visible; use --device cpu --dry-run for a logic check")
        shapes = DRY_SHAPES if args.dry_run else _shapes(args.shapes)
        if args.dry_run:
            args.reps, args.warmup = 2, 1
        import triton

        from diffmf.ops.triton.layernorm import TILES_ENV

        rows = []
        for tiles in args.tiles.split(";") if args.tiles else [None]:
            if tiles:
                os.environ[TILES_ENV] = tiles  # read at every launch
            for case in args.cases.split(","):
                for b, h, w in shapes:
                    for c in channels:
                        try:
                            r = bench_one(case, b, c, h, w, args, device)
                        except Exception as exc:  # report and go on with the other shapes
                            log.exception("case %s B=%d C=%d %dx%d failed", case, b, c, h, w)
                            r = dict(case=case, batch=b, c=c, h=h, w=w, error=repr(exc)[-300:])
                        r["tiles"] = tiles or os.environ.get(TILES_ENV)
                        rows.append(r)
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
        print_table(rows)
        model_rows = bench_model(_hw(args.model) if not args.dry_run else [(8, 12)], args, device) if args.model else []
        dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
        report = {
            "device": dev_name,
            "torch": torch.__version__,
            "triton": triton.__version__,
            "python": platform.python_version(),
            "autocast": not args.no_autocast and device.type == "cuda",
            "dry_run": args.dry_run,
            "rows": rows,
            "model": model_rows,
        }
        if any("error" in r for r in rows):
            log.error("some cases failed (see above)")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / ("bench_layernorm_compile.json" if args.compile_check else "bench_layernorm.json")
        path.write_text(json.dumps(report, indent=1))
        log.info("wrote %s", path)
    return 1 if any("error" in r for r in report.get("rows", [])) else 0


if __name__ == "__main__":
    sys.exit(main())
