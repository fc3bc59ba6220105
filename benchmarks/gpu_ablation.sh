#!/usr/bin/env bash
# The paper's Table II ablation at a reduced, equal budget, in one device call (one H100, < 10 min).
#
# Trains the five Table II variants (full first, then wo_feature_extraction, wo_channel_exchange,
# wo_spatial_exchange, wo_difference_guidance) from scratch with the recipe of
# diffmf_paper_roadscene (RoadScene171 + MSRS8, batch 16, 128x128 crops, seed 0, Adam lr 2e-4,
# cosine to 5 %, EMA 0.999, bf16) for STEPS steps each: the config's first cosine cycle (8,000
# steps) scaled to STEPS, warm-up included, without its warm restarts; no validation, one checkpoint at the end, each run in
# runs/ablation/<variant>. Then fuses TNO25 (and RoadScene50 when the time left allows) with each
# run's final EMA weights (`diffmf fuse --device cuda`), scores them (`diffmf eval --profile cdd
# --metrics paper`) and writes to $OUT:
#   ablation_table.md       Table II layout (rows w/o ..., DIFF-MF; EN SD SF MI VIF AG) + a runs table
#   ablation.json           everything: steps done, seconds, pairs/s, losses, lr, curves, metrics
#   ablation_logs.tar.gz    train.log / console.log / scalars.jsonl / config.yaml / final_state.json of
#                           every run, fuse logs, the eval CSVs and printed tables, runs.tsv, meta.tsv
#   ablation_weights.tar    <variant>.safetensors: the final EMA weights of every run (2.1 MB each)
#   ablation_console.log    this script's output
#
# Time: a warm-up phase first pays Triton's JIT once (a 3-step `diffmf train` of the full model,
# and in the background a `diffmf fuse` of the test sets with the shipped weights, which compiles
# the inference kernels for every image size), so the five runs start equal. Each run gets
# RUN_TIMEOUT seconds at most (default STEPS / RATE * 1.25 + 30), and less when the later runs'
# nominal time (STEPS / RATE + STARTUP_S each) and the final fuse + score (END_RESERVE_S) would no
# longer fit in TOTAL_S seconds from the start. A run stopped by its limit gets SIGTERM, finishes
# its step, writes its checkpoint and weights (exit 130 from the trainer, 124 from timeout) and is
# still scored, marked in the table. If the warm-up leaves too little time for five runs of STEPS
# at RATE steps/s, STEPS is lowered for all five alike (ADAPT=1), so the budget stays equal.
# With GPUS=2 (or more) the runs are dealt round-robin to that many lanes, one GPU each
# (CUDA_VISIBLE_DEVICES), the runs of a lane one after the other: the same per-run budget in
# about half the time. RoadScene50 is scored only if the time left allows it. The five fuses of a set share the GPU
# (FUSE_PAR=5 processes at a time). Expected on one H100 at ~3 steps/s with STEPS=180: warm-up
# ~70 s, runs 5 x ~72 s, fuse + score TNO25 ~35 s, RoadScene50 ~35 s: ~8.5 min in all.
#
#   bash benchmarks/gpu_ablation.sh [STEPS [RUN_TIMEOUT_S]]        # default 180 steps
#   GPUS=2 RATE=6 bash benchmarks/gpu_ablation.sh 700              # 2 x H200, CUDA-graphed steps
# Carry .data/train and .data/test/TNO25 (+ .data/test/RoadScene50).
#
# CPU smoke test (tiny network, everything else the same code path):
#   OUT=/tmp/abl_out DEVICE=cpu PRESET=diffmf_tiny CROP=32 BATCH=2 WORKERS=0 EXTRA_SET="train.amp=none" \
#     SUBSET=3 TOTAL_S=3000 bash benchmarks/gpu_ablation.sh 2
# (SUBSET=N fuses and scores only the first N pairs of each test set: fusing full-size images on a
# small CPU takes minutes per set.)
set -uo pipefail
STEPS=${1:-180}
RATE=${RATE:-3}                       # expected steps/s (H100, batch 16: ~48 pairs/s)
STARTUP_S=${STARTUP_S:-12}            # process start, data check, loader workers, final checkpoint
RUN_TIMEOUT_ARG=${2:-}
RUN_TIMEOUT=${2:-$(( STEPS * 5 / (4 * RATE) + 30 ))}
ADAPT=${ADAPT:-1}                     # lower STEPS (equally for all runs) when the warm-up ran long
TOTAL_S=${TOTAL_S:-560}               # whole-script wall budget (the device call is cut at 600 s)
END_RESERVE_S=${END_RESERVE_S:-50}    # kept after training for fusing + scoring TNO25 and writing $OUT
MIN_RUN_S=${MIN_RUN_S:-30}            # a run that would get less is skipped (marked)
WARM=${WARM:-auto}                    # JIT warm-up phase: auto (on CUDA) | 1 | 0
WARM_TRAIN_TIMEOUT=${WARM_TRAIN_TIMEOUT:-180}
WARM_FUSE_TIMEOUT=${WARM_FUSE_TIMEOUT:-200}
WARM_WAIT_S=${WARM_WAIT_S:-30}        # after training, wait at most this for the warm-up fuse, then stop it
FUSE_TIMEOUT=${FUSE_TIMEOUT:-150}
CONFIG=${CONFIG:-diffmf_paper_roadscene}
DEVICE=${DEVICE:-cuda}
CROP=${CROP:-128}
BATCH=${BATCH:-16}
WORKERS=${WORKERS:-8}
LOG_EVERY=${LOG_EVERY:-10}
PRESET=${PRESET:-}                    # e.g. diffmf_tiny: that preset's model fields (tests)
WARMUP=${WARMUP:-}                    # LR warm-up steps; default: the config's scaled by STEPS / its first cycle
EXTRA_SET=${EXTRA_SET:-}              # more `--set` overrides, space separated (tests)
GPUS=${GPUS:-1}                       # training lanes, one GPU each (runs dealt round-robin)
ORDER=${ORDER:-"full wo_feature_extraction wo_channel_exchange wo_spatial_exchange wo_difference_guidance"}
SETS=${SETS:-"TNO25 RoadScene50"}     # the first is always scored, the others if time allows
DATA=${DATA:-.data}
ROOT=${ROOT:-runs/ablation}
FUSED=${FUSED:-$ROOT/fused}
SUBSET=${SUBSET:-0}                   # tests: only the first N pairs of each test set (0: all)
if [[ "$DEVICE" == cuda* ]]; then FUSE_PAR=${FUSE_PAR:-5}; EVAL_JOBS=${EVAL_JOBS:-16}  # fuses share the GPU
else FUSE_PAR=${FUSE_PAR:-1}; EVAL_JOBS=${EVAL_JOBS:-2}; fi
FUSE_THREADS=$(( $(nproc) / FUSE_PAR )); (( FUSE_THREADS < 1 )) && FUSE_THREADS=1
[ "$WARM" = auto ] && { [[ "$DEVICE" == cuda* ]] && WARM=1 || WARM=0; }
: "${OUT:?set OUT to the output folder}"
export PYTHONPATH=src PYTHONUNBUFFERED=1
HELPER=benchmarks/ablation_table.py

