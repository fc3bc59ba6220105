"""diffmf's Triton scan against the compiled CUDA selective scan of mamba-ssm, same inputs, same GPU.

mamba-ssm's ``selective_scan_cuda`` is the kernel that DIFF-MF's official install compiles
(``../shared/paper/official-readme.md``: the mamba wheel plus VMamba's ``selective_scan``
folder, both built from this source). It is not a dependency of diffmf: this script builds it
from the source distribution for the comparison only::

    curl -sLO https://files.pythonhosted.org/packages/af/48/aa7bec0efc7453fa0512276c0069c854bf684219050294266534bfef34bb/mamba_ssm-2.3.2.post1.tar.gz
    tar xzf mamba_ssm-2.3.2.post1.tar.gz
    python3 benchmarks/peer_mamba_ssm.py build --csrc mamba_ssm-2.3.2.post1/csrc/selective_scan
    python3 benchmarks/peer_mamba_ssm.py bench --out results/

``build`` compiles the extension (nvcc, the flags of mamba-ssm's setup.py, this GPU's
architecture) into ``--build-dir``. The kernels are not modified; the dispatch is trimmed to
what this comparison runs, to cut the build from 10 instantiations per (threads, items) shape to
2 (float32 and bf16 inputs, real A, B and C varying per step, softplus on the step, no gate z);
any other call fails with an error instead of running a wrong kernel.

``bench`` runs VMamba's SS2D scan both ways on the same random inputs:
  * **peer**: CrossScan (``diffmf.ops.cross_scan``, PyTorch) -> ``selective_scan_cuda`` over the
    K * D channels of the 4 route sequences -> CrossMerge (PyTorch), autograd through all three;
    also the peer kernel alone on pre-arranged sequences (its best case: no cross-scan / merge);
  * **diffmf**: ``selective_scan_2d_triton`` (cross-scan and merge fused, deterministic).
It reports the forward and forward + backward times (CUDA events after warm-up, medians; the
forward also replayed from a CUDA graph), the peak memory of a forward + backward, and how
far the two outputs and all seven gradients are apart (relative L2 and max |diff| / max |ref|).
Cases: 640x480 and 1024x768 at batch 1 (the fuse), 128x128 at batch 16 (a training step),
K=4 routes, D=64 channels, N=16 states, bf16 inputs (``--dtype``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_network_variants  # noqa: E402  (shipped_model, random_pair, graphed_fuse_ms)
import bench_scan  # noqa: E402  (make_inputs, time_ms, graph_replay_ms)

EXT_NAME = "selective_scan_cuda_peer"
SOURCES = ("selective_scan.cpp", "selective_scan_fwd_fp32.cu", "selective_scan_fwd_bf16.cu",
           "selective_scan_bwd_fp32_real.cu", "selective_scan_bwd_bf16_real.cu")
HEADERS = ("selective_scan.h", "selective_scan_common.h", "selective_scan_fwd_kernel.cuh", "selective_scan_bwd_kernel.cuh",
           "reverse_scan.cuh", "static_switch.h", "uninitialized_copy.cuh")
NVCC_FLAGS = ["-O3", "-std=c++17", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
              "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
              "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
              "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math", "-lineinfo",
              "--threads", "4"]
# (file, text to find, replacement): the dispatch trimmed to the configurations benchmarked here
FIXED = '''
#include <c10/util/Exception.h>
#define FIXED_SWITCH(COND, CONST_NAME, VALUE, ...)                                            \\
    [&] {                                                                                  \\
        TORCH_CHECK(bool(COND) == VALUE, "peer build: only " #COND " == " #VALUE " is compiled"); \\
        constexpr bool CONST_NAME = VALUE;                                                 \\
        return __VA_ARGS__();                                                              \\
    }()
'''
PATCHES: Tuple[Tuple[str, str, str], ...] = (
    ("static_switch.h", "#pragma once", "#pragma once\n" + FIXED),
    ("selective_scan_fwd_kernel.cuh", "BOOL_SWITCH(params.is_variable_B, kIsVariableB,", "FIXED_SWITCH(params.is_variable_B, kIsVariableB, true,"),
    ("selective_scan_fwd_kernel.cuh", "BOOL_SWITCH(params.is_variable_C, kIsVariableC,", "FIXED_SWITCH(params.is_variable_C, kIsVariableC, true,"),
    ("selective_scan_fwd_kernel.cuh", "BOOL_SWITCH(params.z_ptr != nullptr , kHasZ,", "FIXED_SWITCH(params.z_ptr != nullptr, kHasZ, false,"),
    ("selective_scan_bwd_kernel.cuh", "BOOL_SWITCH(params.is_variable_B, kIsVariableB,", "FIXED_SWITCH(params.is_variable_B, kIsVariableB, true,"),
    ("selective_scan_bwd_kernel.cuh", "BOOL_SWITCH(params.is_variable_C, kIsVariableC,", "FIXED_SWITCH(params.is_variable_C, kIsVariableC, true,"),
    ("selective_scan_bwd_kernel.cuh", "BOOL_SWITCH(params.delta_softplus, kDeltaSoftplus,", "FIXED_SWITCH(params.delta_softplus, kDeltaSoftplus, true,"),
    ("selective_scan_bwd_kernel.cuh", "BOOL_SWITCH(params.z_ptr != nullptr , kHasZ,", "FIXED_SWITCH(params.z_ptr != nullptr, kHasZ, false,"),
    ("selective_scan.cpp", """    if (ITYPE == at::ScalarType::Half) {                                            \\
        using input_t = at::Half;                                                   \\
        __VA_ARGS__();                                                              \\
    } else if (ITYPE == at::ScalarType::BFloat16) {""", """    if (ITYPE == at::ScalarType::BFloat16) {"""),
    ("selective_scan.cpp", """    } else if (WTYPE == at::ScalarType::ComplexFloat) {                              \\
        using weight_t = c10::complex<float>;                                        \\
        __VA_ARGS__();                                                               \\
    } else {""", """    } else {"""),
)


# --------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------
def prepare_sources(csrc: Path, dest: Path) -> List[Path]:
    """Copy mamba-ssm's selective-scan sources to ``dest`` with :data:`PATCHES` applied."""
    missing = [f for f in SOURCES + HEADERS if not (csrc / f).is_file()]
    if missing:
        raise SystemExit(f"{csrc}: not mamba-ssm's csrc/selective_scan (missing {', '.join(missing)})")
    dest.mkdir(parents=True, exist_ok=True)
    for f in SOURCES + HEADERS:
        shutil.copyfile(csrc / f, dest / f)
    for f, old, new in PATCHES:
        text = (dest / f).read_text()
        if old not in text:
            raise SystemExit(f"{csrc / f}: the text to patch was not found (another mamba-ssm version?): {old[:60]!r}")
        (dest / f).write_text(text.replace(old, new))
    return [dest / f for f in SOURCES]


def load_peer(build_dir: Path, csrc: Optional[Path] = None, verbose: bool = False):
    """The compiled extension: built from ``csrc`` when given, else the module file
    ``<build_dir>/<EXT_NAME>.so`` (a build copied from elsewhere) or the build in ``build_dir``."""
    import importlib.machinery
    import importlib.util

    from torch.utils.cpp_extension import load

    prebuilt = build_dir / f"{EXT_NAME}.so"
    if csrc is None and prebuilt.is_file():
        loader = importlib.machinery.ExtensionFileLoader(EXT_NAME, str(prebuilt))
        spec = importlib.util.spec_from_file_location(EXT_NAME, prebuilt, loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        return module
    src_dir = build_dir / "src"
    if csrc is not None:
        sources = prepare_sources(csrc, src_dir)
    else:
        sources = [src_dir / f for f in SOURCES]
        if not all(p.is_file() for p in sources):
            raise SystemExit(f"{build_dir}: no peer build; run `{Path(__file__).name} build --csrc ...` first")
    major, minor = torch.cuda.get_device_capability()
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")
    (build_dir / "obj").mkdir(parents=True, exist_ok=True)
    return load(name=EXT_NAME, sources=[str(p) for p in sources], extra_cflags=["-O3", "-std=c++17"],
                extra_cuda_cflags=NVCC_FLAGS, extra_include_paths=[str(src_dir)],
                build_directory=str(build_dir / "obj"), verbose=verbose)


# --------------------------------------------------------------------------------------
# the peer as VMamba calls it
# --------------------------------------------------------------------------------------
def peer_scan_fn(ext) -> Callable:
    """``selective_scan_fn(u, delta, A, B, C, D, delta_bias, softplus)`` on the extension, with
    autograd (mamba-ssm's SelectiveScanFn without the gate z)."""

    class _PeerScan(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, delta, A, B, C, D, delta_bias):
            out, x, *_ = ext.fwd(u, delta, A, B, C, D, None, delta_bias, True)
            ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, x)
            return out

        @staticmethod
        def backward(ctx, dout):
            u, delta, A, B, C, D, delta_bias, x = ctx.saved_tensors
            du, ddelta, dA, dB, dC, dD, dbias, *_ = ext.bwd(
                u, delta, A, B, C, D, None, delta_bias, dout.contiguous(), x, None, None, True, False)
            return du, ddelta, dA, dB, dC, dD, dbias

    return _PeerScan.apply


def peer_ss2d(scan: Callable, u, dt, A, B, C, D, bias):
    """VMamba's SS2D scan on the peer: CrossScan -> scan over K * D channels -> CrossMerge.
    Same arguments and result as :func:`diffmf.ops.triton.selective_scan_2d_triton`."""
    from diffmf.ops.cross_scan import cross_merge, cross_scan, cross_scan_routes

    b, d, h, w = u.shape
    k = dt.shape[1]
    us = cross_scan(u, k).reshape(b, k * d, h * w)
    ds = cross_scan_routes(dt).reshape(b, k * d, h * w)
    y = scan(us, ds, A, cross_scan_routes(B).contiguous(), cross_scan_routes(C).contiguous(), D, bias)
    return cross_merge(y.float().view(b, k, d, h * w), h, w)


# --------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------
def _errors(ref: torch.Tensor, other: torch.Tensor) -> Dict[str, float]:
    r, o = ref.double(), other.double()
    return dict(rel_l2=float((o - r).norm() / r.norm().clamp_min(1e-30)),
                rel_max=float((o - r).abs().max() / r.abs().max().clamp_min(1e-30)))


def _peak_mib(fn: Callable[[], None]) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _zero(leaves: List[torch.Tensor]) -> None:
    for t in leaves:
        t.grad = None


def _repeatable_grads(fb: Callable[[], None], leaves: List[torch.Tensor]) -> bool:
    """Whether two forward + backward calls of ``fb`` give the same gradients bit for bit."""
    _zero(leaves)
    fb()
    first = [t.grad.clone() for t in leaves]
    _zero(leaves)
    fb()
    return all(torch.equal(a, t.grad) for a, t in zip(first, leaves))


def bench_case(ext, batch: int, h: int, w: int, dtype: torch.dtype, reps: int, k: int = 4, d: int = 64, n: int = 16) -> Dict:
    from diffmf.ops.cross_scan import cross_scan, cross_scan_routes
    from diffmf.ops.triton import selective_scan_2d_triton

    dev = torch.device("cuda")
    scan = peer_scan_fn(ext)
    (inputs,) = bench_scan.make_inputs(batch, k, d, n, h, w, dtype, dev, 1)
    u, dt, A, B, C, D, bias = inputs
    gy = torch.randn(batch, d, h, w, device=dev)
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    peer_leaves = [t.detach().clone().requires_grad_() for t in inputs]
    # the peer kernel alone on pre-arranged route sequences (no cross-scan / merge)
    seq = (cross_scan(u, k).reshape(batch, k * d, h * w).contiguous(), cross_scan_routes(dt).reshape(batch, k * d, h * w).contiguous(),
           A, cross_scan_routes(B).contiguous(), cross_scan_routes(C).contiguous(), D, bias)
    seq_leaves = [t.detach().clone().requires_grad_() for t in seq]
    gseq = torch.randn(batch, k * d, h * w, device=dev, dtype=dtype)

    def ours_fwd(i=0):
        with torch.no_grad():
            return selective_scan_2d_triton(u, dt, A, B, C, D, bias, True)

    def peer_fwd(i=0):
        with torch.no_grad():
            return peer_ss2d(scan, u, dt, A, B, C, D, bias)

    def kernel_fwd(i=0):
        with torch.no_grad():
            return scan(*seq)

    def ours_fb(i=0):
        y = selective_scan_2d_triton(*leaves, True)
        y.backward(gy)

    def peer_fb(i=0):
        y = peer_ss2d(scan, *peer_leaves)
        y.backward(gy)

    def kernel_fb(i=0):
        scan(*seq_leaves).backward(gseq)

    row: Dict = dict(batch=batch, h=h, w=w, k=k, d=d, n=n, dtype=str(dtype).replace("torch.", ""))
    impls = (("diffmf", ours_fwd, ours_fb, leaves), ("peer_ss2d", peer_fwd, peer_fb, peer_leaves),
             ("peer_kernel", kernel_fwd, kernel_fb, seq_leaves))
    for name, fwd, fb, grads_of in impls:
        row[f"{name}_fwd_ms"] = statistics.median(bench_scan.time_ms(fwd, reps))
        row[f"{name}_fwd_graph_ms"] = statistics.median(bench_scan.graph_replay_ms(fwd, reps))
        _zero(grads_of)
        row[f"{name}_fwd_bwd_ms"] = statistics.median(bench_scan.time_ms(fb, reps))
        _zero(grads_of)
        row[f"{name}_fwd_bwd_peak_mib"] = _peak_mib(fb)
    # agreement: one forward + backward each on the same inputs, from zero gradients
    _zero(leaves + peer_leaves)
    y_ours = selective_scan_2d_triton(*leaves, True)
    y_ours.backward(gy)
    y_peer = peer_ss2d(scan, *peer_leaves)
    y_peer.backward(gy)
    names = ("y", "du", "ddelta", "dA", "dB", "dC", "dD", "dbias")
    pairs = [(y_peer.detach(), y_ours.detach())] + [(p.grad, o.grad) for p, o in zip(peer_leaves, leaves)]
    row["agreement"] = {nm: _errors(p, o) for nm, (p, o) in zip(names, pairs)}
    # repeatability: the same call twice, bitwise
    row["peer_bitwise_repeatable_fwd"] = bool(torch.equal(peer_fwd(), peer_fwd()))
    row["peer_bitwise_repeatable_grads"] = _repeatable_grads(peer_fb, peer_leaves)
    row["diffmf_bitwise_repeatable_grads"] = _repeatable_grads(ours_fb, leaves)
    return row


def peer_lowrank(scan: Callable) -> Callable:
    """A drop-in for :func:`diffmf.ops.selective_scan.selective_scan_2d_lowrank` on the peer, the
    way VMamba's SS2D calls it: the dense step map ``einsum(dts, dt_projs_weight)``, the dense
    B and C maps, CrossScan -> ``selective_scan_cuda`` -> CrossMerge; returns the merged map."""
    from diffmf.ops.cross_scan import dense_map
    from diffmf.ops.selective_scan import expand_delta

    def lowrank(u, dts, dt_weight, A, B, C, D=None, delta_bias=None, delta_softplus=True, backend=None, merge=True):
        if not delta_softplus:
            raise ValueError("the peer build has softplus on the step compiled in only")
        dts, B, C = dense_map(dts), dense_map(B), dense_map(C)
        return peer_ss2d(scan, u, expand_delta(dts, dt_weight).to(u.dtype), A, B.to(u.dtype), C.to(u.dtype), D, delta_bias)

    return lowrank


def bench_network(ext, sizes: List[Tuple[int, int]], reps: int, rounds: int) -> List[Dict]:
    """The paper-preset network (shipped weights) fusing one random pair, batch 1, replayed from
    a CUDA graph: with diffmf's scan, and with every SS2D scan on the peer (monkeypatched into
    :mod:`diffmf.model.vss`; the rest of the network unchanged). bf16 autocast and float32."""
    from diffmf.model import vss

    dev = torch.device("cuda")
    model = bench_network_variants.shipped_model(dev)
    ours, peer = vss.selective_scan_2d_lowrank, peer_lowrank(peer_scan_fn(ext))
    rows = []
    for h, w in sizes:
        ir, vi = bench_network_variants.random_pair(h, w, dev)
        for dtype in ("bf16", "fp32"):
            res: Dict = dict(h=h, w=w, dtype=dtype)
            outs = {}
            for _ in range(rounds):
                for name, fn in (("diffmf", ours), ("peer", peer)):
                    vss.selective_scan_2d_lowrank = fn
                    try:
                        torch.cuda.reset_peak_memory_stats()
                        t, y, _ = bench_network_variants.graphed_fuse_ms(model, ir, vi, dtype == "bf16", reps)
                        peak = torch.cuda.max_memory_allocated() / 2**20
                    finally:
                        vss.selective_scan_2d_lowrank = ours
                    res.setdefault(f"{name}_ms", []).append(t)
                    res[f"{name}_peak_mib"] = peak
                    outs[name] = y.float()
                    torch.cuda.empty_cache()
            res["max_abs_diff_255"] = float((outs["peer"] - outs["diffmf"]).abs().max() * 255)
            rows.append(res)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="compile the peer extension")
    b.add_argument("--csrc", type=Path, required=True, help="mamba-ssm's csrc/selective_scan folder")
    r = sub.add_parser("bench", help="time both and compare their results")
    r.add_argument("--cases", default="1x480x640,1x768x1024,16x128x128", help="BxHxW list")
    r.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    r.add_argument("--reps", type=int, default=10)
    r.add_argument("--out", type=Path, default=None)
    nw = sub.add_parser("network", help="the whole network with diffmf's scan and with the peer's")
    nw.add_argument("--sizes", default="480x640,768x1024", help="HxW list")
    nw.add_argument("--reps", type=int, default=10)
    nw.add_argument("--rounds", type=int, default=2)
    nw.add_argument("--out", type=Path, default=None)
    for p in (b, r, nw):
        p.add_argument("--build-dir", type=Path, default=Path.home() / ".cache" / "diffmf-peer-mamba-ssm")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        load_peer(args.build_dir, args.csrc, verbose=True)
        print(f"built {EXT_NAME} in {args.build_dir}")
        return 0
    ext = load_peer(args.build_dir)
    dev = torch.cuda.get_device_name()
    if args.cmd == "network":
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
        rows = bench_network(ext, sizes, args.reps, args.rounds)
        print(f"# {dev}, paper preset (shipped weights), fuse batch 1 as a CUDA graph, median of {args.reps} replays per round")
        print(f"{'size':10} {'dtype':5} {'diffmf ms':>18} {'peer-scan ms':>18} {'peak MiB (diffmf / peer)':>26} {'max diff (/255)':>16}")
        for r_ in rows:
            print(f"{r_['w']}x{r_['h']:<6} {r_['dtype']:5} {' / '.join(f'{t:.2f}' for t in r_['diffmf_ms']):>18} "
                  f"{' / '.join(f'{t:.2f}' for t in r_['peer_ms']):>18} {r_['diffmf_peak_mib']:>12.0f} / {r_['peer_peak_mib']:<11.0f} "
                  f"{r_['max_abs_diff_255']:16.3f}")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            meta = dict(device=dev, torch=torch.__version__, cuda=torch.version.cuda, reps=args.reps)
            (args.out / "peer_network.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
        return 0
    dtype = getattr(torch, args.dtype)
    rows = []
    for case in args.cases.split(","):
        bsz, h, w = (int(v) for v in case.split("x"))
        rows.append(bench_case(ext, bsz, h, w, dtype, args.reps))
        torch.cuda.empty_cache()
    print(f"# {dev}, {args.dtype} inputs, K=4 D=64 N=16; ms = median of {args.reps} (CUDA events); graph = forward replayed from a CUDA graph")
    print(f"{'case':16} {'impl':12} {'fwd':>8} {'fwd graph':>10} {'fwd+bwd':>9} {'peak MiB':>9}")
    for row in rows:
        case = f"{row['batch']}x{row['h']}x{row['w']}"
        for name in ("diffmf", "peer_ss2d", "peer_kernel"):
            print(f"{case:16} {name:12} {row[name + '_fwd_ms']:8.3f} {row[name + '_fwd_graph_ms']:10.3f} "
                  f"{row[name + '_fwd_bwd_ms']:9.3f} {row[name + '_fwd_bwd_peak_mib']:9.0f}")
        agree = ", ".join(f"{k} {v['rel_l2']:.1e}" for k, v in row["agreement"].items())
        print(f"{'':16} peer vs diffmf (rel. L2): {agree}")
        print(f"{'':16} bitwise repeatable grads: diffmf {row['diffmf_bitwise_repeatable_grads']}, "
              f"peer {row['peer_bitwise_repeatable_grads']} (forward {row['peer_bitwise_repeatable_fwd']})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = dict(device=dev, torch=torch.__version__, cuda=torch.version.cuda, dtype=args.dtype, reps=args.reps)
        (args.out / "peer_mamba_ssm.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
