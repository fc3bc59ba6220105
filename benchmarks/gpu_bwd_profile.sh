#!/usr/bin/env bash
# Where the backward sweeps and the training step spend their time (H100): torch.profiler over
# one training step (kernels by GPU time), then Nsight Compute on the backward kernels of one
# 640x480 scan (bf16, K=4, D=64, N=16).   bash benchmarks/gpu_bwd_profile.sh
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$OUT"
python3 benchmarks/gpu_profile.py model --out "$OUT/prof" --top 40 > "$OUT/model_profile.txt" 2>&1
tail -60 "$OUT/model_profile.txt" | cut -c1-160
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
timeout 400 "$NCU" --profile-from-start off --clock-control none -k "regex:_bwd|_fwd" \
  --section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy --section SchedulerStats \
  --section WarpStateStats --section LaunchStats \
  --metrics sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active,smsp__inst_executed_op_shared_ld.sum,smsp__inst_executed_op_shared_st.sum,smsp__inst_executed.sum \
  python3 benchmarks/gpu_profile.py scan > "$OUT/ncu_bwd.txt" 2>&1
echo "ncu exit $?"
grep -E "_kernel|Duration|Registers Per|Achieved Occupancy|Issue Slots Busy|No Eligible|Stall|Warp Cycles Per Issued|pipe_xu|pipe_fma|shared_ld|shared_st|inst_executed.sum|Block Size|Waves Per SM" "$OUT/ncu_bwd.txt" | cut -c1-150 | head -150
