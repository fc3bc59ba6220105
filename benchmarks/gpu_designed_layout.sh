#!/usr/bin/env bash
# Device run (sixteenth session): the sweeps on the designed thread layout (lanes = segments x
# channel groups x state groups get the threads; a lane's states as 128-bit chunks in its own
# registers; the forward-type sweeps' strides hidden from Triton), chosen per sweep and B / C
# dtype (DIFFMF_TRITON_DESIGNED), against the previous code: a copy of the last commit's src/ in
# experiments/base/src (carry experiments/base; make it with
# `git archive <commit> src | tar -x -C experiments/base`). Steps (all by default):
#   check    compiled checks against the float64 oracle (gpu_scan_check.py), defaults and every
#            sweep designed
#   bitwise  the scan's outputs and gradients (variant_bitwise.py cases) and the shipped network's
#            fuse: base tree against this one's defaults, and in this tree the defaults against
#            DIFFMF_TRITON_DESIGNED=none (which must equal the base) and =all
#   network  bench_network_variants.py, base / new / base / new at 640x480 (+ the variants
#            none / all in this tree), 1024x768 once each
#   scan     bench_scan.py: rank-2 bf16 and per-channel fp32 at 640x480, base / new / base / new
#   profile  gpu_profile.py model --no-train (GPU time per kernel of one fuse) in this tree
#   fuse     `diffmf fuse` of TNO25 (float32, the shipped weights) with both trees, the fused
#            images compared (compare_fused.py) and scored (`diffmf eval`); carry .data/test/TNO25
# Log in $OUT/designed_layout.log.
#   bash benchmarks/gpu_designed_layout.sh [check bitwise network scan profile]
set -uo pipefail
export PYTHONUNBUFFERED=1
steps=${*:-check bitwise network scan profile}
has() { [[ " $steps " == *" $1 "* ]]; }
t() { local lim=$1; shift; timeout -k 5 "$lim" "$@" || echo "STEP FAILED OR TIMED OUT ($lim s): $*"; }
BASE=${BASE:-experiments/base/src}
E=DIFFMF_TRITON_DESIGNED
ALL=fwd_local,fwd_out,bwd_local,bwd_fwd,bwd_rev
mkdir -p "$OUT"
{
  date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  [ -d "$BASE/diffmf" ] || echo "NO BASE TREE at $BASE: the A/B steps compare nothing"
  if has check; then
    t 240 env PYTHONPATH=src python3 benchmarks/gpu_scan_check.py --out "$OUT" 2>&1 | grep -v -i warn | tail -4
    t 240 env PYTHONPATH=src $E=$ALL python3 benchmarks/gpu_scan_check.py 2>&1 | grep -v -i warn | tail -20 | sed "s|^|[all designed] |"
  fi
  if has bitwise; then
    t 200 env PYTHONPATH=$BASE python3 benchmarks/variant_bitwise.py --network --save /tmp/base_out.pt 2>&1 | grep -v -i warn | sed "s|^|[base] |"
    t 300 env PYTHONPATH=src python3 benchmarks/variant_bitwise.py --network --against /tmp/base_out.pt \
      --variant "$E=none" --variant "$E=$ALL" --out "$OUT/bitwise" 2>&1 | grep -v -i warn | sed "s|^|[new] |"
    t 200 env PYTHONPATH=src $E=none python3 benchmarks/variant_bitwise.py --network --against /tmp/base_out.pt \
      2>&1 | grep -v -i warn | sed "s|^|[new, $E=none] |"
  fi
  if has network; then
    for round in 1 2; do
      for tree in "$BASE" src; do
        t 150 env PYTHONPATH=$tree python3 benchmarks/bench_network_variants.py --size 480x640 --rounds 1 \
          --out "$OUT/net_${round}_${tree//\//_}" 2>&1 | grep -E "^(bf16|fp32) " | sed "s|^|[480x640 $tree round $round] |"
      done
    done
    t 150 env PYTHONPATH=src python3 benchmarks/bench_network_variants.py --size 480x640 --rounds 2 --dtypes fp32 \
      --variant "$E=none" --variant "$E=$ALL" 2>&1 | grep -E "^(bf16|fp32) " | sed "s|^|[480x640 src variants] |"
    for tree in "$BASE" src; do
      t 150 env PYTHONPATH=$tree python3 benchmarks/bench_network_variants.py --size 768x1024 --rounds 1 \
        2>&1 | grep -E "^(bf16|fp32) " | sed "s|^|[768x1024 $tree] |"
    done
  fi
  if has scan; then
    for tree in "$BASE" src "$BASE" src; do
      t 100 env PYTHONPATH=$tree python3 benchmarks/bench_scan.py --shapes 480x640 --dtype float32 2>&1 \
        | grep -E "float32|graph" | sed "s|^|[fp32 $tree] |"
    done
    t 100 env PYTHONPATH=src python3 benchmarks/bench_scan.py --shapes 480x640 --lowrank 2 2>&1 \
      | grep -E "bfloat16|graph|rank-2" | sed "s|^|[bf16 rank-2 src] |"
  fi
  if has profile; then
    t 150 env PYTHONPATH=src python3 benchmarks/gpu_profile.py model --no-train --top 14 2>&1 \
      | grep -E "^# fuse|Self CUDA time total|_kernel" | cut -c1-60,150-200
  fi
  if has fuse; then
    for tree in "$BASE" src; do
      t 200 env PYTHONPATH=$tree python3 -m diffmf fuse --ir .data/test/TNO25/ir --vi .data/test/TNO25/vi \
        -o "/tmp/fused_${tree//\//_}" --device cuda 2>&1 | grep -v -i warn | tail -2 | sed "s|^|[fuse $tree] |"
    done
    python3 benchmarks/compare_fused.py "/tmp/fused_${BASE//\//_}" /tmp/fused_src | tail -3
    for tree in "$BASE" src; do
      t 200 env PYTHONPATH=src python3 -m diffmf eval --ir .data/test/TNO25/ir --vi .data/test/TNO25/vi \
        --fused "/tmp/fused_${tree//\//_}" --profile cdd --metrics all --jobs 8 --no-progress 2>&1 | tail -4 | sed "s|^|[eval $tree] |"
    done
  fi
} 2>&1 | tee -a "$OUT/designed_layout.log"
