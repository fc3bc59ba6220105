#!/usr/bin/env bash
# Device run: which image sizes `diffmf fuse` should replay from CUDA graphs now that the
# network's branches run concurrently (eager calls became host-bound up to larger sizes), and
# the caching allocator's footprint (peak reserved against peak allocated) with the branch
# streams on and off. bench_fuse.py on folders carried in the ignored .data/ (MSRS36:
# 36 x 640x480; LLVIP32: 32 x 1280x1024; TNO25: 25 pairs, 11 sizes), once per environment
# variant. Log in $OUT/fuse_graphs.log, JSON per folder and variant.
#   [SETTINGS=a,b] [VARIANTS="ENV=V;ENV2=V ..."] bash benchmarks/gpu_fuse_graphs.sh [FOLDER...]
set -uo pipefail
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
folders=${*:-".data/test/MSRS36 .data/train/LLVIP32 .data/test/TNO25"}
settings=${SETTINGS:-fp32,fp32+graphs,fp32+graphs-all,amp,amp+graphs,amp+graphs-all}
variants=${VARIANTS:-"DIFFMF_BRANCH_STREAMS=1"}
{
  date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  for f in $folders; do
    for v in $variants; do
      echo "## $f  $v"
      tag=$(echo "$v" | tr -c 'A-Za-z0-9\n' '_')
      timeout -k 5 ${TLIMIT:-240} env ${v//;/ } PYTHONPATH=src python3 benchmarks/bench_fuse.py --folder "$f" \
        --settings "$settings" --out "$OUT/$(basename "$f")/$tag" 2>&1 | grep -v -i warn | grep -v "compiled Triton" | tail -16
    done
  done
} 2>&1 | tee -a "$OUT/fuse_graphs.log"
