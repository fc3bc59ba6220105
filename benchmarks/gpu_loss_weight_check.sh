#!/usr/bin/env bash
# Can the paper's loss reach the paper's TNO row by its weights? One device call: a fifth cosine
# cycle of the shipped run from its step-32,000 resume state
# (training/diffmf_paper.roadscene/checkpoints/latest.pt), with loss.w_text (lambda_2 of eq. 14,
# 20 in the shipped recipe) set to W_TEXT, for EXTRA steps (warm-up 200, cosine from 1e-4 to
# 1e-5), in a separate run folder; then its EMA weights fused and scored (`cdd`) on the three test
# sets, as is (NORMALIZE=none) and/or min-max stretched like CDDFuse's test script (minmax).
# SHIPPED="minmax" (or "none minmax") also scores the shipped weights with those modes. Per-image
# scores go to $OUT/eval_<tag>_<set>.csv.
# Carry .data/train, .data/test/TNO25, .data/test/RoadScene50, .data/test/MSRS36.
#   W_TEXT=80 EXTRA=1500 NORMALIZE="none minmax" SHIPPED=minmax bash benchmarks/gpu_loss_weight_check.sh
set -uo pipefail
W_TEXT=${W_TEXT:-80}
EXTRA=${EXTRA:-1600}
NORMALIZE=${NORMALIZE:-none}
SHIPPED=${SHIPPED:-}
SETS=${SETS:-"TNO25 RoadScene50 MSRS36"}
BASE=training/diffmf_paper.roadscene/checkpoints/latest.pt
RUN=runs/wtext$W_TEXT
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$OUT"
score() {  # WEIGHTS TAG NORMALIZE
  for s in $SETS; do
    python3 -m diffmf fuse --ir .data/test/$s/ir --vi .data/test/$s/vi -o "fused_$2/$s" --weights "$1" --device cuda \
      --normalize "$3" --quiet 2>&1 | grep -v "^$" | tail -1
    echo "== $2 $s (normalize $3)" | tee -a "$OUT/eval.txt"
    python3 -m diffmf eval --ir .data/test/$s/ir --vi .data/test/$s/vi --fused "fused_$2/$s" --profile cdd \
      --metrics paper -j 12 --csv "$OUT/eval_$2_$s.csv" 2>&1 | tee -a "$OUT/eval.txt" | tail -3
  done
}
steps=$(( 32000 + EXTRA ))
t0=$(date +%s)
python3 -m diffmf train diffmf_paper_roadscene --set \
  "data.roots=[.data/train/RoadScene171,.data/train/MSRS8]" "val.every=0" "out_dir=$RUN" "train.resume=$BASE" \
  "loss.w_text=$W_TEXT" "train.steps=$steps" "optim.restarts=[8000,16000,24000,32000]" "train.image_every=0" \
  "train.checkpoint_every=100000" 2>&1 | tee "$OUT/train_console.log" | grep -v "it/s]" | tail -12
echo "train exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s"
for n in $NORMALIZE; do score "$RUN/weights.safetensors" "wtext${W_TEXT}_$n" "$n"; done
for n in $SHIPPED; do score src/diffmf/weights/diffmf_paper.roadscene.safetensors "shipped_$n" "$n"; done
cp "$RUN/weights.safetensors" "$OUT/wtext$W_TEXT.safetensors"
cp "$RUN"/scalars.jsonl "$OUT/" 2>/dev/null
ls -la "$OUT"
