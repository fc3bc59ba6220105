#!/usr/bin/env bash
# First use on a fresh Triton cache, kernels compiled one by one against in parallel first
# (diffmf.ops.triton.precompile), on the device machine (carry .data/test/TNO25): the GPU
# tests of tests/test_precompile.py, then benchmarks/bench_compile.py: the thread sweep on a
# 640x480 pair (cold and warm), then that pair and the TNO25 folder, serial against parallel
# (cold and warm, fresh processes, outputs compared bitwise). Logs under $OUT.
#   bash benchmarks/gpu_compile.sh [extra bench_compile.py arguments for the second run]
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
R=$OUT/compile; mkdir -p "$R"
{
  date -u; nvidia-smi --query-gpu=name --format=csv,noheader; echo "cpus: $(nproc)"
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  TRITON_INTERPRET=0 timeout 240 python3 -m pytest -q tests/test_precompile.py 2>&1 | tail -3
  timeout 200 python3 benchmarks/bench_compile.py --sweep ${SWEEP:-1,4,8,16} --out "$R"
  timeout 300 python3 benchmarks/bench_compile.py --folder .data/test/TNO25 --out "$R" "$@"
} 2>&1 | tee "$OUT/compile.log"
