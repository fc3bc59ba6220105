#!/usr/bin/env bash
# Device run: diffmf's scan against mamba-ssm's compiled selective_scan_cuda (the peer; its
# sources carried in .peer/csrc, see benchmarks/peer_mamba_ssm.py). Steps (all by default):
#   build    compile the peer unless .peer/build/selective_scan_cuda_peer.so exists (the module
#            comes back as $OUT/selective_scan_cuda_peer.so: put it into .peer/build to skip
#            the build next time)
#   bench    the SS2D scan alone, bf16 inputs: 640x480 and 1024x768 at batch 1, 128x128 at 16
#   fp32     the same in float32 at 640x480 and 128x128 x 16 (the tight agreement check)
#   network  the paper-preset fuse with diffmf's scan and with the peer's (640x480, 1024x768)
# Log in $OUT/peer.log, JSON under $OUT. Preparing .peer (ignored by git, carried to the device):
#   curl -sLO <the sdist URL in peer_mamba_ssm.py>; tar xzf mamba_ssm-2.3.2.post1.tar.gz
#   mkdir -p .peer && cp -r mamba_ssm-2.3.2.post1/csrc/selective_scan .peer/csrc
#   bash benchmarks/gpu_peer.sh [build bench fp32 network]
set -uo pipefail
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-8}
steps=${*:-build bench fp32 network}
has() { [[ " $steps " == *" $1 "* ]]; }
peer() {  # peer LIMIT_S ARGS...: peer_mamba_ssm.py ARGS under a time limit
  local lim=$1; shift
  timeout -k 5 "$lim" env PYTHONPATH=src python3 benchmarks/peer_mamba_ssm.py "$@" 2>&1 | grep -v -i warn \
    || echo "STEP FAILED OR TIMED OUT ($lim s): $*"
}
mkdir -p "$OUT"
B=${PEER_BUILD:-.peer/build}
{
  date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; nvcc --version | tail -1
  if has build && [ ! -f "$B/selective_scan_cuda_peer.so" ]; then
    s=$(date +%s)
    peer 420 build --csrc .peer/csrc --build-dir /tmp/peerb | tail -3
    echo "build took $(( $(date +%s) - s )) s"
    mkdir -p "$B"; cp /tmp/peerb/obj/selective_scan_cuda_peer*.so "$B/selective_scan_cuda_peer.so" && cp "$B/selective_scan_cuda_peer.so" "$OUT/"
  fi
  has bench && peer 300 bench --build-dir "$B" --out "$OUT/bf16"
  has fp32 && peer 200 bench --build-dir "$B" --dtype float32 --cases 1x480x640,16x128x128 --out "$OUT/fp32"
  has network && peer 300 network --build-dir "$B" --out "$OUT"
} 2>&1 | tee -a "$OUT/peer.log"
