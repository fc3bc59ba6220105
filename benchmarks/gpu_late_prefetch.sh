#!/usr/bin/env bash
# Device run (fifteenth session): the "heavy" forward sweeps' load schedule. The output pass of
# the rank-R call (the network's) and the float32-B sweeps cannot hold an early prefetch in 128
# registers; DIFFMF_TRITON_HEAVY_PREFETCH picks their schedule: 0 = none (the fourteenth
# session's default), 1 = early, 2 = late (the output pass issues step t+1's loads once step t
# is done with those registers; the local passes read only the step input ahead). Steps (all
# by default, or those named):
#   check    compiled checks against the float64 oracle (gpu_scan_check.py, default = 2)
#   scan     bench_scan.py float32 640x480 sweep over the three settings (3 rounds) and the
#            bf16 rank-2 call under each setting
#   network  bench_network_variants.py at 640x480 and 1024x768 (CUDA graphs, bf16 + fp32,
#            bitwise check against the default)
#   profile  gpu_profile.py model --no-train per setting (GPU time per kernel of one fuse)
#   local    the network with the local passes reading only the step input ahead too
#            (DIFFMF_TRITON_LAYOUT_FWD=2,1,4,2,16,128) against the defaults
#   train    the real trainer (graphed steps, 1 GPU), HEAVY_PREFETCH 0 / 2 interleaved, two
#            rounds (carry .data/train)
# Log in $OUT/late_prefetch.log.
#   bash benchmarks/gpu_late_prefetch.sh [check scan network profile]
set -uo pipefail
export PYTHONUNBUFFERED=1
steps=${*:-check scan network profile}
has() { [[ " $steps " == *" $1 "* ]]; }
t() { local lim=$1; shift; timeout -k 5 "$lim" "$@" || echo "STEP FAILED OR TIMED OUT ($lim s): $*"; }
E=DIFFMF_TRITON_HEAVY_PREFETCH
mkdir -p "$OUT"
{
  date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  has check && t 240 env PYTHONPATH=src python3 benchmarks/gpu_scan_check.py --out "$OUT" 2>&1 | grep -v -i warn | tail -30
  if has scan; then
    t 150 env PYTHONPATH=src python3 benchmarks/bench_scan.py --dtype float32 --shapes 480x640 --sweep --rounds 3 \
      --variant "$E=0" --variant "$E=1" --out "$OUT/scan_fp32" 2>&1 | grep -E "sweep|480x640|graph" | sed "s|^|[fp32] |"
    for v in 0 2; do
      t 100 env PYTHONPATH=src $E=$v python3 benchmarks/bench_scan.py --shapes 480x640 --lowrank 2 2>&1 \
        | grep -E "rank-2" | sed "s|^|[bf16 $E=$v] |"
    done
  fi
  if has network; then
    for size in 480x640 768x1024; do
      t 200 env PYTHONPATH=src python3 benchmarks/bench_network_variants.py --size $size --rounds 3 \
        --variant "$E=0" --variant "$E=1" --out "$OUT/net_$size" 2>&1 | grep -v -i warn | sed "s|^|[$size] |"
    done
  fi
  if has profile; then
    for v in 0 2; do
      t 150 env PYTHONPATH=src $E=$v python3 benchmarks/gpu_profile.py model --no-train --top 12 2>&1 \
        | grep -E "^# fuse|Self CUDA time total|_kernel" | cut -c1-60,150-200 | sed "s|^|[$E=$v] |"
    done
  fi
  if has local; then
    t 200 env PYTHONPATH=src python3 benchmarks/bench_network_variants.py --size 480x640 --rounds 3 \
      --variant "DIFFMF_TRITON_LAYOUT_FWD=2,1,4,2,16,128" --out "$OUT/net_local" 2>&1 | grep -v -i warn
  fi
  if has train; then
    for round in 1 2; do
      for v in 0 2; do
        echo "=== round $round, $E=$v"
        t 150 env PYTHONPATH=src $E=$v python3 benchmarks/gpu_train.py --out "/tmp/train_${round}_$v" --phases single \
          --steps 400 --warmup 20 --batch 16 --max-minutes 0.7 --timeout 140 --workers 6 --set train.cuda_graph=on 2>&1 \
          | grep -E "pairs/s|ERROR|Error" | tail -3
      done
    done
  fi
} 2>&1 | tee -a "$OUT/late_prefetch.log"
