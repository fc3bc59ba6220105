#!/usr/bin/env bash
# Device run: the whole network's fuse under kernel-schedule variants (chain pass, merged
# output norm), CUDA-graph replays, bitwise check against the defaults. Log in $OUT/variants.log.
#   bash benchmarks/gpu_network_variants.sh [extra --variant args are taken from VARIANTS]
set -uo pipefail
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
CHAIN=${CHAIN:-"1,4,1024,4 1,4,2048,8 1,4,256,4 1,2,512,4 1,8,512,4 2,4,512,4 1,4,512,2 1,4,1024,8"}
MLN=${MLN:-"8,16,4 4,16,4 16,16,8 8,32,8 4,32,4 16,8,4 8,8,4"}
args=()
for c in $CHAIN; do args+=(--variant "DIFFMF_TRITON_CHAIN=$c"); done
for m in $MLN; do args+=(--variant "DIFFMF_MERGE_LN_TILES=$m"); done
{
  date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  timeout -k 5 ${LIMIT:-500} env PYTHONPATH=src python3 benchmarks/bench_network_variants.py "${args[@]}" \
    --rounds ${ROUNDS:-2} --out "$OUT" 2>&1 | grep -v -i warn
} 2>&1 | tee -a "$OUT/variants.log"
