#!/usr/bin/env bash
# One device call that decides DIFFMF_TRITON_WORDS (bf16 B / C read as int32 words of two states,
# src/diffmf/ops/triton/kernels.py `_states_bf16_words`; opt-in until this passes):
#   1. compiled correctness with it on: gpu_scan_check.py (float64 oracles, every route, ragged
#      sizes, exchanged B/C, bf16 / fp16 / fp32);
#   2. bit-identity of y and every gradient with it on and off at 480x640 and 61x77, bf16;
#   3. the timing: bench_scan.py --sweep, default against the variant, interleaved rounds, at
#      480x640 and 768x1024.
# Writes $OUT/check_words/, $OUT/sweep_*/ and prints a summary. Carry nothing.
#   bash benchmarks/gpu_words_check.sh
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
echo "== 1. compiled checks with DIFFMF_TRITON_WORDS=1"
DIFFMF_TRITON_WORDS=1 timeout 240 python3 benchmarks/gpu_scan_check.py --out "$OUT/check_words" 2>&1 | tail -18
echo "== 2. bit-identity on / off"
timeout 120 python3 - <<'EOF'
import os, sys
import torch
sys.path.insert(0, "benchmarks")
from gpu_scan_check import NAMES, inputs_2d, run_2d
from diffmf.ops.triton import scan as triton_scan
from diffmf.ops.triton import selective_scan_2d_triton

ok = True
for (h, w) in ((480, 640), (61, 77)):
    g = torch.Generator(device="cuda").manual_seed(h * w)
    ins = inputs_2d(1, 4, 64, 16, h, w, torch.bfloat16, "cuda", gen=g)
    dy = torch.randn(1, 64, h, w, device="cuda", generator=g)
    out = {}
    for flag in ("0", "1"):
        os.environ[triton_scan.WORDS_ENV] = flag
        out[flag] = run_2d(selective_scan_2d_triton, ins, dy)
    same = [n for n, a, b in zip(NAMES, out["0"], out["1"]) if (a is None) != (b is None) or (a is not None and not torch.equal(a, b))]
    print(f"{h}x{w}: {'bit-identical' if not same else 'DIFFERENT: ' + ', '.join(same)}")
    ok &= not same
sys.exit(0 if ok else 1)
EOF
echo "identity exit: $?"
echo "== 3. timing"
for shape in 480x640 768x1024; do
  timeout 150 python3 benchmarks/bench_scan.py --shapes "$shape" --sweep --rounds 3 --variant "DIFFMF_TRITON_WORDS=1" \
    --out "$OUT/sweep_$shape" 2>&1 | grep -v -i warn | tail -4
done
