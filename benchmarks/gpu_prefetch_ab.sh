#!/usr/bin/env bash
# A/B of the forward sweeps' load schedule (eleventh session): this tree against ALT_SRC (the
# previous commit's src/, carried). Step "scan": bench_scan.py (bf16 640x480 + 1024x768, fp32
# 640x480), two interleaved rounds, and gpu_profile.py model (bf16 and fp32 fuse GPU time);
# step "model": bench_model.py (fuse latency, training step) and `diffmf fuse` of TNO25 in
# fp32, twice per tree (the second with a warm Triton cache). Log in $OUT/prefetch_ab.log.
#   ALT_SRC=experiments/alt3/src bash benchmarks/gpu_prefetch_ab.sh scan|model
set -uo pipefail
export PYTHONUNBUFFERED=1
ALT_SRC=${ALT_SRC:-experiments/alt3/src}
t() { local lim=$1; shift; timeout -k 5 "$lim" "$@" || echo "STEP FAILED OR TIMED OUT ($lim s): $*"; }
mkdir -p "$OUT"
{
  date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  if [ "${1:-scan}" = scan ]; then
    for round in 1 2; do
      for src in "$ALT_SRC" src; do
        t 100 env PYTHONPATH=$src python3 benchmarks/bench_scan.py --shapes 480x640,768x1024 --reps 20 2>&1 \
          | grep -E "^ *(480x640|768x1024)|CUDA graph" | sed "s|^|[$round $src bf16] |"
        t 80 env PYTHONPATH=$src python3 benchmarks/bench_scan.py --dtype float32 --shapes 480x640 --reps 20 2>&1 \
          | grep -E "^ *480x640|CUDA graph" | sed "s|^|[$round $src fp32] |"
      done
    done
    for src in "$ALT_SRC" src; do
      t 120 env PYTHONPATH=$src python3 benchmarks/gpu_profile.py model --no-train --top 8 2>&1 \
        | grep -E "^# fuse|_fwd_out|_fwd_local|Self CUDA time total" | cut -c1-60,150-200 | sed "s|^|[$src] |"
    done
  else
    for src in "$ALT_SRC" src; do
      t 200 env PYTHONPATH=$src python3 benchmarks/bench_model.py --scaling 256x256 --train-steps 15 2>&1 \
        | grep -E "x480|x768|train" | sed "s|^|[$src] |"
    done
    if [ -d .data/test/TNO25 ]; then
      for run in first second; do
        for src in "$ALT_SRC" src; do
          s=$(date +%s.%N)
          t 120 env PYTHONPATH=$src python3 -m diffmf fuse --ir .data/test/TNO25/ir --vi .data/test/TNO25/vi -o "/tmp/fused_${run}_$(basename $(dirname $(realpath $src)))" --device cuda 2>&1 | tail -1 | sed "s|^|[$run $src] |"
          e=$(date +%s.%N); echo "[$run $src] TNO25 fuse (fp32), process start to exit: $(awk "BEGIN{print $e - $s}") s"
        done
      done
    fi
  fi
} 2>&1 | tee -a "$OUT/prefetch_ab.log"
