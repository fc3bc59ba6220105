#!/usr/bin/env bash
# Device runs for SS2D's fused inference I/O (twelfth session: x_proj written in the scan's
# frame layouts, the cross-merge summed inside the output norm). Steps (all by default, or
# those named):
#   check    compiled checks (gpu_fused_io.py)
#   bench    bench_fused_io.py (x_proj and the output norm alone, old path and fused forms)
#   xproj    bench_xproj.py at 640x480 and 1024x768 (x_proj schedules, CUDA-graph replays;
#            thirteenth session)
#   tests    the GPU tests (graphs, graphed training step, depthwise conv, layer norm)
#   profile  gpu_profile.py model --no-train (bf16 and fp32 GPU time per 640x480 fuse) for
#            ALT_SRC (the previous commit's src/, carried) and this tree, and this tree with
#            DIFFMF_TRITON_PHASES=2 (unless NO_PHASES2=1)
#   model    bench_model.py fuse latency (640x480, 1024x768, graph and eager), two interleaved
#            rounds of ALT_SRC and this tree
#   fuse     diffmf fuse of TNO25 (fp32, the CLI default) with both trees, twice each (the
#            second with a warm Triton cache); per-image differences
# Log in $OUT/fused_io.log.
#   ALT_SRC=experiments/alt4/src bash benchmarks/gpu_fused_io.sh [check tests profile model fuse]
set -uo pipefail
export PYTHONUNBUFFERED=1
ALT_SRC=${ALT_SRC:-experiments/alt4/src}
steps=${*:-check bench xproj tests profile model fuse}
has() { [[ " $steps " == *" $1 "* ]]; }
tag() { [ "$1" = src ] && echo new || echo old; }
t() { local lim=$1; shift; timeout -k 5 "$lim" "$@" || echo "STEP FAILED OR TIMED OUT ($lim s): $*"; }
R=/tmp/fio; mkdir -p "$R" "$OUT"
{
  date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  has check && t 240 env PYTHONPATH=src python3 benchmarks/gpu_fused_io.py --out "$OUT"
  has bench && t 200 env PYTHONPATH=src python3 benchmarks/bench_fused_io.py --out "$OUT"
  if has xproj; then
    t 150 env PYTHONPATH=src python3 benchmarks/bench_xproj.py --out "$OUT" 2>&1 | grep -v -i warn
    t 150 env PYTHONPATH=src python3 benchmarks/bench_xproj.py --shape 768x1024 --out "$OUT/768x1024" 2>&1 | grep -v -i warn
  fi
  has tests && t 240 env PYTHONPATH=src TRITON_INTERPRET=0 python3 -m pytest -q -p no:cacheprovider --tb=short \
    tests/test_graphs.py tests/test_graphed_step.py tests/test_dwconv.py tests/test_layernorm.py 2>&1 | tail -8
  if has profile; then
    extra=phases2; [ "${NO_PHASES2:-0}" = 1 ] && extra=
    for v in "$ALT_SRC" src $extra; do
      src=$v; env=()
      [ "$v" = phases2 ] && { src=src; env=(DIFFMF_TRITON_PHASES=2); }
      t 150 env PYTHONPATH=$src "${env[@]}" python3 benchmarks/gpu_profile.py model --no-train --top 14 --out "$R/prof_$v" 2>&1 \
        | grep -E "^# fuse|Self CUDA time total|_kernel|bmm|aten::mm|addmm" | cut -c1-72,150-240 | sed "s|^|[$v] |"
    done
  fi
  if has model; then
    for round in 1 2; do
      for src in "$ALT_SRC" src; do
        t 150 env PYTHONPATH=$src python3 benchmarks/bench_model.py --latency 480x640,768x1024 --scaling 256x256 --skip-train \
          --out "$R/model_${round}_$(tag $src)" 2>&1 | grep -E "x480|x768|640|1024" | sed "s|^|[round $round $src] |"
      done
    done
  fi
  if has fuse && [ -d .data/test/TNO25 ]; then
    for run in first second; do
      for src in "$ALT_SRC" src; do
        s=$(date +%s.%N)
        t 150 env PYTHONPATH=$src python3 -m diffmf fuse --ir .data/test/TNO25/ir --vi .data/test/TNO25/vi -o "/tmp/fused_$(tag $src)" --device cuda 2>&1 | tail -1
        e=$(date +%s.%N); echo "[$run $src] TNO25 fuse (fp32), process start to exit: $(awk "BEGIN{print $e - $s}") s"
      done
    done
    python3 benchmarks/compare_fused.py /tmp/fused_old /tmp/fused_new
  fi
} 2>&1 | tee -a "$OUT/fused_io.log"
