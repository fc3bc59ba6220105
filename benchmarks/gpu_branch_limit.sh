#!/usr/bin/env bash
# Device run: the default limit on side-stream branches (diffmf.ops.branches.branch_max_pixels,
# half the GPU's memory over the per-pixel footprint): GPU tests, then 2048x2048 (above the
# limit on an 80 GB H100) with the default against no limit and streams off, then `diffmf
# fuse`'s network on MSRS36 (640x480) and LLVIP32 (1280x1024, both under it) with the default.
# Log in $OUT/branch_limit.log.
set -uo pipefail
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  PYTHONPATH=src python3 -c "import torch; from diffmf.ops.branches import branch_max_pixels as f; print('default limit', f(torch.device('cuda', 0)), 'pixels')"
  timeout -k 5 240 env PYTHONPATH=src TRITON_INTERPRET=0 python3 -m pytest -q -p no:cacheprovider --tb=short \
    tests/test_branches.py tests/test_graphs.py tests/test_fuse.py 2>&1 | tail -4
  for mode in "" "--eager"; do
    timeout -k 5 200 env PYTHONPATH=src python3 benchmarks/bench_network_variants.py --size 2048x2048 $mode --dtypes fp32 \
      --rounds 1 --reps 5 --variant DIFFMF_BRANCH_MAX_PIXELS=none --variant DIFFMF_BRANCH_STREAMS=0 --out "$OUT" 2>&1 | grep -v -i warn
  done
  for f in .data/test/MSRS36 .data/train/LLVIP32; do
    echo "## $f"
    timeout -k 5 200 env PYTHONPATH=src python3 benchmarks/bench_fuse.py --folder "$f" --settings fp32,amp \
      --out "$OUT/$(basename "$f")" 2>&1 | grep -v -i warn | grep -v "compiled Triton" | tail -6
  done
} 2>&1 | tee -a "$OUT/branch_limit.log"
