"""Where the time of ``diffmf fuse`` on a folder goes, image by image, in one process.

Loads the shipped weights once, reads every pair of a folder into memory, then fuses the
pairs in folder order with several :class:`diffmf.engine.fuse.Fuser` settings, timing each
network call (host clock around ``fuse_y`` + ``cuda.synchronize``, so launch overhead, the
first call of a size and graph captures are all counted). Every setting runs twice: ``cold``
= the first pass of that setting in this process (what one ``diffmf fuse`` run sees: first
use of each size, captures), ``warm`` = the same pass again. With ``--vs fp32`` the fused
luminance of each setting is compared with the fp32 eager one (max / mean absolute
difference in 8-bit grey levels after rounding). After each pass the number of compiled
Triton kernel variants loaded in the process is printed (each new "== 1 / divisible by 16"
pattern of a kernel's integer arguments is one more compile or disk-cache load), and the peak
memory allocated / reserved (the caching allocator's footprint, what ``nvidia-smi`` shows) of
the pass, counted from an emptied cache;
``fp32+pad64`` pads every image to a multiple of 64 (one variant per kernel; an experiment,
not what ``diffmf fuse`` does).

    PYTHONPATH=src python3 benchmarks/bench_fuse.py --folder .data/test/TNO25 --out results/
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

# name -> Fuser keyword arguments (+ "tf32": allow TF32 matmuls / convolutions)
SETTINGS: Dict[str, Dict] = {
    "fp32": dict(amp=False, cuda_graphs=False),
    "fp32+graphs": dict(amp=False, cuda_graphs=True),
    "tf32": dict(amp=False, cuda_graphs=False, tf32=True),
    "amp": dict(amp=True, cuda_graphs=False),
    "amp+graphs": dict(amp=True, cuda_graphs=True),
    # every repeated size replayed from a graph (no pixel limit)
    "fp32+graphs-all": dict(amp=False, cuda_graphs=True, graph_max_pixels=0),
    "amp+graphs-all": dict(amp=True, cuda_graphs=True, graph_max_pixels=0),
    "fp32+pad64": dict(amp=False, cuda_graphs=False, pad=64),
}


def _load(folder: Path):
    from diffmf.data.dataset import load_pair
    from diffmf.data.pairs import pair_folders

    pairs, _, _ = pair_folders(folder / "ir", folder / "vi")
    out = []
    for p in pairs:
        ir, vi_y, _ = load_pair(p)
        out.append((p.name, torch.from_numpy(ir)[None, None], torch.from_numpy(vi_y)[None, None]))
    return out


def compiled_variants() -> Dict[str, int]:
    """Compiled (specialised) variants per Triton kernel of diffmf loaded in this process:
    every new "== 1 / divisible by 16" pattern of a kernel's integer arguments is one more
    compile (empty cache) or one more load from Triton's disk cache (warm)."""
    from triton.runtime.jit import JITFunction

    from diffmf.ops.triton import kernels, layernorm

    out = {}
    for mod in (kernels, layernorm):
        for name, fn in vars(mod).items():
            if isinstance(fn, JITFunction) and name.endswith("_kernel"):
                caches = getattr(fn, "device_caches", {}) or {}
                n = sum(len(v[0]) for v in caches.values() if isinstance(v, tuple) and isinstance(v[0], dict))
                if n:
                    out[name] = n
    return out


