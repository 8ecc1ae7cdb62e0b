#!/usr/bin/env bash
# Measure the CPU recipes on a QUIET machine (nothing else running), from the repository root:
#   ARCHBENCH_DATA_ROOT=/path/to/shared/data bash experiments/run_cpu_recipes.sh [recipe ...]
# Recipes: shakespeare_char_cpu sst2_cpu multi30k_cpu tatoeba_en_zh_cpu (default: all). With NANOGPT_DIR=<a nanoGPT
# checkout> it first runs nanoGPT's own CPU recipe on the same input.txt, side by side. Each run's wall time (the
# whole command, as a user waits for it) and headline metric go to experiments/cpu_recipes.tsv; the run directories to outputs/recipes/.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ARCHBENCH_DATA_ROOT:=../shared/data}"; export ARCHBENCH_DATA_ROOT
recipes=("$@"); [ ${#recipes[@]} -gt 0 ] || recipes=(shakespeare_char_cpu sst2_cpu multi30k_cpu tatoeba_en_zh_cpu)
out=experiments/cpu_recipes.tsv
[ -f "$out" ] || printf 'date\trecipe\twall_s\tmetric\tvalue\thardware\n' > "$out"
hw="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

if [ -n "${NANOGPT_DIR:-}" ]; then  # nanoGPT's README CPU command, on the same text (its prepare.py skips the download)
  mkdir -p "$NANOGPT_DIR/data/shakespeare_char"
  cp "$ARCHBENCH_DATA_ROOT/tinyshakespeare/input.txt" "$NANOGPT_DIR/data/shakespeare_char/input.txt"
  (cd "$NANOGPT_DIR" && python data/shakespeare_char/prepare.py >/dev/null)
  start=$(date +%s.%N)
  (cd "$NANOGPT_DIR" && python train.py config/train_shakespeare_char.py --device=cpu --compile=False \
     --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 \
     --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0) | tee /tmp/nanogpt_cpu.log
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  val=$(grep -o 'val loss [0-9.]*' /tmp/nanogpt_cpu.log | tail -1 | awk '{print $3}')
  printf '%s\tnanogpt_cpu\t%.1f\tval loss\t%s\t%s\n' "$(date -Is)" "$wall" "$val" "$hw" >> "$out"
fi

for r in "${recipes[@]}"; do
  dir="outputs/recipes/$(date +%Y%m%d-%H%M%S)_$r"
  start=$(date +%s.%N)
  python -m src.run experiment="$r" logger=csv hydra.run.dir="$dir"
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  read -r metric value < <(python -c "import json,sys; r=json.load(open('$dir/results.json')); m=r['headline_metric']; print(m, r['metrics'][m])")
  printf '%s\t%s\t%.1f\t%s\t%s\t%s\n' "$(date -Is)" "$r" "$wall" "$metric" "$value" "$hw" >> "$out"
done
column -t -s $'\t' "$out"
