#!/usr/bin/env bash
# Device runs for the sweeps' software-pipelined step loops (thirteenth session: the loads
# of the next steps staged in shared memory by Triton's pipeliner, `tl.range(num_stages=)`,
# the 7th field of DIFFMF_TRITON_LAYOUT_FWD / _BWD). Steps (all by default, or those named):
#   bitwise  variant_bitwise.py: y and every gradient bit-identical under each variant
#   scan     bench_scan.py --sweep (640x480 bf16; fp32 with `scan32`), interleaved rounds
#   profile  gpu_profile.py model --no-train per variant (bf16 and fp32 GPU time per 640x480 fuse)
#   train    bench_model.py training throughput (128x128, batch 16, eager and graphed) per
#            variant, two interleaved rounds
# VARIANTS (space-separated "ENV=VALUE[;ENV=VALUE]" items) overrides the list below.
# Log in $OUT/stages.log.
#   bash benchmarks/gpu_stages.sh [bitwise scan profile]
set -uo pipefail
export PYTHONUNBUFFERED=1
steps=${*:-bitwise scan profile}
has() { [[ " $steps " == *" $1 "* ]]; }
t() { local lim=$1; shift; timeout -k 5 "$lim" "$@" || echo "STEP FAILED OR TIMED OUT ($lim s): $*"; }
F=DIFFMF_TRITON_LAYOUT_FWD; B=DIFFMF_TRITON_LAYOUT_BWD
VARIANTS=${VARIANTS:-"$F=2,1,4,0,16,128,2 $F=2,1,4,0,16,128,3 $F=2,1,4,1,16,128,2 $B=4,2,4,1,16,0,2 $B=4,2,4,0,16,0,2"}
vargs=(); for v in $VARIANTS; do vargs+=(--variant "$v"); done
R=/tmp/stages; mkdir -p "$R" "$OUT"
{
  date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  has bitwise && t 240 env PYTHONPATH=src python3 benchmarks/variant_bitwise.py "${vargs[@]}" --out "$OUT"
  has scan && t 240 env PYTHONPATH=src python3 benchmarks/bench_scan.py --shapes 480x640 --sweep --rounds ${ROUNDS:-2} "${vargs[@]}" \
    --out "$R/scan" 2>&1 | grep -E "sweep|copy"
  has scan32 && t 200 env PYTHONPATH=src python3 benchmarks/bench_scan.py --dtype float32 --shapes 480x640 --sweep --rounds ${ROUNDS:-2} \
    "${vargs[@]}" --out "$R/scan32" 2>&1 | grep -E "sweep|copy"
  if has profile; then
    for v in default $VARIANTS; do
      env=(); [ "$v" != default ] && env=("$v")
      t 150 env PYTHONPATH=src "${env[@]}" python3 benchmarks/gpu_profile.py model --no-train --top 10 --out "$R/prof" 2>&1 \
        | grep -E "^# fuse|Self CUDA time total|_fwd_|_bwd_" | cut -c1-60,150-200 | sed "s|^|[$v] |"
    done
  fi
  if has train; then
    for round in 1 2; do
      for v in default $VARIANTS; do
        env=(); [ "$v" != default ] && env=("$v")
        t 200 env PYTHONPATH=src "${env[@]}" python3 benchmarks/bench_model.py --latency 256x256 --scaling 256x256 --train-steps 20 \
          --out "$R/train_${round}_${v//[^a-zA-Z0-9]/_}" 2>&1 | grep -E "^train" | sed "s|^|[round $round $v] |"
      done
    done
  fi
  cp -r "$R" "$OUT/" 2>/dev/null
} 2>&1 | tee -a "$OUT/stages.log"