mkdir -p "$OUT" "$ROOT"
exec > >(tee "$OUT/ablation_console.log") 2>&1
TEE_PID=$!
T0=$(date +%s.%N)
el() { awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $T0}"; }          # seconds since start
secs() { awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $1}"; }          # seconds since $1
log() { echo "[$(el) s] $*"; }
meta() { printf '%s\t%s\n' "$1" "$2" >> "$ROOT/meta.tsv"; }

# Fresh state (runs/ is git-ignored; a warm machine may still hold an earlier call's runs).
for v in full wo_feature_extraction wo_channel_exchange wo_spatial_exchange wo_difference_guidance $ORDER _warm; do
  rm -rf "${ROOT:?}/$v"
done
rm -rf "$FUSED" "$ROOT"/eval_* "$ROOT/meta.tsv" "$ROOT/runs.tsv" "$ROOT/fuse.tsv" "$ROOT/_subset"
printf 'variant\tstatus\trc\twall_s\ttimeout_s\tstarted_s\n' > "$ROOT/runs.tsv"
printf 'set\tvariant\trc\n' > "$ROOT/fuse.tsv"

read -r -a EXTRA <<< "$EXTRA_SET"
COMMON=("data.roots=[$DATA/train/RoadScene171,$DATA/train/MSRS8]" "data.crop_size=$CROP" "data.batch_size=$BATCH"
        "data.num_workers=$WORKERS" "val.every=0" "train.checkpoint_every=0" "train.keep_checkpoints=1"
        "train.image_every=0" "train.log_every=$LOG_EVERY" "train.tensorboard=false" "train.resume=none"
        "train.device=$DEVICE")
