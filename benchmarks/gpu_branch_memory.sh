#!/usr/bin/env bash
# Device run: the branch streams' cost in memory (the caching allocator keeps a cache per
# stream) against their speed, for limits on the branch size that gets side streams
# (DIFFMF_BRANCH_MAX_PIXELS) and with the streams off. bench_network_variants.py, CUDA-graph
# replays and eager calls, bf16 and fp32, reserved memory per call. Log in $OUT/branch_memory.log.
#   [SIZES="256x256 480x640 768x1024"] [LIMITS="none 80000 20000"] bash benchmarks/gpu_branch_memory.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
sizes=${SIZES:-"256x256 480x640 768x1024"}
limits=${LIMITS:-"none 80000 20000"}
vars=()
for l in $limits; do vars+=(--variant "DIFFMF_BRANCH_MAX_PIXELS=$l"); done
vars+=(--variant "DIFFMF_BRANCH_STREAMS=0")
{
  date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  for size in $sizes; do
    for mode in "" "--eager"; do
      timeout -k 5 ${TLIMIT:-200} env PYTHONPATH=src python3 benchmarks/bench_network_variants.py --size $size $mode \
        "${vars[@]}" --rounds ${ROUNDS:-2} --out "$OUT" 2>&1 | grep -v -i warn
    done
  done
} 2>&1 | tee -a "$OUT/branch_memory.log"
