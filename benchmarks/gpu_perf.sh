#!/usr/bin/env bash
# Kernel and whole-network performance on the device machine, in one call:
# compiled correctness check of the Triton scan, the CUDA-graph tests, the scan benchmark (+ per-kernel profile and
# a layout/segment sweep at 640x480), the whole-network benchmark, and `diffmf fuse` on TNO25
# with an empty Triton cache (first use) and again warm. Everything goes into
# $OUT/perf.tar.gz (JSON + logs) and $OUT/perf.log (written as it goes; every step has its own
# time limit, so one slow step cannot lose the others). Carry .data/test/TNO25 for the fuse timing.
#   bash benchmarks/gpu_perf.sh [--no-check] [--no-sweep] [--no-model] [--no-fuse] [--no-ln]
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
R=/tmp/perf; mkdir -p "$R" "$OUT"
check=1; sweep=1; model=1; fuse=1; ln=1
for a in "$@"; do case $a in --no-check) check=0;; --no-sweep) sweep=0;; --no-model) model=0;; --no-fuse) fuse=0;; --no-ln) ln=0;; esac; done
t() { local lim=$1; shift; timeout -k 5 "$lim" "$@" || echo "STEP FAILED OR TIMED OUT ($lim s): $*"; }
{
  date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  [ $check = 1 ] && t 300 python3 benchmarks/gpu_scan_check.py --out "$R"
  t 150 env TRITON_INTERPRET=0 python3 -m pytest -q -p no:cacheprovider tests/test_graphs.py tests/test_dwconv.py 2>&1 | tail -3
  t 120 python3 benchmarks/bench_scan.py --profile --lowrank 2 --out "$R"
  [ $sweep = 1 ] && t 150 python3 benchmarks/bench_scan.py --shapes 480x640 --sweep --reps 10 --out "$R/sweep"
  [ $ln = 1 ] && t 60 python3 benchmarks/bench_layernorm.py --shapes 1x480x640,16x128x128 --channels 64 --reps 10 --out "$R"
  [ $model = 1 ] && t 150 python3 benchmarks/bench_model.py --out "$R"
  if [ $fuse = 1 ] && [ -d .data/test/TNO25 ]; then
    python3 -c "import torch; torch.zeros(1).cuda()"
    for run in cold warm; do
      [ $run = cold ] && export TRITON_CACHE_DIR=/tmp/triton_fresh_cache
      s=$(date +%s.%N)
      timeout 120 python3 -m diffmf fuse --ir .data/test/TNO25/ir --vi .data/test/TNO25/vi -o "/tmp/fused_$run" --device cuda 2>&1 | tail -2
      e=$(date +%s.%N)
      echo "TNO25 diffmf fuse ($run Triton cache), process start to exit: $(awk "BEGIN{print $e - $s}") s"
    done
    unset TRITON_CACHE_DIR
  fi
} 2>&1 | tee "$OUT/perf.log"
cp "$OUT/perf.log" "$R/perf.log"
tar -czf "$OUT/perf.tar.gz" -C /tmp perf