mapfile -t PRESET_SET < <(python3 "$HELPER" overrides --config "$CONFIG" --steps 1 ${PRESET:+--preset "$PRESET"} | tail -n +3)
COMMON+=("${PRESET_SET[@]}" "${EXTRA[@]}")
N_RUNS=$(wc -w <<< "$ORDER")
(( GPUS >= 1 )) || { echo "GPUS must be >= 1, got $GPUS"; exit 2; }
LANE_RUNS=$(( (N_RUNS + GPUS - 1) / GPUS ))  # runs in the longest lane
TRAIN_DEADLINE=$(( TOTAL_S - END_RESERVE_S ))
meta steps_requested "$STEPS"; meta config "$CONFIG"; meta device "$DEVICE"; meta preset "${PRESET:-paper (config)}"
meta total_budget_s "$TOTAL_S"
log "STEPS=$STEPS TOTAL_S=$TOTAL_S DEVICE=$DEVICE order: $ORDER"
log "overrides: ${COMMON[*]}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  | head -1 | { read -r g; meta gpu "$g"; echo "gpu: $g"; }
python3 -c "import torch, sys; v=torch.__version__
try:
    import triton; v += ' triton ' + triton.__version__
except Exception: pass
print(v)" 2>/dev/null | { read -r v; meta versions "torch $v"; echo "torch $v"; } &
VERS_PID=$!

declare -A TD  # test set -> folder holding ir/ and vi/
for s in $SETS; do
  TD[$s]="$DATA/test/$s"
  if (( SUBSET > 0 )) && [ -d "$DATA/test/$s/ir" ]; then
    TD[$s]="$ROOT/_subset/$s"; mkdir -p "${TD[$s]}/ir" "${TD[$s]}/vi"
    for f in $(ls "$DATA/test/$s/ir" | sort | head -n "$SUBSET"); do
      stem=${f%.*}
      ln -s "$(realpath "$DATA/test/$s/ir/$f")" "${TD[$s]}/ir/$f"
      for g in "$DATA/test/$s/vi/$stem".*; do ln -s "$(realpath "$g")" "${TD[$s]}/vi/"; done
    done
    log "SUBSET: $s scored on its first $SUBSET pairs only (${TD[$s]})"
  fi
done

train() {  # train VARIANT OUT_DIR TIMEOUT [extra overrides...]
  local v=$1 dir=$2 t=$3; shift 3
  mkdir -p "$dir"
  timeout -s TERM -k 20 "$t" python3 -m diffmf train "$CONFIG" --set "${COMMON[@]}" "${SCHED[@]}" "model.variant=$v" "out_dir=$dir" "$@" \
    > "$dir/console.log" 2>&1
}

# ---------------------------------------------------------------- 1. JIT warm-up (CUDA only)
SCHED=()
WARM_FUSE_PID=
if [ "$WARM" = 1 ]; then
  mkdir -p "$ROOT/_warm"
  ( for s in $SETS; do
      [ -d "${TD[$s]}/ir" ] || continue
      timeout -k 10 "$WARM_FUSE_TIMEOUT" python3 -m diffmf fuse --ir "${TD[$s]}/ir" --vi "${TD[$s]}/vi" \
        -o "$ROOT/_warm/fused_$s" --device "$DEVICE" --quiet &
      echo $! > "$ROOT/_warm/fuse.pid"; wait $!
      echo "warm-up fuse $s: rc $? at $(el) s"
    done ) > "$ROOT/_warm/fuse.log" 2>&1 &
  WARM_FUSE_PID=$!
  t=$(date +%s.%N)
  train full "$ROOT/_warm/train" "$WARM_TRAIN_TIMEOUT" train.steps=3 optim.warmup_steps=0
  rc=$?
  meta timeline.warmup_train_s "$(secs "$t")"
  log "warm-up train (3 steps, compiles the training kernels): rc $rc, $(secs "$t") s"
  [ "$rc" = 0 ] || tail -20 "$ROOT/_warm/train/console.log"
fi
meta timeline.training_start_s "$(el)"

# ---------------------------------------------------------------- 2. the five runs
# Equal budget: if the time left cannot hold N_RUNS runs of STEPS at RATE (the warm-up took
# longer than planned), every run gets the same smaller STEPS (ADAPT=0 keeps STEPS).
now=$(printf '%.0f' "$(el)")
fit=$(( ((TRAIN_DEADLINE - now) / LANE_RUNS - STARTUP_S) * RATE / 10 * 10 ))
if [ "$ADAPT" = 1 ] && (( fit < STEPS )); then
  log "only $(( TRAIN_DEADLINE - now ))s left for $LANE_RUNS runs per lane: STEPS $STEPS -> $fit for every run"
  (( fit < 10 )) && fit=10
  STEPS=$fit
  [ -n "$RUN_TIMEOUT_ARG" ] || RUN_TIMEOUT=$(( STEPS * 5 / (4 * RATE) + 30 ))
