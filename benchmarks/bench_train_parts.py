"""Non-scan hot spots of the training step, each against alternatives: time and agreement.

    python3 benchmarks/bench_train_parts.py [--cudnn-benchmark] [--out results/]

``--cudnn-benchmark`` sets ``torch.backends.cudnn.benchmark = True``, as the trainer does
(unless ``train.deterministic``). Without it (the default, and what ``gpu_profile.py``'s
training table measured before the fourteenth session) the planar bf16 depthwise conv runs
PyTorch's own ``conv_depthwise2d`` kernels and the loss's 11 x 11 filter a slow cuDNN dgrad
engine, so both alternatives below look faster (H100: 1.04 -> 0.61 ms and 3.41 -> 0.63 ms);
in the real trainer they changed nothing (108-111 pairs/s either way) and with deterministic
algorithms cost 3% (180 -> 185 ms per step): not adopted (docs/benchmarks-log.md, run 13).

* ``dwconv``: SS2D's depthwise 3x3 conv + SiLU with its backward in the model's form (planar
  copy -> ``F.conv2d`` -> SiLU) against the same conv on the channels-last view followed by
  the planar copy.
* ``loss``: the fusion loss (eq. 14) with its backward at batch 16 x 128 x 128, float32, as
  the trainer computes it, against an SSIM that filters all its maps in one grouped conv
  (the fused image's maps shared by both SSIM terms) and against the same with the 11 x 11
  Gaussian applied as two 1-D passes.

Prints a table (median ms of CUDA-event timings after warm-up, eager and replayed from a CUDA
graph (the GPU time the graphed training step sees), max |difference| relative to the
largest value, for the outputs and input gradients) and writes ``train_parts.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scan  # noqa: E402  (time_ms)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


# ---------------------------------------------------------------------------------- dwconv
def dw_planar(x, w, b):
    return F.silu(F.conv2d(x.permute(0, 3, 1, 2).contiguous(), w, b, padding=1, groups=x.shape[-1]))


def dw_channels_last(x, w, b):
    return F.silu(F.conv2d(x.permute(0, 3, 1, 2), w, b, padding=1, groups=x.shape[-1])).contiguous()


def bench_dwconv(shape, dtype, reps) -> List[Dict]:
    dev = torch.device("cuda")
    bsz, h, w_, c = shape
    x0 = torch.randn(bsz, h, w_, c, device=dev, dtype=dtype)
    w0 = torch.randn(c, 1, 3, 3, device=dev, dtype=dtype) * 0.3
    b0 = torch.randn(c, device=dev, dtype=dtype) * 0.1
    gy = torch.randn(bsz, c, h, w_, device=dev, dtype=dtype)
    rows, ref = [], None
    for name, fn in (("planar (the model's form)", dw_planar), ("channels-last view", dw_channels_last)):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))

        def step(i=0):
            x.grad = w.grad = b.grad = None
            fn(x, w, b).backward(gy)

        t = statistics.median(bench_scan.time_ms(step, reps))
        tg = statistics.median(bench_scan.graph_replay_ms(step, reps))
        y = fn(x, w, b)
        step()
        outs = [y.detach(), x.grad, w.grad, b.grad]
        ref = outs if ref is None else ref
        rows.append(dict(part="dwconv", shape="x".join(map(str, shape)), dtype=str(dtype).replace("torch.", ""),
                         variant=name, ms=t, graph_ms=tg, rel_diff=max(_rel(o, r) for o, r in zip(outs, ref)),
                         y_contiguous=y.is_contiguous()))
    return rows


# ---------------------------------------------------------------------------------- loss
def _shared_ssim(fused, ir, vi, window: torch.Tensor, separable: bool, size: int = 11):
    """mean SSIM(fused, ir) and mean SSIM(fused, vi), every filtered map from one grouped conv."""
    from diffmf.losses.ssim import C1, C2

    pad = size // 2
    maps = torch.cat([fused, ir, vi, fused * fused, ir * ir, vi * vi, fused * ir, fused * vi], dim=1)  # (B, 8, H, W)
    g = maps.shape[1]
    if separable:
        g1 = window[0, 0].sum(dim=1)  # the 1-D window (rows of the outer product sum to it)
        f = F.conv2d(maps, g1.view(1, 1, 1, size).expand(g, 1, 1, size), padding=(0, pad), groups=g)
        f = F.conv2d(f, g1.view(1, 1, size, 1).expand(g, 1, size, 1), padding=(pad, 0), groups=g)
    else:
        f = F.conv2d(maps, window.expand(g, 1, size, size), padding=pad, groups=g)
    mf, mi, mv, ff, ii, vv, fi, fv = f.unbind(1)
    out = []
    for my, yy, fy in ((mi, ii, fi), (mv, vv, fv)):
        s_ff, s_yy, s_fy = ff - mf * mf, yy - my * my, fy - mf * my
        out.append((((2 * mf * my + C1) * (2 * s_fy + C2)) / ((mf * mf + my * my + C1) * (s_ff + s_yy + C2))).mean())
    return out


def loss_variant(separable: bool) -> Callable:
    from diffmf.losses.fusion import LossConfig, intensity_loss, texture_loss
    from diffmf.losses.ssim import gaussian_window

    c = LossConfig()
    cache: Dict = {}

    def loss(fused, ir, vi):
        fused, ir, vi = fused.float(), ir.float(), vi.float()
        key = fused.device
        if key not in cache:
            cache[key] = gaussian_window(c.ssim_window, 1.5, dtype=torch.float32, device=fused.device)
        s_ir, s_vi = _shared_ssim(fused, ir, vi, cache[key], separable, c.ssim_window)
        l_ssim = c.ssim_w_ir * (1 - s_ir) + c.ssim_w_vi * (1 - s_vi)
        return c.w_ssim * l_ssim + c.w_text * texture_loss(fused, ir, vi) + c.w_int * intensity_loss(fused, ir, vi, c.intensity)

    return loss


def bench_loss(batch, size, reps) -> List[Dict]:
    from diffmf.losses.fusion import FusionLoss

    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    f0, ir, vi = (torch.rand(batch, 1, size, size, device=dev, generator=g) for _ in range(3))
    current = FusionLoss()
    rows, ref = [], None
    for name, fn in (("FusionLoss (the model's)", lambda a, b, c_: current(a, b, c_)[0]),
                     ("one grouped 11x11 conv", loss_variant(False)),
                     ("one grouped conv, separable", loss_variant(True))):
        f = f0.clone().requires_grad_()

        def step(i=0):
            f.grad = None
            fn(f, ir, vi).backward()

        t = statistics.median(bench_scan.time_ms(step, reps))
        tg = statistics.median(bench_scan.graph_replay_ms(step, reps))
        val = fn(f, ir, vi).detach()
        step()
        outs = [val.reshape(1), f.grad]
        ref = outs if ref is None else ref
        rows.append(dict(part="loss", shape=f"{batch}x1x{size}x{size}", dtype="float32", variant=name, ms=t,
                         graph_ms=tg, rel_diff=max(_rel(o, r) for o, r in zip(outs, ref))))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--cudnn-benchmark", action="store_true", help="cuDNN autotuning on, as in the trainer")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
    rows: List[Dict] = []
    for dtype in (torch.bfloat16, torch.float32):
        for shape in ((16, 128, 128, 64), (16, 64, 64, 64), (16, 32, 32, 64), (1, 480, 640, 64)):
            rows += bench_dwconv(shape, dtype, args.reps)
    rows += bench_loss(16, 128, args.reps)
    print(f"# {torch.cuda.get_device_name()}, cudnn.benchmark {args.cudnn_benchmark}, median of {args.reps} "
          "(forward + backward), rel. diff = max |diff| / max |first row|")
    print(f"{'part':7} {'shape':16} {'dtype':9} {'variant':30} {'eager ms':>9} {'graph ms':>9} {'rel diff':>9}")
    for r in rows:
        print(f"{r['part']:7} {r['shape']:16} {r['dtype']:9} {r['variant']:30} {r['ms']:9.3f} {r['graph_ms']:9.3f} {r['rel_diff']:9.1e}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = dict(device=torch.cuda.get_device_name(), cudnn_benchmark=args.cudnn_benchmark)
        (args.out / "train_parts.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
