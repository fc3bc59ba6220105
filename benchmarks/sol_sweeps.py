"""Speed of light of the segment-parallel scan's sweeps: their arithmetic with no memory traffic.

An experiment, not used by the package. Each sweep of ``diffmf.ops.triton.kernels`` walks a
segment with the state in registers; besides its loads it does a fixed amount of arithmetic
per state element (one exponential and a few multiply-adds). This script times that
arithmetic alone, on the paper's shape (K = 4 routes x D = 64 channels x N = 16 states over
L = H x W steps, segments of S steps, 4 warps per program, each lane 2 channels x 16
states), with the per-step inputs made in registers (one FMA per channel or state and step,
about what unpacking bf16 operands costs) and nothing read or written in the loop:

* ``exp``: exponentials only (``exp2(x * A)`` on 32 independent values per lane; ``ex2``:
  ``exp2(-x)``, no multiply): the exponential unit's rate (MUFU.EX2) achieved here, and the
  SM clock it implies at 16 per clock and SM;
* ``local``: ``a = exp2(delta A); h = a h + delta u B`` (``_fwd_local`` / ``_bwd_local``);
* ``out``: the same plus ``y += sum_n C h`` (``_fwd_out``);
* ``bwd_fwd``: forward recompute with ``c = C dy``, ``zh = c a h_prev``, ``sum_n A zh``, the
  dC and dA accumulations (``_bwd_fwd`` without its cross-lane channel sums);
* ``bwd_rev``: adjoint ``g = c + a_{t+1} g_{t+1}``, ``sum_n g B`` (du), ``g delta u`` (dB),
  ``zg = b gh``, ``sum_n A zg``, dA (``_bwd_rev`` without its cross-lane channel sums).

These are lower bounds for the real sweeps (which also load their operands, store outputs
and, in the backward, sum dB / dC over the channels of other lanes): the forward's two
sweeps cannot take less than ``local + out``, the backward's three less than
``local + bwd_fwd + bwd_rev``. Needs a CUDA GPU and Triton's Gluon (Triton >= 3.5):

    PYTHONPATH=src python3 benchmarks/sol_sweeps.py --out results/   # table + sol_sweeps.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from bench_model import time_ms  # this folder is on sys.path when run as a script
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

KINDS = ("exp", "local", "out", "bwd_fwd", "bwd_rev", "ex2")
EPS = gl.constexpr(1e-6)  # per-step drift of the made-up inputs (keeps every step different)


@gluon.jit
def _sweep_kernel(A2_ptr, p_ptr, out_ptr, S,
                  KIND: gl.constexpr, N: gl.constexpr, DPT: gl.constexpr, num_warps: gl.constexpr):
    """One program = one segment of S steps for LANES x DPT channels x N states.
    A2: (LANES * DPT, N) float32 (A log2 e, negative); p: (3, LANES * DPT) per-channel start
    values of delta, u and dy; out: (programs, LANES * DPT) float32, the sum over
    states of everything accumulated (keeps the results live; :func:`reference` recomputes it)."""
    lay: gl.constexpr = gl.BlockedLayout([1, DPT, N], [32, 1, 1], [num_warps, 1, 1], [2, 1, 0])
    ch_l: gl.constexpr = gl.SliceLayout(2, lay)
    st_l: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(0, lay))
    LANES: gl.constexpr = 32 * num_warps
    CH: gl.constexpr = LANES * DPT
    pid = gl.program_id(0)
    lane = gl.arange(0, LANES, layout=gl.SliceLayout(1, ch_l))
    dd = gl.arange(0, DPT, layout=gl.SliceLayout(0, ch_l))
    ch = lane[:, None] * DPT + dd[None, :]  # [LANES, DPT]
    nn = gl.arange(0, N, layout=st_l)
    n3 = gl.expand_dims(gl.expand_dims(nn, 0), 0)  # [1, 1, N]
    A2 = gl.load(A2_ptr + gl.expand_dims(ch, 2) * N + n3)  # [LANES, DPT, N]
    seg = pid.to(gl.float32) * 1e-7
    dl0 = gl.load(p_ptr + ch) + seg
    u0 = gl.load(p_ptr + CH + ch)
    dy0 = gl.load(p_ptr + 2 * CH + ch)
    b0 = nn.to(gl.float32) * 0.01 + seg
    c0 = 1.0 - nn.to(gl.float32) * 0.01
    h = gl.zeros([LANES, DPT, N], gl.float32, lay)
    acc = gl.zeros([LANES, DPT, N], gl.float32, lay)  # dC / exp chains
    acc2 = gl.zeros([LANES, DPT, N], gl.float32, lay)  # dA
    gh = gl.zeros([LANES, DPT, N], gl.float32, lay)
    y = gl.zeros([LANES, DPT], gl.float32, ch_l)
    ys = gl.zeros([LANES, DPT], gl.float32, ch_l)
    if KIND == 0 or KIND == 5:
        acc = A2 * 0.5
    for t in range(S):
        tf = t.to(gl.float32) * EPS
        if KIND == 0:  # exponentials only
            acc = gl.exp2(acc * A2)
        elif KIND == 5:  # exponentials alone, no multiply (converges to 0.64)
            acc = gl.exp2(-acc)
        else:
            dl = dl0 + tf  # [LANES, DPT]
            du = dl * u0
            B = gl.expand_dims(gl.expand_dims(b0 + tf, 0), 0)  # [1, 1, N]
            a = gl.exp2(gl.expand_dims(dl, 2) * A2)
            b = gl.expand_dims(du, 2) * B
            if KIND == 1:  # segment sweep
                h = a * h + b
            elif KIND == 2:  # output sweep
                h = a * h + b
                C = gl.expand_dims(gl.expand_dims(c0 + tf, 0), 0)
                y = y + gl.sum(C * h, axis=2)
            elif KIND == 3:  # backward, forward recompute
                dy = gl.expand_dims(dy0 + tf, 2)
                C = gl.expand_dims(gl.expand_dims(c0 + tf, 0), 0)
                ah = a * h
                h = ah + b
                zh = (C * dy) * ah
                ys = ys + gl.sum(A2 * zh, axis=2)
                acc = acc + h * dy
                acc2 = acc2 + zh * gl.expand_dims(dl, 2)
            else:  # backward, adjoint sweep
                dy = gl.expand_dims(dy0 + tf, 2)
                C = gl.expand_dims(gl.expand_dims(c0 + tf, 0), 0)
                zg = b * gh
                g = C * dy + gh
                gh = a * g
                y = y + gl.sum(g * B, axis=2)
                acc = acc + g * gl.expand_dims(du, 2)
                ys = ys + gl.sum(A2 * zg, axis=2)
                acc2 = acc2 + zg * gl.expand_dims(dl, 2)
    tot = y + ys + gl.sum(h + acc + acc2 + gh, axis=2)
    gl.store(out_ptr + pid * CH + ch, tot)


def run_sweep(kind: str, A2: torch.Tensor, p: torch.Tensor, out: torch.Tensor, S: int, warps: int) -> None:
    _sweep_kernel[(out.shape[0],)](A2, p, out, S, KIND=KINDS.index(kind), N=A2.shape[1],
                                   DPT=A2.shape[0] // (32 * warps), num_warps=warps)


def reference(kind: str, A2: torch.Tensor, p: torch.Tensor, programs: int, S: int) -> torch.Tensor:
    """What the kernel computes, in float64 PyTorch (the check that no work was optimised away)."""
    A2, p = A2.double(), p.double()
    ch, n = A2.shape
    seg = (torch.arange(programs, device=A2.device, dtype=torch.float32) * 1e-7).double()[:, None]
    dl0, u0, dy0 = p[0] + seg, p[1], p[2]
    nn = torch.arange(n, device=A2.device, dtype=torch.float64)
    b0, c0 = nn * 0.01 + seg, 1.0 - nn * 0.01
    z = torch.zeros(programs, ch, n, dtype=torch.float64, device=A2.device)
    h, acc, acc2, gh = z, z, z, z
    y = ys = z[..., 0]
    for t in range(S):
        tf = t * 1e-6
        dl = (dl0 + tf)[..., None]
        du = dl * u0[:, None]
        B = (b0 + tf)[:, None, :]
        C = c0 + tf
        a = torch.exp2(dl * A2)
        b = du * B
        if kind in ("local", "out"):
            h = a * h + b
            if kind == "out":
                y = y + (C * h).sum(-1)
        elif kind == "bwd_fwd":
            dy = (dy0 + tf)[:, None]
            ah = a * h
            h = ah + b
            zh = (C * dy) * ah
            ys = ys + (A2 * zh).sum(-1)
            acc = acc + h * dy
            acc2 = acc2 + zh * dl
        else:
            dy = (dy0 + tf)[:, None]
            zg = b * gh
            g = C * dy + gh
            gh = a * g
            y = y + (g * B).sum(-1)
            acc = acc + g * du
            ys = ys + (A2 * zg).sum(-1)
            acc2 = acc2 + zg * dl
    return y + ys + (h + acc + acc2 + gh).sum(-1)


def make_inputs(ch: int, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """A2 = A log2(e) (ch, n) in [-11.7, -0.14] and the per-channel start values p (3, ch)."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    A2 = -(torch.rand(ch, n, device="cuda", generator=gen) * 8 + 0.1) * 1.4426950408889634
    p = torch.rand(3, ch, device="cuda", generator=gen) * 0.05 + 0.005
    return A2, p


