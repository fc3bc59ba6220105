#!/usr/bin/env bash
# Fuse every test set with the given weights on the device machine, time `diffmf fuse` on TNO25
# (including start-up and model load), evaluate with the default (cdd) profile, and make
# picture grids (ir | vi | fused) for docs/results.md. Carry .data/test and the weights file.
#   bash benchmarks/gpu_ship_eval.sh runs/ship/weights.safetensors
set -uo pipefail
W=${1:-runs/ship/weights.safetensors}
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$OUT" fused
python3 -c "import torch; torch.zeros(1).cuda()"  # driver warm-up, not counted
stamp() { while IFS= read -r line; do echo "$(date +%s.%N) $line"; done; }
start=$(date +%s.%N)
python3 -m diffmf fuse --ir .data/test/TNO25/ir --vi .data/test/TNO25/vi -o fused/TNO25 --weights "$W" --device cuda 2>&1 | stamp | tee /tmp/fuse_stamped.txt
end=$(date +%s.%N)
{
  echo "TNO25 fuse wall seconds (process start to exit, includes load): $(awk "BEGIN{print $end - $start}")"
  echo "process start $start, exit $end; stamped CLI output (the 'fused' line is logged right after the last pair):"
  cat /tmp/fuse_stamped.txt
  # where the rest of the wall time goes (each a fresh process, warm caches)
  for cmd in "pass" "import torch" "import torch; torch.zeros(1, device='cuda'); torch.cuda.synchronize()" \
             "import diffmf.cli.fuse, diffmf.engine.fuse" "import triton"; do
    s=$(date +%s.%N); python3 -c "$cmd"; e=$(date +%s.%N)
    echo "python3 -c \"$cmd\": $(awk "BEGIN{print $e - $s}") s"
  done
} 2>&1 | tee "$OUT/timing.txt"
python3 -X importtime -m diffmf fuse --ir .data/test/TNO25/ir --vi .data/test/TNO25/vi -o /tmp/fused_imp --weights "$W" --device cuda 2> /tmp/importtime.txt >/dev/null
sort -t'|' -k2 -n /tmp/importtime.txt | tail -25 >> "$OUT/timing.txt"
for i in 1 2 3; do  # warm: Triton's kernel cache filled by the runs above
  s=$(date +%s.%N)
  python3 -m diffmf fuse --ir .data/test/TNO25/ir --vi .data/test/TNO25/vi -o /tmp/fused_warm_$i --weights "$W" --device cuda 2>/dev/null
  e=$(date +%s.%N)
  echo "TNO25 fuse wall seconds, warm run $i (process start to exit, includes load): $(awk "BEGIN{print $e - $s}")" | tee -a "$OUT/timing.txt"
done
for s in RoadScene50 MSRS36; do
  python3 -m diffmf fuse --ir .data/test/$s/ir --vi .data/test/$s/vi -o fused/$s --weights "$W" --device cuda
done
for m in MRI_CT MRI_PET MRI_SPECT; do
  [ -d .data/test/Medical/$m ] || { echo "no .data/test/Medical/$m (not carried): skipped"; continue; }
  vi=$(ls -d .data/test/Medical/$m/* | grep -v /MRI$)
  python3 -m diffmf fuse --ir .data/test/Medical/$m/MRI --vi "$vi" -o fused/$m --weights "$W" --device cuda
done
for s in TNO25 RoadScene50 MSRS36; do
  python3 -m diffmf eval --ir .data/test/$s/ir --vi .data/test/$s/vi --fused fused/$s --profile cdd --metrics all \
    --csv "fused/eval_$s.csv" -j 8 2>&1 | tee -a "$OUT/eval.txt"
done
python3 benchmarks/make_grids.py --test .data/test --fused fused --out fused/grids
tar -cf "$OUT/results.tar" fused/eval_*.csv fused/grids "$OUT/timing.txt"
tar -czf "$OUT/fused_TNO25.tar.gz" fused/TNO25
ls -la "$OUT"
