#!/usr/bin/env bash
# End-to-end check of CUDA-graphed training through the CLI (H100): the shipped recipe from
# scratch for 300 steps with validation, image grids and checkpoints every 150 steps, a resumed
# second invocation to 400 steps, then `diffmf fuse` with the result. Carry .data/train and
# .data/test/TNO25.   bash benchmarks/gpu_train_e2e.sh
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
RUN=/tmp/e2e_run
mkdir -p "$OUT"
common=("data.roots=[.data/train/RoadScene171,.data/train/MSRS8]" "val.roots=[.data/test/TNO25]" "out_dir=$RUN"
        "val.every=150" "val.max_images=5" "train.checkpoint_every=150" "train.image_every=150" "train.log_every=50"
        "optim.restarts=[]")  # one cosine cycle: the config's warm restarts lie beyond these short runs
{
  python3 -m diffmf train diffmf_paper_roadscene --set "${common[@]}" train.resume=none train.steps=300 2>&1 | grep -v "it/s]" | tail -14
  echo "first run exit: ${PIPESTATUS[0]}"
  python3 -m diffmf train diffmf_paper_roadscene --set "${common[@]}" train.resume=auto train.steps=400 2>&1 | grep -v "it/s]" | tail -8
  echo "resumed run exit: ${PIPESTATUS[0]}"
  ls "$RUN" "$RUN/samples" 2>&1 | head -20
  mkdir -p /tmp/e2e_in/ir /tmp/e2e_in/vi
  for f in $(ls .data/test/TNO25/ir | head -3); do cp ".data/test/TNO25/ir/$f" /tmp/e2e_in/ir/; cp ".data/test/TNO25/vi/$f" /tmp/e2e_in/vi/; done
  python3 -m diffmf fuse --ir /tmp/e2e_in/ir --vi /tmp/e2e_in/vi -o /tmp/e2e_fused --weights "$RUN/weights.safetensors" 2>&1 | tail -3
  echo "fuse exit: $?"; ls /tmp/e2e_fused
} 2>&1 | tee "$OUT/e2e.log"
