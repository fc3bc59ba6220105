#!/usr/bin/env bash
# The CUDA-graphed training step on the device: its GPU tests (graphed == eager bit for bit,
# exact resume), then the real trainer's throughput with train.cuda_graph=off and on
# (benchmarks/gpu_train.py, paper preset, batch 16 of 128x128 crops). On a machine with two or
# more GPUs, PHASES="single ddp" adds the two-process runs. Carry .data/train.
#   bash benchmarks/gpu_train_graph.sh                       # 1 GPU
#   PHASES="ddp" TESTS=0 bash benchmarks/gpu_train_graph.sh  # 2 GPUs
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
PHASES=${PHASES:-single}
MINUTES=${MINUTES:-1.0}
mkdir -p "$OUT"
{
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(), 'x', torch.cuda.device_count())"
  if [ "${TESTS:-1}" = 1 ]; then
    timeout 300 env TRITON_INTERPRET=0 python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_graphed_step.py 2>&1 | tail -30
  fi
  for mode in ${MODES:-off on}; do
    echo "=== train.cuda_graph=$mode, phases $PHASES"
    python3 benchmarks/gpu_train.py --out "$OUT/train_graph_$mode" --phases $PHASES --steps 400 --warmup 20 --batch 16 \
      --max-minutes "$MINUTES" --timeout 200 --nproc 2 --workers 6 --set "train.cuda_graph=$mode" 2>&1 \
      | grep -E "pairs/s|ERROR|Error|captured|results:" | tail -8
    grep -h "captured\|capture" "$OUT/train_graph_$mode"/*/train.log 2>/dev/null | head -3
  done
} 2>&1 | tee "$OUT/train_graph.log"
