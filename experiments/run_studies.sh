#!/usr/bin/env bash
# Run every named study as one multirun and write its report into experiments/<study>/.
#   experiments/run_studies.sh                 # the study configs as they are (synthetic data unless overridden)
#   experiments/run_studies.sh debug=fast      # a smoke version in minutes (numbers meaningless)
#   CPU_STUDY=1 ARCHBENCH_DATA_ROOT=../shared/data experiments/run_studies.sh   # what is committed (see below)
#   STUDIES="arch_comparison length_study" experiments/run_studies.sh
# Extra arguments are Hydra overrides for every study. Records the command, hardware and wall time per study.
#
# CPU_STUDY=1: the size this 2-core CPU machine can run in about an hour, on the real data: translation studies on
# Multi30k en->de (d 128, 2 layers, joint BPE 4k, 600 steps of 64 sentences: ~1.3 epochs, far from converged), the
# LM study on tiny Shakespeare (chars, block 64, 400 steps); arch_comparison 2 seeds, ar_vs_nar 1 seed. length_study
# is then reported from arch_comparison's rnn_seq2seq, rnn_attn and encdec members (the same configs it would run).
set -euo pipefail
cd "$(dirname "$0")/.."
STUDIES=${STUDIES:-"arch_comparison ar_vs_nar lm_scaling length_study gpu_comparison"}
declare -A CPU_OVERRIDES=(
  [translation]="data=multi30k data.vocab_size=4000 data.batch_size=64 size.name=cpu_study size.d_model=128
    size.n_heads=4 size.n_layers=2 size.d_ff=512 size.dropout=0.1 trainer.max_steps=600
    trainer.val_check_interval=300 trainer.limit_val_batches=2 optim.lr=1e-3 optim.warmup_steps=150
    optim.label_smoothing=0.1 bench.latency_sentences=4 bench.repeats=3"
  [arch_comparison]="seed=0,1 bench.batch_sizes=[1,32]"
  [ar_vs_nar]="seed=0 bench.batch_sizes=[1,8,32,128]"
  [lm_scaling]="data=tinyshakespeare data.tasks.lm.block_size=64 data.max_length=65 data.batch_size=24
    data.eval_batch_size=512 trainer.max_steps=400 trainer.val_check_interval=200 trainer.limit_val_batches=2
    optim.lr=2e-3 bench.batch_sizes=[1,8] bench.latency_sentences=4 bench.repeats=3"
)
declare -A sweeps=()
for study in $STUDIES; do
  if [[ $study == gpu_comparison ]] && ! python -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; then
    echo "skip gpu_comparison: no CUDA here (run it on the cluster)"; continue
  fi
  overrides=()
  if [[ -n ${CPU_STUDY:-} ]]; then
    # shellcheck disable=SC2206  # word splitting of the override lists is intended
    [[ $study == lm_scaling ]] || overrides=(${CPU_OVERRIDES[translation]})
    overrides+=(${CPU_OVERRIDES[$study]:-})
  fi
  overrides+=("$@")
  mkdir -p "experiments/$study"
  metric=(--metric test/bleu); [[ $study == lm_scaling ]] && metric=()  # translation studies compare on BLEU
  start=$(date +%s)
  if [[ $study == length_study && -n ${CPU_STUDY:-} && -n ${sweeps[arch_comparison]:-} ]]; then
    runs=$(ls -d "${sweeps[arch_comparison]}"/*_{rnn_seq2seq,rnn_attn,encdec}_*)
    # shellcheck disable=SC2086
    python -m src.report $runs --out "multirun/studies/length_study/from_arch_comparison/report" --group length_study \
      "${metric[@]}"
    sweep="multirun/studies/length_study/from_arch_comparison"
    how="\`python -m src.report <arch_comparison sweep>/*_{rnn_seq2seq,rnn_attn,encdec}_* --out $sweep/report ${metric[*]}\`"
    how+=" (the members of arch_comparison below; no separate runs)"
  else
    sweep="multirun/studies/$study/$(date +%Y-%m-%d_%H-%M-%S)"
    python -m src.run -m "experiment=$study" "hydra.sweep.dir=$sweep" "${overrides[@]}"
    sweeps[$study]=$sweep
    python -m src.report "$sweep" "${metric[@]}"  # -> $sweep/report/ (+ its W&B report run, offline unless logged in)
    how="\`python -m src.run -m experiment=$study ${overrides[*]}\` then \`python -m src.report $sweep ${metric[*]}\`"
  fi
  wall=$(( $(date +%s) - start ))
  cp "$sweep"/report/*.md "$sweep"/report/*.csv "$sweep"/report/*.png "experiments/$study/"
  {
    echo
    echo "## How this was made"
    echo
    echo "- command: $how"
    echo "- hardware: $(python -c "import torch,platform; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or platform.machine(), '|', torch.get_num_threads(), 'threads')") ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(date -u +%F)"
    echo "- wall time: ${wall} s"
  } >> "experiments/$study/report.md"
done
