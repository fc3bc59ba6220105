#!/usr/bin/env bash
# Where `diffmf fuse` of TNO25 spends its time, on the device machine (carry .data/test/TNO25):
# bench_fuse.py in fresh processes (each setting twice: the first may compile, the second is
# what a user's second run sees: Triton's disk cache warm, a new process), then the CLI itself
# three times with its log lines time-stamped (start-up, load, fusion, exit). Logs under $OUT.
#   bash benchmarks/gpu_fuse_time.sh [settings...]   (default: fp32 fp32+pad64)
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
R=$OUT/fuse_time; mkdir -p "$R"
settings=${*:-fp32 fp32+pad64}
stamp() { while IFS= read -r line; do echo "$(date +%s.%N) $line"; done; }
{
  date -u; nvidia-smi --query-gpu=name --format=csv,noheader
  python3 -c "import torch; torch.zeros(1).cuda()"  # driver warm-up
  for s in $settings; do
    for run in 1 2; do
      echo "== bench_fuse --settings $s (process $run)"
      timeout 300 python3 benchmarks/bench_fuse.py --folder .data/test/TNO25 --settings "$s" --out "$R/$s.$run" 2>&1 | tail -4
    done
  done
  for run in 1 2 3; do
    echo "== diffmf fuse TNO25, run $run"
    start=$(date +%s.%N)
    echo "$start START"
    timeout 120 python3 -m diffmf fuse --ir .data/test/TNO25/ir --vi .data/test/TNO25/vi -o /tmp/fused_$run --device cuda 2>&1 | stamp
    end=$(date +%s.%N)
    echo "$end EXIT  wall $(awk "BEGIN{print $end - $start}") s"
  done
} 2>&1 | tee "$OUT/fuse_time.log"
