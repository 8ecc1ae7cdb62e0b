#!/usr/bin/env bash
# The whole GPU benchmark (issue 8, workload W1 + GPT-2-124M MFU) in ≤ 10 min; tables into the folder given.
#   experiments/benchmarks/run_gpu.sh experiments/benchmarks/gpu_$(date +%F) [--compile]
# Needs torch with CUDA and transformers only (no Hydra: it calls src.speed.compare.benchmark directly).
set -euo pipefail
out=${1:?usage: run_gpu.sh OUT_DIR [--compile]}; shift || true
cd "$(dirname "$0")/../.."
mkdir -p "$out"
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } > "$out/device.txt"
python3 experiments/benchmarks/run_gpu.py "$out" "$@" 2>&1 | tee "$out/log.txt"
