#!/usr/bin/env bash
# Device run (seventeenth session): the backward sweeps (_bwd_fwd, _bwd_rev) on the designed
# thread layout with their line strides hidden (OPAQUE), their per-segment values read and
# written from the state layout and a lane's states in 16-byte chunks of the float32 dB / dC
# partials, against the previous code: a copy of the last commit's src/ in
# experiments/base/src (carry experiments/base; `git archive <commit> src | tar -x -C
# experiments/base`). Steps (all by default):
#   check   compiled checks against the float64 oracle (gpu_scan_check.py): defaults, every
#           sweep designed, and the backward sweeps designed in bf16
#   scan    bench_scan.py --sweep, 3 interleaved rounds: bf16 640x480 and 16 x 128x128 (a
#           training batch) with the backward sweeps designed or not; float32 640x480, base tree
#           against this one (whose float32 default runs them designed)
#   train   the real trainer (CUDA-graphed steps, bf16 autocast, carry .data/train): the base
#           tree's defaults / this tree with DIFFMF_TRITON_DESIGNED=$TRAIN_DESIGNED (default
#           bwd_fwd,bwd_rev), ROUNDS interleaved rounds
# Log in $OUT/backward_layout.log.
#   bash benchmarks/gpu_backward_layout.sh [check scan train]
set -uo pipefail
export PYTHONUNBUFFERED=1
steps=${*:-check scan train}
has() { [[ " $steps " == *" $1 "* ]]; }
t() { local lim=$1; shift; timeout -k 5 "$lim" "$@" || echo "STEP FAILED OR TIMED OUT ($lim s): $*"; }
BASE=${BASE:-experiments/base/src}
E=DIFFMF_TRITON_DESIGNED
ALL=fwd_local,fwd_out,bwd_local,bwd_fwd,bwd_rev
BWD=${BWD:-bwd_fwd,bwd_rev}
mkdir -p "$OUT"
{
  date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  [ -d "$BASE/diffmf" ] || echo "NO BASE TREE at $BASE: the A/B steps compare nothing"
  if has check; then
    t 240 env PYTHONPATH=src python3 benchmarks/gpu_scan_check.py --out "$OUT" 2>&1 | grep -v -i warn | tail -3
    t 240 env PYTHONPATH=src $E=$ALL python3 benchmarks/gpu_scan_check.py 2>&1 | grep -v -i warn | tail -3 | sed "s|^|[all designed] |"
    t 240 env PYTHONPATH=src $E=$BWD python3 benchmarks/gpu_scan_check.py 2>&1 | grep -v -i warn | tail -3 | sed "s|^|[$BWD designed] |"
  fi
  if has scan; then
    t 200 env PYTHONPATH=src python3 benchmarks/bench_scan.py --shapes 480x640 --sweep --rounds 3 \
      --variant "$E=$BWD" --variant "$E=bwd_local,$BWD" 2>&1 | grep -E "sweep" | sed "s|^|[bf16 480x640] |"
    t 200 env PYTHONPATH=src python3 benchmarks/bench_scan.py --shapes 128x128 --batch 16 --sweep --rounds 3 \
      --variant "$E=$BWD" 2>&1 | grep -E "sweep" | sed "s|^|[bf16 16x128x128] |"
    for round in 1 2; do
      for tree in "$BASE" src; do
        t 100 env PYTHONPATH=$tree python3 benchmarks/bench_scan.py --shapes 480x640 --dtype float32 --sweep --rounds 1 \
          --variant "$E=none" 2>&1 | grep -E "sweep" | sed "s|^|[fp32 480x640 $tree round $round] |"
      done
    done
  fi
  if has train && [ -d .data/train ]; then
    for round in $(seq 1 "${ROUNDS:-2}"); do
      for tree in "$BASE" src; do
        designed=""; [ "$tree" = src ] && designed="$E=${TRAIN_DESIGNED:-$BWD}"  # the base tree runs its defaults
        t 150 env PYTHONPATH=$tree $designed python3 benchmarks/gpu_train.py --out "/tmp/train_${round}_${tree//\//_}" \
          --phases single --steps 400 --warmup 20 --batch 16 --max-minutes "${MINUTES:-0.6}" --timeout 120 --workers 6 \
          --set train.cuda_graph=on 2>&1 | grep -E "gpu_train: single" | sed "s|^|[train round $round $tree] |"
      done
    done
  fi
} 2>&1 | tee -a "$OUT/backward_layout.log"