def measure(h: int, w: int, k: int, d: int, n: int, seg: int, warps: int, reps: int) -> List[Dict]:
    """Times each kind on the shape; returns one row per kind."""
    ch = k * d
    programs = -(-h * w // seg)
    A2, p = make_inputs(ch, n)
    out = torch.empty(programs, ch, device="cuda")
    elems = ch * n * programs * seg
    rows = []
    for kind in KINDS:
        ms = statistics.median(time_ms(lambda: run_sweep(kind, A2, p, out, seg, warps), reps, 3))
        assert torch.isfinite(out).all(), kind
        err = None
        if kind not in ("exp", "ex2"):  # iterated exponentials: no reference kept
            ref = reference(kind, A2, p, programs, seg)
            err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
            assert err < 1e-4, f"{kind}: relative error {err:.2e} against float64"
        rows.append({"kind": kind, "ms": ms, "state_elements": elems, "gexp_per_s": elems / ms / 1e6,
                     "max_rel_err_vs_float64": err})
    return rows


def busy_clock_mhz(ch: int, n: int, programs: int, seg: int, warps: int) -> str:
    """The SM clock nvidia-smi reports while the GPU runs the exponential kernel back to back."""
    if shutil.which("nvidia-smi") is None:
        return "?"
    A2, p = make_inputs(ch, n)
    out = torch.empty(programs, ch, device="cuda")
    for _ in range(3000):  # the launch queue fills; ~1000 launches are still queued below
        run_sweep("exp", A2, p, out, seg, warps)
    q = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm", "--format=csv,noheader,nounits", "-i",
                        str(torch.cuda.current_device())], capture_output=True, text=True).stdout.strip()
    torch.cuda.synchronize()
    return q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="480x640", help="H x W (steps per route = H * W)")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seg", default="128,160", help="segment lengths to time (comma list)")
    ap.add_argument("--warps", type=int, default=4)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", default=None, help="folder for sol_sweeps.json")
    args = ap.parse_args()
    h, w = (int(v) for v in args.shape.split("x"))
    props = torch.cuda.get_device_properties(0)
    sms = props.multi_processor_count
    result = {"device": props.name, "sms": sms, "shape": args.shape, "k": args.k, "d": args.d, "n": args.n,
              "warps": args.warps, "runs": []}
    print(f"{props.name}, {sms} SMs; {args.k} routes x {args.d} channels x {args.n} states x {h * w} steps")
    print(f"{'seg':>4} {'kind':>8} {'ms':>8} {'G elem/s':>9} {'err':>8}  note")
    for seg in (int(s) for s in args.seg.split(",")):
        rows = measure(h, w, args.k, args.d, args.n, seg, args.warps, args.reps)
        by = {r["kind"]: r["ms"] for r in rows}
        for r in rows:
            note = ""
            if r["kind"] in ("exp", "ex2"):
                ghz = r["gexp_per_s"] * 1e9 / (16 * sms) / 1e9
                note = f"= {ghz:.2f} GHz at 16 exponentials per clock and SM"
                r["implied_ghz"] = ghz
            err = "-" if r["max_rel_err_vs_float64"] is None else f"{r['max_rel_err_vs_float64']:.1e}"
            print(f"{seg:>4} {r['kind']:>8} {r['ms']:8.3f} {r['gexp_per_s']:9.0f} {err:>8}  {note}")
        fwd = by["local"] + by["out"]
        bwd = by["local"] + by["bwd_fwd"] + by["bwd_rev"]
        print(f"{seg:>4} forward sweeps (local + out) {fwd:.3f} ms; backward sweeps (local + bwd_fwd + bwd_rev) {bwd:.3f} ms")
        result["runs"].append({"seg": seg, "rows": rows, "forward_ms": fwd, "backward_ms": bwd})
    seg0 = int(args.seg.split(",")[0])
    result["busy_clock_mhz"] = busy_clock_mhz(args.k * args.d, args.n, -(-h * w // seg0), seg0, args.warps)
    print(f"SM clock while the exponential kernel runs back to back: {result['busy_clock_mhz']} MHz")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "sol_sweeps.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
