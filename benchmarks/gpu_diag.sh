#!/usr/bin/env bash
# Diagnostics in one device call: compiled scan check, scan timings with the per-kernel profile and the variant sweep, the per-kernel profile of one
# 640x480 fuse (bf16 and fp32), and where `diffmf fuse` spends its time image by image on
# TNO25 (benchmarks/bench_fuse.py). Carry .data/test/TNO25. Logs and JSON under $OUT.
#   bash benchmarks/gpu_diag.sh
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
R=$OUT/diag; mkdir -p "$R"
t() { local lim=$1; shift; timeout -k 5 "$lim" "$@" || echo "STEP FAILED OR TIMED OUT ($lim s): $*"; }
{
  date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  t 200 python3 benchmarks/gpu_scan_check.py --out "$R/check"
  t 200 python3 benchmarks/bench_scan.py --shapes 480x640 --sweep --profile --reps 10 --out "$R/sweep"
  t 120 python3 benchmarks/gpu_profile.py model --no-train --top 30 --out "$R"
  [ -d .data/test/TNO25 ] && t 200 python3 benchmarks/bench_fuse.py --folder .data/test/TNO25 --out "$R"
} 2>&1 | tee "$OUT/diag.log"
