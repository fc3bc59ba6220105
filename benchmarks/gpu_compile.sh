#!/usr/bin/env bash
# First use on a fresh Triton cache, kernels compiled one by one against in parallel first
# (diffmf.ops.triton.precompile), on the device machine (carry .data/test/TNO25, and
# .data/train/LLVIP32 for the training step). Steps (default: tests doctor fuse):
#   tests  the GPU tests of the precompile step, the fuse, CUDA graphs and the graphed training step
#   doctor `diffmf doctor` on an empty Triton cache, serial then parallel
#   sweep  bench_compile.py --sweep: the first 640x480 pair, cold and warm, per thread count ($SWEEP)
#   fuse   bench_compile.py: that pair and the TNO25 folder, serial against parallel, cold and warm
#   train  bench_compile.py --what train: 3 training steps of the paper preset, likewise
# Logs under $OUT.   bash benchmarks/gpu_compile.sh [step ...]
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
R=$OUT/compile; mkdir -p "$R"
steps=${*:-tests doctor fuse}
{
  date -u; nvidia-smi --query-gpu=name --format=csv,noheader; echo "cpus: $(nproc)"
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  for step in $steps; do
    echo "== $step"
    case $step in
      tests) TRITON_INTERPRET=0 timeout 400 python3 -m pytest -q tests/test_precompile.py tests/test_fuse.py \
               tests/test_graphs.py tests/test_graphed_step.py 2>&1 | tail -4 ;;
      doctor) for t in 0 ""; do
                echo "-- DIFFMF_COMPILE_THREADS=${t:-unset}, empty cache"
                env ${t:+DIFFMF_COMPILE_THREADS=$t} TRITON_CACHE_DIR="$(mktemp -d)" timeout 120 python3 -m diffmf doctor \
                  | grep -E "compile|check"
              done ;;
      sweep) timeout 300 python3 benchmarks/bench_compile.py --sweep "${SWEEP:-1,4,8,16}" --out "$R" ;;
      fuse) timeout 400 python3 benchmarks/bench_compile.py --folder .data/test/TNO25 --out "$R" | grep -v '^{' ;;
      train) timeout 540 python3 benchmarks/bench_compile.py --what train --train-root .data/train/LLVIP32 \
               --out "$R/train" | grep -v '^{' ;;
    esac
  done
} 2>&1 | tee "$OUT/compile.log"
