#!/usr/bin/env bash
# CUDA-graph replay on the device: the GPU tests of tests/test_graphs.py, then `diffmf fuse` of
# TNO25 with and without graphs (outputs must be byte-identical) with the timings.
# Carry .data/test/TNO25.   bash benchmarks/gpu_graphs_check.sh
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$OUT"
{
  timeout 180 env TRITON_INTERPRET=0 python3 -m pytest -x -q -p no:cacheprovider --tb=short tests/test_graphs.py 2>&1 | tail -60
  for mode in graphs1 graphs2 eager; do  # graphs1 compiles the kernels if the Triton cache is cold
    flag=""; [ $mode = eager ] && flag="--no-cuda-graphs"
    s=$(date +%s.%N)
    timeout 150 python3 -m diffmf fuse --ir .data/test/TNO25/ir --vi .data/test/TNO25/vi -o "/tmp/fused_$mode" --device cuda $flag 2>&1 | tail -5
    e=$(date +%s.%N)
    echo "TNO25 fuse ($mode), process start to exit: $(awk "BEGIN{print $e - $s}") s"
  done
  if diff -r /tmp/fused_graphs2 /tmp/fused_eager >/dev/null; then echo "graph and eager outputs byte-identical"; else echo "OUTPUTS DIFFER"; fi
} 2>&1 | tee "$OUT/graphs.log"
