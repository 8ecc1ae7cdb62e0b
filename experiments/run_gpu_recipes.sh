#!/usr/bin/env bash
# Every GPU recipe in one call, on one CUDA GPU, from the repository root:
#   ARCHBENCH_DATA_ROOT=/path/to/shared/data bash experiments/run_gpu_recipes.sh
# Results: experiments/gpu_recipes.tsv (wall time of each command and its headline metric), runs in outputs/recipes/.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ARCHBENCH_DATA_ROOT:=../shared/data}"; export ARCHBENCH_DATA_ROOT
out=experiments/gpu_recipes.tsv
[ -f "$out" ] || printf 'date\trun\twall_s\tmetric\tvalue\tgpu\n' > "$out"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
run() {  # name, overrides...
  local name=$1; shift
  local dir="outputs/recipes/$(date +%Y%m%d-%H%M%S)_$name"
  local start=$(date +%s.%N)
  python -m src.run "$@" logger=csv hydra.run.dir="$dir"
  local wall=$(echo "$(date +%s.%N) - $start" | bc)
  read -r metric value < <(python -c "import json; r=json.load(open('$dir/results.json')); m=r['headline_metric']; print(m, r['metrics'][m])")
  printf '%s\t%s\t%.1f\t%s\t%s\t%s\n' "$(date -Is)" "$name" "$wall" "$metric" "$value" "$gpu" >> "$out"
}
run multi30k_encdec_beam5  experiment=multi30k_gpu
run multi30k_encdec_greedy experiment=multi30k_gpu decode=greedy
run multi30k_rnn_attn      experiment=multi30k_gpu arch=rnn_attn
run multi30k_prefix_lm     experiment=multi30k_gpu arch=decoder
run multi30k_nar           experiment=multi30k_gpu arch=nar decode=mask_predict decode.passes=10
run shakespeare_char       experiment=shakespeare_char_gpu
run sst2_encoder           experiment=sst2_gpu
column -t -s $'\t' "$out"