fi
NOMINAL=$(( STEPS / RATE + STARTUP_S ))
mapfile -t SCHED < <(python3 "$HELPER" overrides --config "$CONFIG" --steps "$STEPS" ${WARMUP:+--warmup "$WARMUP"})
[ "${#SCHED[@]}" -ge 2 ] || { echo "cannot compute the schedule overrides"; exit 2; }
meta steps "$STEPS"; meta run_timeout_s "$RUN_TIMEOUT"; meta gpus "$GPUS"
seed_note="seed of the config"
[[ " $EXTRA_SET " == *" seed="* ]] && seed_note="seed from EXTRA_SET"
meta recipe "config $CONFIG, $STEPS steps (${SCHED[*]:1}: the config's first cosine cycle over the $STEPS steps), batch $BATCH, ${CROP}x$CROP crops, data $DATA/train/{RoadScene171,MSRS8}, $seed_note, no validation, checkpoint at the end${PRESET:+, model preset $PRESET}${EXTRA_SET:+, $EXTRA_SET}"
log "runs: $STEPS steps each (${SCHED[*]}), limit ${RUN_TIMEOUT}s per run (nominal ${NOMINAL}s)"

ship() {  # (re)write the report and the logs tar in $OUT: what is there survives a cut call
  python3 "$HELPER" report --root "$ROOT" --steps "$STEPS" --out-md "$OUT/ablation_table.md" --out-json "$OUT/ablation.json" \
    || echo "report failed"
  tar -czf "$OUT/ablation_logs.tar.gz" --exclude='*.pt' --exclude='*.safetensors' --exclude='fused' --exclude='fused_*' \
    --exclude='samples' --exclude='_subset' -C "$(dirname "$ROOT")" "$(basename "$ROOT")" 2>/dev/null
}
lane() {  # lane GPU VARIANT...: train the variants one after the other (on that GPU if GPUS > 1)
  local g=$1; shift
  local m=$# i=0 v now avail t rc ts w tag
  for v in "$@"; do
    i=$(( i + 1 ))
    tag="run $i/$m"
    (( GPUS > 1 )) && tag+=" of lane $g"
    now=$(printf '%.0f' "$(el)")
    avail=$(( TRAIN_DEADLINE - now - (m - i) * NOMINAL ))
    t=$RUN_TIMEOUT
    (( avail < t )) && t=$avail
    if (( t < MIN_RUN_S )); then
      log "$tag $v: SKIPPED, only ${t}s left for it"
      printf '%s\tskipped\t\t\t%s\t%s\n' "$v" "$t" "$now" >> "$ROOT/runs.tsv"
      continue
    fi
    log "$tag $v: $STEPS steps, limit ${t}s"
    ts=$(date +%s.%N)
    if (( GPUS > 1 )); then CUDA_VISIBLE_DEVICES=$g train "$v" "$ROOT/$v" "$t"; else train "$v" "$ROOT/$v" "$t"; fi
    rc=$?
    w=$(secs "$ts")
    printf '%s\tdone\t%s\t%s\t%s\t%s\n' "$v" "$rc" "$w" "$t" "$now" >> "$ROOT/runs.tsv"
    log "$tag $v: rc $rc in ${w}s; $(grep -h -o 'step [0-9]*/[0-9]* .*pairs/s' "$ROOT/$v/train.log" 2>/dev/null | tail -1)"
    [ "$rc" = 0 ] || tail -5 "$ROOT/$v/console.log"
  done
}
read -r -a RUNS <<< "$ORDER"
if (( GPUS > 1 )); then
  LPIDS=()
  for (( g = 0; g < GPUS; g++ )); do
    mine=(); for (( j = g; j < N_RUNS; j += GPUS )); do mine+=("${RUNS[$j]}"); done
    (( ${#mine[@]} )) || continue
    log "lane $g (GPU $g): ${mine[*]}"
    lane "$g" "${mine[@]}" &
    LPIDS+=($!)
  done
  for pid in "${LPIDS[@]}"; do wait "$pid"; done
else
  lane 0 "${RUNS[@]}"
fi
meta timeline.training_end_s "$(el)"
wait "$VERS_PID" 2>/dev/null
mkdir -p "$ROOT/_w"
for v in $ORDER; do [ -f "$ROOT/$v/weights.safetensors" ] && cp "$ROOT/$v/weights.safetensors" "$ROOT/_w/$v.safetensors"; done
tar -cf "$OUT/ablation_weights.tar" -C "$ROOT/_w" . && rm -rf "$ROOT/_w"
ship

# ---------------------------------------------------------------- 3. fuse + score
if [ -n "$WARM_FUSE_PID" ]; then
  t=$(date +%s.%N)
  for (( k = 0; k < WARM_WAIT_S; k++ )); do kill -0 "$WARM_FUSE_PID" 2>/dev/null || break; sleep 1; done
  if kill -0 "$WARM_FUSE_PID" 2>/dev/null; then  # its own kernels compile in the real fuses too
    kill "$WARM_FUSE_PID" 2>/dev/null; kill "$(cat "$ROOT/_warm/fuse.pid")" 2>/dev/null
    log "warm-up fuse still running after the training + ${WARM_WAIT_S}s: stopped"
  fi
  wait "$WARM_FUSE_PID" 2>/dev/null
  log "warm-up fuse (waited $(secs "$t") s): $(grep -h 'rc' "$ROOT/_warm/fuse.log" | tr '\n' ' ')"
fi
first=1
last_s=0; last_px=1
for s in $SETS; do
  d=${TD[$s]}
  [ -d "$d/ir" ] || { meta set_skipped "$s	not carried ($d)"; log "$s: not found, skipped"; continue; }
  n=$(find "$d/ir" -maxdepth 1 \( -type f -o -type l \) | wc -l)
  px=$(python3 "$HELPER" pixels "$d/ir")
  if [ "$first" = 0 ]; then  # fuse + eval time of the last set, scaled by pixels, plus 10 s
    need=$(awk "BEGIN{printf \"%.0f\", $last_s * $px / $last_px + 10}")
    left=$(awk "BEGIN{printf \"%.0f\", $TOTAL_S - $(el)}")
    if (( need > left )); then
      log "$s: skipped, needs ~${need}s, ${left}s left"; meta set_skipped "$s	no time left (needs ~${need} s, ${left} s left)"
      continue
    fi
  fi
  first=0
  ts_set=$(date +%s.%N)
  t=$(date +%s.%N)
  pids=(); names=(); nf=0
  for v in $ORDER; do
    w="$ROOT/$v/weights.safetensors"
    [ -f "$w" ] || continue
    rm -rf "$FUSED/$s/$v"
    OMP_NUM_THREADS=$FUSE_THREADS timeout -k 10 "$FUSE_TIMEOUT" python3 -m diffmf fuse --ir "$d/ir" --vi "$d/vi" -o "$FUSED/$s/$v" \
      --weights "$w" --device "$DEVICE" --quiet > "$ROOT/$v/fuse_$s.log" 2>&1 &
    pids+=($!); names+=("$v"); nf=$(( nf + 1 ))
    if (( ${#pids[@]} >= FUSE_PAR )); then wait "${pids[0]}"; printf '%s\t%s\t%s\n' "$s" "${names[0]}" "$?" >> "$ROOT/fuse.tsv"; pids=("${pids[@]:1}"); names=("${names[@]:1}"); fi
  done
  for k in "${!pids[@]}"; do wait "${pids[$k]}"; printf '%s\t%s\t%s\n' "$s" "${names[$k]}" "$?" >> "$ROOT/fuse.tsv"; done
  fuse_s=$(secs "$t")
  meta "timeline.fuse_${s}_s" "$fuse_s"
  log "$s: fused with $nf weights in ${fuse_s}s ($FUSE_PAR at a time): $(grep -P "^$s\t" "$ROOT/fuse.tsv" | cut -f2,3 | tr '\t\n' '= ')"
  t=$(date +%s.%N)
  dirs=(); for v in $ORDER; do [ -d "$FUSED/$s/$v" ] && dirs+=("$FUSED/$s/$v"); done
  if [ "${#dirs[@]}" -gt 0 ]; then
    python3 -m diffmf eval --ir "$d/ir" --vi "$d/vi" --fused "${dirs[@]}" --profile cdd --metrics paper \
      --csv "$ROOT/eval_$s.csv" -j "$EVAL_JOBS" --no-progress 2>&1 | tee "$ROOT/eval_$s.txt"
    meta "timeline.eval_${s}_s" "$(secs "$t")"
    meta set_done "$s $n"
  else
    meta set_skipped "$s	no weights to fuse"
  fi
  last_s=$(secs "$ts_set"); last_px=$px
  ship
done
meta timeline.total_s "$(el)"
ship
log "done"
cat "$OUT/ablation_table.md"
ls -la "$OUT"
exec 1>&- 2>&-; wait "$TEE_PID"  # the console copy is complete before the call returns
