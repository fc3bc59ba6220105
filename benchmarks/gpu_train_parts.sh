#!/usr/bin/env bash
# Device run for the training step's non-scan parts (fourteenth session; the alternatives tried
# there were not adopted, see docs/benchmarks-log.md run 13). Steps (all by default, or those named):
#   parts    bench_train_parts.py without and with cudnn.benchmark (each part against its
#            alternatives, eager and CUDA graph)
#   tests    the GPU tests (graphed step == eager bit for bit, resume; conv; norms; losses)
#   profile  gpu_profile.py model (training step GPU time, batch 16 x 128 x 128) for ALT_SRC
#            (another src/, carried) and this tree
#   train    the real trainer, CUDA-graphed steps, ALT_SRC and this tree interleaved, ROUNDS
#            rounds (carry .data/train)
# Log in $OUT/train_parts.log.
#   ALT_SRC=experiments/head/src bash benchmarks/gpu_train_parts.sh [parts tests profile train]
set -uo pipefail
export PYTHONUNBUFFERED=1
ALT_SRC=${ALT_SRC:-experiments/head/src}
steps=${*:-parts tests profile train}
has() { [[ " $steps " == *" $1 "* ]]; }
tag() { [ "$1" = src ] && echo new || echo old; }
t() { local lim=$1; shift; timeout -k 5 "$lim" "$@" || echo "STEP FAILED OR TIMED OUT ($lim s): $*"; }
mkdir -p "$OUT"
{
  date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  if has parts; then
    t 200 env PYTHONPATH=src python3 benchmarks/bench_train_parts.py --out "$OUT" 2>&1 | grep -v -i warn
    t 200 env PYTHONPATH=src python3 benchmarks/bench_train_parts.py --cudnn-benchmark --out "$OUT/cudnn_benchmark" 2>&1 | grep -v -i warn
  fi
  has tests && t 300 env PYTHONPATH=src TRITON_INTERPRET=0 python3 -m pytest -q -p no:cacheprovider --tb=short \
    tests/test_graphs.py tests/test_graphed_step.py tests/test_dwconv.py tests/test_layernorm.py tests/test_losses.py 2>&1 | tail -8
  if has profile; then
    for src in "$ALT_SRC" src; do
      t 200 env PYTHONPATH=$src python3 benchmarks/gpu_profile.py model --top 25 --out "/tmp/prof_$(tag $src)" 2>&1 \
        | sed -n '/# training step/,$p' | grep -E "# training|Self CUDA time total|wall time|conv_depthwise|dgrad|_bwd_rev|Optimizer" \
        | cut -c1-72,150-240 | sed "s|^|[$src] |"
    done
  fi
  if has train && [ -d .data/train ]; then
    for round in $(seq 1 "${ROUNDS:-2}"); do
      for src in "$ALT_SRC" src; do
        t 150 env PYTHONPATH=$src python3 benchmarks/gpu_train.py --out "/tmp/train_${round}_$(tag $src)" --phases single \
          --steps 400 --warmup 20 --batch 16 --max-minutes "${MINUTES:-0.6}" --timeout 120 --nproc 2 --workers 6 \
          --set train.cuda_graph=on 2>&1 | grep -E "gpu_train: single" | sed "s|^|[round $round $src] |"
      done
    done
  fi
} 2>&1 | tee -a "$OUT/train_parts.log"
