#!/usr/bin/env bash
# Device run: the network's independent branches on CUDA streams (diffmf.ops.branches): GPU
# tests, then the fuse with the branch streams on (the default) against DIFFMF_BRANCH_STREAMS=0,
# replayed from CUDA graphs and eager, bitwise check, two sizes. Log in $OUT/branches.log.
# "fuse": bench_fuse.py on .data/test/TNO25 (carried) with the streams on and off; "scaling":
# bench_model.py's latency and scaling tables (eager / graph, peak memory), streams on and off.
#   bash benchmarks/gpu_branches.sh [tests] [graph] [eager] [fuse] [scaling]   (default: all)
set -uo pipefail
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
want=${*:-"tests graph eager fuse scaling"}
has() { [[ " $want " == *" $1 "* ]]; }
t() { timeout -k 5 "$@"; }
{
  date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  has tests && t 300 env PYTHONPATH=src TRITON_INTERPRET=0 python3 -m pytest -q -p no:cacheprovider --tb=short \
    tests/test_branches.py tests/test_graphs.py tests/test_graphed_step.py tests/test_fuse.py 2>&1 | tail -6
  for size in 480x640 768x1024; do
    has graph && t 200 env PYTHONPATH=src python3 benchmarks/bench_network_variants.py --size $size \
      --variant "DIFFMF_BRANCH_STREAMS=0" --rounds ${ROUNDS:-2} --out "$OUT" 2>&1 | grep -v -i warn
    has eager && t 200 env PYTHONPATH=src python3 benchmarks/bench_network_variants.py --size $size --eager \
      --variant "DIFFMF_BRANCH_STREAMS=0" --rounds ${ROUNDS:-2} --out "$OUT" 2>&1 | grep -v -i warn
  done
  if has scaling; then
    for v in 1 0; do
      echo "## DIFFMF_BRANCH_STREAMS=$v"
      t 280 env PYTHONPATH=src DIFFMF_BRANCH_STREAMS=$v python3 benchmarks/bench_model.py --skip-train \
        --out "$OUT/model_streams$v" 2>&1 | grep -v -i warn | tail -16
    done
  fi
  if has fuse; then
    for v in 1 0; do
      echo "## DIFFMF_BRANCH_STREAMS=$v"
      t 200 env PYTHONPATH=src DIFFMF_BRANCH_STREAMS=$v python3 benchmarks/bench_fuse.py --folder .data/test/TNO25 \
        --settings ${SETTINGS:-fp32,amp,amp+graphs} --out "$OUT/fuse_streams$v" 2>&1 | grep -v -i warn | tail -12
    done
  fi
} 2>&1 | tee -a "$OUT/branches.log"
