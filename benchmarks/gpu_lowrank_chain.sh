#!/usr/bin/env bash
# Device runs for the one-launch chain pass and dt_proj inside the sweeps (eleventh
# session). Steps (all by default, or those named):
#   check  compiled checks (gpu_scan_check.py; `check-lowrank`: only its rank-R cases)
#   tests  the GPU tests (graphs, graphed training step, depthwise conv, layer norm)
#   scan   bench_scan.py --lowrank 2 --profile at 640x480 and 1024x768
#   ab     bench_scan.py at 640x480, two interleaved rounds of ALT_SRC (the previous commit's
#          src/, carried) and this tree
#   ab-lowrank  bench_scan.py --lowrank 2 at 640x480, two interleaved rounds of ALT_SRC and this tree
#   chain  chain-pass layouts (DIFFMF_TRITON_CHAIN) swept at 640x480, two rounds
#   model  bench_model.py (fuse latency, 256x256, training step) for ALT_SRC and this tree
#   fuse   diffmf fuse of TNO25 (fp32, the CLI default) with both trees; per-image differences
# Results in $OUT/lowrank_chain.log and $OUT/lowrank_chain.tar.gz.
#   ALT_SRC=experiments/alt/src bash benchmarks/gpu_lowrank_chain.sh [check|check-lowrank|tests|scan|ab|model|fuse ...]
set -uo pipefail
export PYTHONUNBUFFERED=1
ALT_SRC=${ALT_SRC:-experiments/alt/src}
steps=${*:-check tests scan ab model fuse}
has() { [[ " $steps " == *" $1 "* ]]; }
tag() { [ "$1" = src ] && echo new || echo old; }
t() { local lim=$1; shift; timeout -k 5 "$lim" "$@" || echo "STEP FAILED OR TIMED OUT ($lim s): $*"; }
R=/tmp/lrc; mkdir -p "$R" "$OUT"
{
  date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
  has check && t 300 env PYTHONPATH=src python3 benchmarks/gpu_scan_check.py --out "$R"
  has check-lowrank && t 200 env PYTHONPATH=src python3 benchmarks/gpu_scan_check.py --lowrank-only --out "$R"
  has tests && t 240 env PYTHONPATH=src TRITON_INTERPRET=0 python3 -m pytest -q -p no:cacheprovider --tb=short \
    tests/test_graphs.py tests/test_graphed_step.py tests/test_dwconv.py tests/test_layernorm.py 2>&1 | tail -15
  has scan && t 150 env PYTHONPATH=src python3 benchmarks/bench_scan.py --shapes 480x640,768x1024 --lowrank 2 --profile --out "$R/new"
  if has ab; then
    for round in 1 2; do
      for src in "$ALT_SRC" src; do
        t 120 env PYTHONPATH=$src python3 benchmarks/bench_scan.py --shapes 480x640 --reps 20 --out "$R/scan_${round}_$(tag $src)" 2>&1 \
          | grep -E "^ *480x640|CUDA graph" | sed "s|^|[round $round $src] |"
      done
    done
  fi
  if has ab-lowrank; then
    for round in 1 2; do
      for src in "$ALT_SRC" src; do
        t 150 env PYTHONPATH=$src python3 benchmarks/bench_scan.py --shapes 480x640 --reps 20 --lowrank 2 --out "$R/lr_${round}_$(tag $src)" 2>&1 \
          | grep -E "^ *480x640|CUDA graph|rank-2" | sed "s|^|[round $round $src] |"
      done
    done
  fi
  if has chain; then
    v=(); for c in 1,2,512,4 1,8,256,4 1,16,128,4 1,4,1024,4 1,4,256,2 2,4,512,4; do v+=(--variant "DIFFMF_TRITON_CHAIN=$c"); done
    t 240 env PYTHONPATH=src python3 benchmarks/bench_scan.py --shapes 480x640 --sweep --rounds 2 --reps 10 "${v[@]}" --out "$R/chain" 2>&1 | grep -E "sweep|480x640"
  fi
  if has model; then
    for src in "$ALT_SRC" src; do
      t 220 env PYTHONPATH=$src python3 benchmarks/bench_model.py --scaling 256x256 --train-steps 15 --out "$R/model_$(tag $src)" 2>&1 \
        | grep -vE "^\{" | sed "s|^|[$src] |"
    done
  fi
  if has fuse && [ -d .data/test/TNO25 ]; then
    for src in "$ALT_SRC" src; do
      s=$(date +%s.%N)
      t 150 env PYTHONPATH=$src python3 -m diffmf fuse --ir .data/test/TNO25/ir --vi .data/test/TNO25/vi -o "/tmp/fused_$(tag $src)" --device cuda 2>&1 | tail -1
      e=$(date +%s.%N); echo "[$src] TNO25 fuse (first use of these kernels), process start to exit: $(awk "BEGIN{print $e - $s}") s"
    done
    python3 benchmarks/compare_fused.py /tmp/fused_old /tmp/fused_new
  fi
} 2>&1 | tee "$OUT/lowrank_chain.log"
tar -czf "$OUT/lowrank_chain.tar.gz" -C /tmp lrc
