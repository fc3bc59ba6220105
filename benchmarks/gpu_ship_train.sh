#!/usr/bin/env bash
# Train (or resume) the shipped weights diffmf_paper.roadscene on the device machine for at most
# SECONDS (default 480), then copy what the next call and the docs need to $OUT.
# Carry: .data/train (RoadScene171, MSRS8) and .data/test (TNO25 for validation). The run folder
# training/diffmf_paper.roadscene is tracked in git (its latest.pt is the resume state of the
# shipped weights) and travels with the working tree: copy $OUT/latest.pt back into its
# checkpoints/ folder after each call and commit it.
#   bash benchmarks/gpu_ship_train.sh 480
#   NPROC=2 bash benchmarks/gpu_ship_train.sh 480   # torchrun on 2 GPUs (same global batch of 16)
set -uo pipefail
SECONDS_BUDGET=${1:-480}
RUN=${RUN:-training/diffmf_paper.roadscene}  # tracked: resumes across sessions
NPROC=${NPROC:-1}
LAUNCH=(python3 -m diffmf)
(( NPROC > 1 )) && LAUNCH=(python3 -m torch.distributed.run --standalone "--nproc_per_node=$NPROC" -m diffmf)
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$RUN/checkpoints" "$OUT"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
[ -f "$RUN/checkpoints/latest.pt" ] || python3 -m diffmf doctor 2>&1 | tail -8  # first call only
# The trainer stops itself after SECONDS (train.time_limit: checkpoint, exit 130, which torchrun
# reports as a failed child: expected; the next call resumes); the outer
# timeout is only a safety net (a TERM from it was lost once on the device: no checkpoint).
timeout -s TERM -k 30 "$((SECONDS_BUDGET + 45))" "${LAUNCH[@]}" train diffmf_paper_roadscene --set \
  "data.roots=[.data/train/RoadScene171,.data/train/MSRS8]" "val.roots=[.data/test/TNO25]" \
  "out_dir=$RUN" "train.resume=auto" "train.time_limit=$SECONDS_BUDGET" 2>&1 | tee "$OUT/train_console.log" | grep -v "it/s]" | tail -40
echo "train exit: ${PIPESTATUS[0]}"
cp "$RUN/weights.safetensors" "$OUT/" 2>/dev/null
cp "$RUN/checkpoints/latest.pt" "$OUT/" 2>/dev/null
tar -czf "$OUT/trainlogs.tar.gz" --exclude='*.pt' --exclude='*.safetensors' --exclude='images' -C "$(dirname "$RUN")" "$(basename "$RUN")" 2>/dev/null
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
ls -la "$OUT"