def _pass(fuser, data) -> List[Dict]:
    rows = []
    seen: Counter = Counter()
    for name, ir, vi in data:
        size = tuple(ir.shape[-2:])
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        y = fuser.fuse_y(ir, vi)
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1e3
        rows.append(dict(name=name, h=size[0], w=size[1], occurrence=seen[size], ms=ms,
                         y=np.rint(y[0, 0].cpu().numpy() * 255.0).astype(np.int16)))
        seen[size] += 1
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, required=True, help="test folder with ir/ and vi/")
    ap.add_argument("--weights", default=None, help="weights (default: the shipped ones)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of " + ", ".join(SETTINGS))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    from diffmf.engine.checkpoint import load_weights
    from diffmf.engine.fuse import Fuser
    from diffmf.weights import resolve

    t0 = time.perf_counter()
    model = load_weights(resolve(args.weights))
    t_load = time.perf_counter() - t0
    data = _load(args.folder)
    sizes = Counter(tuple(ir.shape[-2:]) for _, ir, _ in data)
    print(f"{len(data)} pairs, {len(sizes)} sizes; weights loaded in {t_load:.2f} s")
    results, ref = {}, None
    for name in args.settings.split(","):
        kw = dict(SETTINGS[name])
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(kw.pop("tf32", False))
        pad = kw.pop("pad", None)
        fuser = Fuser(model, "cuda", **kw)
        if pad:
            fuser.multiple = pad  # inputs padded to this multiple (reflect), output cropped back
        res = {}
        for phase in ("cold", "warm"):
            # peak memory per pass; the warm pass starts from an emptied cache, so its peak
            # reserved is what one pass needs without the cold pass's compiles and autotuning
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            rows = _pass(fuser, data)
            first = [r["ms"] for r in rows if r["occurrence"] == 0]
            again = [r["ms"] for r in rows if r["occurrence"] > 0]
            res[phase] = dict(total_s=sum(r["ms"] for r in rows) / 1e3,
                              first_of_size_ms=statistics.median(first),
                              repeat_ms=statistics.median(again) if again else None,
                              # the third image of a size: captured when graphs are on
                              third_of_size_ms=statistics.median([r["ms"] for r in rows if r["occurrence"] == 2] or [0.0]),
                              per_image=[{k: v for k, v in r.items() if k != "y"} for r in rows])
            ys = [r["y"] for r in rows]
            res[phase]["triton_variants"] = compiled_variants()
            res[phase]["peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
            res[phase]["peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
            free, total = torch.cuda.mem_get_info()  # whatever the allocator backend: the device's view
            res[phase]["device_used_mib"] = (total - free) / 2**20
            if fuser._graphed is not None:
                res[phase]["captures"], res[phase]["replays"] = fuser._graphed.captures, fuser._graphed.replays
        if ref is None and name == "fp32":
            ref = ys
        if ref is not None:
            d = [np.abs(a - b) for a, b in zip(ys, ref)]
            res["vs_fp32"] = dict(max_abs=int(max(x.max() for x in d)), mean_abs=float(np.mean([x.mean() for x in d])),
                                  frac_pixels_changed=float(np.mean([(x > 0).mean() for x in d])))
        results[name] = res
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        del fuser
        torch.cuda.empty_cache()
    print(f"{'setting':<16} {'pass':<5} {'total s':>8} {'1st of size ms':>15} {'repeat ms':>10} {'vs fp32 max/mean':>18}"
          f" {'alloc MiB':>9} {'reserved':>9} {'dev used':>9}")
    for name, res in results.items():
        for phase in ("cold", "warm"):
            r = res[phase]
            vs = res.get("vs_fp32")
            vs_s = f"{vs['max_abs']}/{vs['mean_abs']:.4f}" if vs else ""
            rep = f"{r['repeat_ms']:.1f}" if r["repeat_ms"] is not None else "-"
            print(f"{name:<16} {phase:<5} {r['total_s']:8.2f} {r['first_of_size_ms']:15.1f} {rep:>10} {vs_s:>18}"
                  f" {r['peak_allocated_mib']:9.0f} {r['peak_reserved_mib']:9.0f} {r['device_used_mib']:9.0f}")
    for name, res in results.items():
        v = res["warm"]["triton_variants"]
        print(f"{name}: compiled Triton variants in this process after it: {sum(v.values())} {v}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, python=platform.python_version(),
                    allocator=torch.cuda.get_allocator_backend(),
                    folder=str(args.folder), sizes={f"{h}x{w}": c for (h, w), c in sizes.items()}, load_s=t_load)
        (args.out / "bench_fuse.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
