"""Probe (an experiment, not used by the package): a serial-walker selective scan forward,
warp-specialised in Triton's experimental Gluon dialect, to measure how fast the one design
with one exponential per state element and no segment carry runs (docs/benchmarks.md, "Why
the targets are not met").

Each program owns 2 channels x 16 states = 32 recurrences of one group (the channels of a
route share B and C) and walks all L steps in chunks of T:

- producer (default partition, 4 warps): a = exp2(delta * A2), b = delta * u * B for a chunk,
  into shared memory;
- walker (1 warp, a lane per recurrence): h = a h + b step by step, in pieces of TW <= 32 steps
  read from and written back to shared memory at once;
- consumer (4 warps): y = sum_n C h per channel and step, to global memory.

The hand-offs use mbarriers over NBUF chunk buffers; the producer's and consumer's global
loads run one chunk ahead (``pf=2``: two, measured no faster). Inputs are planes: u, delta
(C, L), A2 = A log2(e) (C, N, float32), B and C (G, L, N) with channel c in group c // (C / G),
float32 or bf16 (``--dtype``). No softplus, no D term, no bias: the recurrence and its output.

Run on a Hopper GPU with Triton >= 3.5:  ``PYTHONPATH=src python3 benchmarks/probe_walker.py
--out DIR`` checks against a float64 loop on a short sequence, then times the paper shape
(256 channel sequences of 307,200 steps, 4 groups, N = 16) against diffmf's 1-D Triton scan
on the same inputs, then each with parts of the arithmetic left out (``SKIP`` bits: producer,
walker, consumer) to see what bounds it, and writes ``probe_walker.json``. Results:
docs/benchmarks-log.md, run 19.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import triton
from bench_model import time_ms  # this folder is on sys.path when run as a script
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier


@gluon.jit
def _producer(bars, bufs, u_ptr, dl_ptr, A2_ptr, B_ptr, c0, g, L, nchunk,
              T: gl.constexpr, N: gl.constexpr, NBUF: gl.constexpr, SKIP: gl.constexpr, PF: gl.constexpr, lay: gl.constexpr):
    ab_ready, ab_empty, h_ready, h_empty = bars
    a_bufs, b_bufs, h_bufs = bufs
    t_ax = gl.arange(0, T, layout=gl.SliceLayout(1, lay))[:, None]
    r = gl.arange(0, 2 * N, layout=gl.SliceLayout(0, lay))[None, :]
    ch = c0 + r // N
    n = r % N
    A2 = gl.load(A2_ptr + ch * N + n)
    dl_n = gl.load(dl_ptr + ch * L + t_ax)
    uu_n = gl.load(u_ptr + ch * L + t_ax)
    bb_n = gl.load(B_ptr + (g * L + t_ax) * N + n)
    t = gl.minimum(1, nchunk - 1) * T + t_ax
    dl_m = gl.load(dl_ptr + ch * L + t)
    uu_m = gl.load(u_ptr + ch * L + t)
    bb_m = gl.load(B_ptr + (g * L + t) * N + n)
    for i in range(nchunk):
        s = i % NBUF
        ph = (i // NBUF) & 1
        dl, uu, bb = dl_n.to(gl.float32), uu_n.to(gl.float32), bb_n.to(gl.float32)
        if PF == 2:  # two chunks' loads in flight meanwhile
            dl_n, uu_n, bb_n = dl_m, uu_m, bb_m
            t = gl.minimum(i + 2, nchunk - 1) * T + t_ax
            dl_m = gl.load(dl_ptr + ch * L + t)
            uu_m = gl.load(u_ptr + ch * L + t)
            bb_m = gl.load(B_ptr + (g * L + t) * N + n)
        else:  # the next chunk's loads in flight meanwhile
            t = gl.minimum(i + 1, nchunk - 1) * T + t_ax
            dl_n = gl.load(dl_ptr + ch * L + t)
            uu_n = gl.load(u_ptr + ch * L + t)
            bb_n = gl.load(B_ptr + (g * L + t) * N + n)
        if SKIP & 1:  # timing experiment: the producer's arithmetic left out
            a = dl
            b = uu
        else:
            a = gl.exp2(dl * A2)
            b = (dl * uu) * bb
        mbarrier.wait(ab_empty.index(s), ph ^ 1)
        a_bufs.index(s).store(a)
        b_bufs.index(s).store(b)
        mbarrier.arrive(ab_ready.index(s), count=1)


@gluon.jit
def _walker(bars, bufs, C_ptr, y_ptr, c0, g, L, nchunk,
            T: gl.constexpr, N: gl.constexpr, NBUF: gl.constexpr, SKIP: gl.constexpr, PF: gl.constexpr,
            TW: gl.constexpr):
    """A lane per recurrence; a chunk is walked in pieces of TW steps, each piece's decays and
    inputs read from shared memory at once (TW registers each, a lane's column) and its states
    written back at once, so that the steps in between are the dependent multiply-adds alone
    (the masked sums over the in-thread TW axis fold to register picks: -0.0 is the exact
    identity of the float add). (Gluon's worker partitions share one signature: C_ptr, y_ptr
    and PF are the consumer's.)"""
    ab_ready, ab_empty, h_ready, h_empty = bars
    a_bufs, b_bufs, h_bufs = bufs
    layT: gl.constexpr = gl.BlockedLayout([TW, 1], [1, 32], [1, 1], [0, 1])
    t_ax = gl.arange(0, TW, layout=gl.SliceLayout(1, layT))[:, None]
    h = gl.zeros([2 * N], gl.float32, gl.SliceLayout(0, layT))
    for i in range(nchunk):
        s = i % NBUF
        ph = (i // NBUF) & 1
        mbarrier.wait(ab_ready.index(s), ph)
        mbarrier.wait(h_empty.index(s), ph ^ 1)
        for j in gl.static_range(T // TW):
            a_all = a_bufs.index(s).slice(j * TW, TW).load(layT)
            b_all = b_bufs.index(s).slice(j * TW, TW).load(layT)
            if SKIP & 2:  # timing experiment: the walker's arithmetic left out
                h_all = a_all + b_all
            else:
                h_all = gl.zeros([TW, 2 * N], gl.float32, layT)
                for tt in gl.static_range(TW):
                    at = gl.sum(gl.where(t_ax == tt, a_all, -0.0), axis=0)
                    bt = gl.sum(gl.where(t_ax == tt, b_all, -0.0), axis=0)
                    h = at * h + bt
                    h_all = gl.where(t_ax == tt, h[None, :], h_all)
            h_bufs.index(s).slice(j * TW, TW).store(h_all)
        mbarrier.arrive(ab_empty.index(s), count=1)
        mbarrier.arrive(h_ready.index(s), count=1)


@gluon.jit
def _consumer(bars, bufs, C_ptr, y_ptr, c0, g, L, nchunk,
              T: gl.constexpr, N: gl.constexpr, NBUF: gl.constexpr, SKIP: gl.constexpr, PF: gl.constexpr,
              TW: gl.constexpr):
    ab_ready, ab_empty, h_ready, h_empty = bars
    a_bufs, b_bufs, h_bufs = bufs
    lay: gl.constexpr = gl.BlockedLayout([1, 8], [8, 4], [4, 1], [1, 0])
    t_ax = gl.arange(0, T, layout=gl.SliceLayout(1, lay))[:, None]
    r = gl.arange(0, 2 * N, layout=gl.SliceLayout(0, lay))[None, :]
    n = r % N
    first = (r // N) == 0
    t1 = gl.arange(0, T, layout=gl.SliceLayout(1, lay))
    cc_n = gl.load(C_ptr + (g * L + t_ax) * N + n)
    cc_m = gl.load(C_ptr + (g * L + gl.minimum(1, nchunk - 1) * T + t_ax) * N + n)
    for i in range(nchunk):
        s = i % NBUF
        ph = (i // NBUF) & 1
        cc = cc_n.to(gl.float32)
        if PF == 2:
            cc_n = cc_m
            cc_m = gl.load(C_ptr + (g * L + gl.minimum(i + 2, nchunk - 1) * T + t_ax) * N + n)
        else:
            cc_n = gl.load(C_ptr + (g * L + gl.minimum(i + 1, nchunk - 1) * T + t_ax) * N + n)
        mbarrier.wait(h_ready.index(s), ph)
        h = h_bufs.index(s).load(lay)
        mbarrier.arrive(h_empty.index(s), count=1)
        if SKIP & 4:  # timing experiment: the consumer's arithmetic left out
            p = h
        else:
            p = cc * h
        y0 = gl.sum(gl.where(first, p, 0.0), axis=1)
        y1 = gl.sum(gl.where(first, 0.0, p), axis=1)
        gl.store(y_ptr + c0 * L + i * T + t1, y0)
        gl.store(y_ptr + (c0 + 1) * L + i * T + t1, y1)


@gluon.jit
def walker_scan_kernel(u_ptr, dl_ptr, A2_ptr, B_ptr, C_ptr, y_ptr, L, CPG,
                       T: gl.constexpr, N: gl.constexpr, NBUF: gl.constexpr, WREGS: gl.constexpr, SKIP: gl.constexpr, PF: gl.constexpr, TW: gl.constexpr,
                       num_warps: gl.constexpr):
    pid = gl.program_id(0)
    c0 = pid * 2
    g = c0 // CPG
    nchunk = L // T
    a_bufs = gl.allocate_shared_memory(gl.float32, [NBUF, T, 2 * N], gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    b_bufs = gl.allocate_shared_memory(gl.float32, [NBUF, T, 2 * N], gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    h_bufs = gl.allocate_shared_memory(gl.float32, [NBUF, T, 2 * N], gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    ab_ready = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
    ab_empty = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
    h_ready = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
    h_empty = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(NBUF):
        mbarrier.init(ab_ready.index(i), count=1)
        mbarrier.init(ab_empty.index(i), count=1)
        mbarrier.init(h_ready.index(i), count=1)
        mbarrier.init(h_empty.index(i), count=1)
    bars = (ab_ready, ab_empty, h_ready, h_empty)
    bufs = (a_bufs, b_bufs, h_bufs)
    lay: gl.constexpr = gl.BlockedLayout([1, 8], [8, 4], [num_warps, 1], [1, 0])
    gl.warp_specialize([
        (_producer, (bars, bufs, u_ptr, dl_ptr, A2_ptr, B_ptr, c0, g, L, nchunk, T, N, NBUF, SKIP, PF, lay)),
        (_walker, (bars, bufs, C_ptr, y_ptr, c0, g, L, nchunk, T, N, NBUF, SKIP, PF, TW)),
        (_consumer, (bars, bufs, C_ptr, y_ptr, c0, g, L, nchunk, T, N, NBUF, SKIP, PF, TW)),
    ], [1, 4], [WREGS, 128])


def walker_scan(u, dl, A2, B, C, T: int = 32, nbuf: int = 2, maxnreg: int = 128, wregs: int = 128, skip: int = 0,
                pf: int = 1, tw: int = 32, pwarps: int = 4):
    """u, dl: (Ch, L); A2: (Ch, N); B, C: (G, L, N); float32, L a multiple of T -> y (Ch, L).
    T: steps per hand-off (chunk), tw: steps per walker piece, pwarps: producer warps."""
    tw = min(tw, T)
    ch, L = u.shape
    G, _, N = B.shape
    assert N == 16 and ch % 2 == 0 and L % T == 0 and T % tw == 0 and (ch // G) % 2 == 0
    y = torch.empty(u.shape, device=u.device, dtype=torch.float32)
    walker_scan_kernel[(ch // 2,)](u, dl, A2, B, C, y, L, ch // G, T=T, N=N, NBUF=nbuf, WREGS=wregs, SKIP=skip, PF=pf, TW=tw, num_warps=pwarps, maxnreg=maxnreg)
    return y


def reference(u, dl, A2, B, C):
    """float64 loop (short L only)."""
    ch, L = u.shape
    G = B.shape[0]
    grp = torch.arange(ch, device=u.device) // (ch // G)
    u, dl, A2, B, C = (x.double() for x in (u, dl, A2, B, C))
    h = torch.zeros(ch, A2.shape[1], dtype=torch.float64, device=u.device)
    ys = []
    for t in range(L):
        h = torch.exp2(dl[:, t, None] * A2) * h + (dl[:, t] * u[:, t])[:, None] * B[grp, t]
        ys.append((C[grp, t] * h).sum(1))
    return torch.stack(ys, 1)


def inputs(ch: int, L: int, G: int, N: int = 16, seed: int = 0, dtype: torch.dtype = torch.float32):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.rand(*s, device="cuda", generator=gen)  # noqa: E731
    u = r(ch, L) * 2 - 1
    dl = r(ch, L) * 0.1
    A2 = -(r(ch, N) * 8 + 0.1) * 1.4426950408889634
    B = r(G, L, N) * 2 - 1
    C = r(G, L, N) * 2 - 1
    return u.to(dtype), dl.to(dtype), A2, B.to(dtype), C.to(dtype)


def timed(fn, reps: int = 20, warmup: int = 3) -> float:
    """Median ms of ``reps`` calls (CUDA events) after ``warmup``."""
    return statistics.median(time_ms(fn, reps, warmup))


def diffmf_1d(u, dl, A2, B, C):
    """The same scan through diffmf's 1-D Triton op (u, delta (1, Ch, L), A (Ch, N), B / C (1, G, N, L))."""
    from diffmf.ops.triton.scan import selective_scan_triton

    A = A2 / 1.4426950408889634
    Bt = B.permute(0, 2, 1).unsqueeze(0)
    Ct = C.permute(0, 2, 1).unsqueeze(0)
    return lambda: selective_scan_triton(u[None], dl[None], A, Bt, Ct, None, None, False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--T", default="32,64,128", help="chunk lengths to time")
    ap.add_argument("--nbuf", default="2")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="u, delta, B, C at the full shape")
    ap.add_argument("--ncu", action="store_true", help="only a few launches at T=32, NBUF=3 (for Nsight Compute)")
    args = ap.parse_args()
    if args.ncu:
        u, dl, A2, B, C = inputs(256, 307200, 4)
        for skip in (0, 7):
            for _ in range(2):
                walker_scan(u, dl, A2, B, C, T=32, nbuf=3, skip=skip)
        torch.cuda.synchronize()
        return 0
    res = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__}
    # correctness, short sequences, several chunks and groups
    u, dl, A2, B, C = inputs(8, 512, 2)
    ref = reference(u, dl, A2, B, C)
    for T in (16, 32):
        y = walker_scan(u, dl, A2, B, C, T=T)
        torch.cuda.synchronize()
        err = ((y.double() - ref).norm() / ref.norm()).item()
        res[f"rel_l2_T{T}"] = err
        print(f"walker T={T}: relative L2 error vs float64 loop {err:.2e}", flush=True)
    ref1 = diffmf_1d(u, dl, A2, B, C)()
    print(f"diffmf 1-D op: relative L2 error {((ref1[0].double() - ref).norm() / ref.norm()).item():.2e}", flush=True)
    # the paper shape
    res["dtype"] = args.dtype
    u, dl, A2, B, C = inputs(256, 307200, 4, dtype=getattr(torch, args.dtype))
    copy_src = torch.empty(2 ** 28, device="cuda")
    copy_dst = torch.empty_like(copy_src)
    ms_copy = timed(lambda: copy_dst.copy_(copy_src))
    res["copy_GBps"] = 2 * copy_src.numel() * 4 / ms_copy / 1e6
    f = diffmf_1d(u, dl, A2, B, C)
    res["diffmf_1d_ms"] = timed(f)
    print(f"copy {res['copy_GBps']:.0f} GB/s; diffmf 1-D Triton scan, 256 x 307200: {res['diffmf_1d_ms']:.3f} ms", flush=True)
    y_d = f()[0]
    for T in (int(x) for x in args.T.split(",")):
        for nbuf in (int(x) for x in args.nbuf.split(",")):
            try:
                wr = 128
                fn = lambda: walker_scan(u, dl, A2, B, C, T=T, nbuf=nbuf, wregs=wr)  # noqa: E731
                ms = timed(fn)
                y = fn()
                d = ((y - y_d).norm() / y_d.norm()).item()
                res[f"walker_T{T}_nbuf{nbuf}_ms"] = ms
                print(f"walker T={T} nbuf={nbuf}: {ms:.3f} ms ({307200 / (ms * 1e-3) / 1e9:.3f} Gsteps/s), "
                      f"rel. L2 vs diffmf {d:.1e}", flush=True)
            except Exception as exc:  # noqa: BLE001
                print(f"walker T={T} nbuf={nbuf}: failed: {str(exc)[:300]}", flush=True)
    for T in (int(x) for x in args.T.split(",")):
        # 4 producer warps are the default, timed above (and without arithmetic below)
        pw = 8
        try:
            ms = timed(lambda: walker_scan(u, dl, A2, B, C, T=T, nbuf=2, pwarps=pw))
            y = walker_scan(u, dl, A2, B, C, T=T, nbuf=2, pwarps=pw)
            res[f"walker_T{T}_pw{pw}_ms"] = ms
            print(f"walker T={T} nbuf=2, walker pieces of 32, {pw} producer warps: {ms:.3f} ms, rel. L2 vs "
                  f"diffmf {((y - y_d).norm() / y_d.norm()).item():.1e}", flush=True)
        except Exception as exc:  # noqa: BLE001
            print(f"walker T={T} {pw} producer warps: failed: {str(exc)[:300]}", flush=True)
        wr = 128
        for skip, what in ((7, "handshakes only"), (6, "producer's arithmetic only"), (5, "walker's only"), (3, "consumer's only")):
            ms = timed(lambda: walker_scan(u, dl, A2, B, C, T=T, wregs=wr, skip=skip))
            res[f"walker_T{T}_skip{skip}_ms"] = ms
            print(f"walker T={T}, {what} (skip={skip}): {ms:.3f} ms", flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "probe_walker.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
