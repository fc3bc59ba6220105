#!/usr/bin/env bash
# Every number issue 5 asks for, on the current code, in one device call (the summary table at
# the top of docs/benchmarks.md): the scan alone (forward, backward, GB/s against a copy) at
# 640x480, 1024x768 and a training batch; the whole network (latency, memory, scaling from
# 256x256 to 2048x2048, the benchmark's training step); the real trainer's throughput
# (CUDA-graphed, one process; two with PHASES="single ddp" on a 2-GPU machine); and the
# per-kernel profile of one 640x480 bf16 fuse. Carry .data/train for the trainer.
#   bash benchmarks/gpu_state.sh [scan] [model] [train] [profile]   # default: all four
# Each step has its own time limit; the log is $OUT/state.log, the JSON files under $OUT.
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$OUT"
steps=${*:-scan model train profile}
t() { local lim=$1; shift; timeout -k 5 "$lim" "$@" || echo "STEP FAILED OR TIMED OUT ($lim s): $*"; }
has() { [[ " $steps " == *" $1 "* ]]; }
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
  python3 -c "import torch, triton, platform; print('python', platform.python_version(), 'torch', torch.__version__, 'triton', triton.__version__)"
  if has scan; then
    echo "=== scan alone"
    t 150 python3 benchmarks/bench_scan.py --shapes 480x640,768x1024 --out "$OUT/scan"
    t 120 python3 benchmarks/bench_scan.py --shapes 128x128 --batch 16 --out "$OUT/scan_b16"
  fi
  if has model; then
    echo "=== whole network"
    t 240 python3 benchmarks/bench_model.py --out "$OUT/model"
  fi
  if has train; then
    echo "=== real trainer, phases ${PHASES:-single}"
    t 260 python3 benchmarks/gpu_train.py --out "$OUT/train" --phases ${PHASES:-single} --steps 400 --warmup 20 \
      --batch 16 --max-minutes "${MINUTES:-1.0}" --timeout 200 --nproc 2 --workers 6 --set train.cuda_graph=on 2>&1 \
      | grep -E "pairs/s|ERROR|Error|results:" | tail -8
  fi
  if has profile; then
    echo "=== per-kernel profile, 640x480 bf16 fuse"
    t 150 python3 benchmarks/gpu_profile.py model --no-train --top 80 --out "$OUT/profile"
  fi
} 2>&1 | tee "$OUT/state.log"
