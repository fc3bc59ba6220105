#!/usr/bin/env bash
# One device call that ends a resumed training run and evaluates it: train the shipped weights
# to the end of their schedule (gpu_ship_train.sh), then fuse + score every test set with them
# (gpu_ship_eval.sh). Optional: ALT_SRC=<another src/ tree> also times the scan of that tree
# against this one (interleaved bench_scan.py runs, 640x480) and runs its compiled checks.
# Carry .data/train, .data/test (and ALT_SRC).
#   bash benchmarks/gpu_ship_finish.sh [TRAIN_SECONDS]
set -uo pipefail
here=$(dirname "$0")
RUN=${RUN:-training/diffmf_paper.roadscene}
bash "$here/gpu_ship_train.sh" "${1:-150}" > "$OUT/train_tail.txt" 2>&1
tail -5 "$OUT/train_tail.txt"
bash "$here/gpu_ship_eval.sh" "$RUN/weights.safetensors" > "$OUT/eval_console.txt" 2>&1
tail -45 "$OUT/eval.txt"
if [ -n "${ALT_SRC:-}" ]; then
  for round in 1 2; do
    for src in src "$ALT_SRC"; do
      tag=$(echo "$src" | tr '/.' '__')
      PYTHONPATH=$src timeout 100 python3 "$here/bench_scan.py" --shapes 480x640 --out "$OUT/scan_${round}_$tag" 2>&1 \
        | grep -i "480x640\|fwd\|bwd" | head -8 | sed "s|^|[$round $src] |"
    done
  done
  PYTHONPATH=$ALT_SRC timeout 120 python3 "$here/gpu_scan_check.py" --out "$OUT/check_alt" 2>&1 | tail -4
fi
