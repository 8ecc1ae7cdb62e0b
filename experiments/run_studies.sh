#!/usr/bin/env bash
# Run the committed studies on the real data and copy each report into experiments/<study>/.
#   ARCHBENCH_DATA_ROOT=../shared/data experiments/run_studies.sh            # all of them (about 3 h on 2 CPU cores)
#   STUDIES="sst2_encoder_vs_decoder" ARCHBENCH_DATA_ROOT=... experiments/run_studies.sh
# Extra arguments are Hydra overrides for every study (e.g. logger=csv). Re-running resumes: every stage is an
# archbench multirun, whose finished members are not run again.
#
#   arch_comparison          python -m src.study: every translation arch on Multi30k en->de at matched parameters
#                            and equal training FLOPs, each its own learning rate (lr_grid), n = 3, NAR distilled
#                            from the study's encdec. Its members also give
#     ar_vs_nar              encdec (ours and CTranslate2) vs nar, over batch sizes (bench rows of the same runs)
#     length_study           rnn_seq2seq vs rnn_attn vs encdec, BLEU by source length
#   sst2_encoder_vs_decoder  python -m src.study: bidirectional encoder vs causal decoder on SST-2, n = 3
#   lm_scaling               decoder tiny / small / medium on tiny Shakespeare chars, 3 seeds (one multirun)
#   gpu_comparison           needs CUDA (skipped without it)
# Each report.md gets the command, the machine and the wall time appended.
set -euo pipefail
cd "$(dirname "$0")/.."
STUDIES=${STUDIES:-"arch_comparison sst2_encoder_vs_decoder lm_scaling gpu_comparison"}
root=multirun/studies

machine() {
  echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
}

finish() {  # finish <study> <report dir> <wall s> <how>
  mkdir -p "experiments/$1"
  cp "$2"/*.md "$2"/*.csv "experiments/$1/"
  cp "$2"/*.png "experiments/$1/" 2>/dev/null || true
  printf '\n## How this was made\n\n- command: %s\n- machine: %s\n- wall time: %s s\n' "$4" "$(machine)" "$3" \
    >> "experiments/$1/report.md"
}

for study in $STUDIES; do
  start=$(date +%s)
  case $study in
    arch_comparison)
      cmd=(python -m src.study experiment=arch_comparison study.teacher=encdec study.search=lr_grid study.trials=3
           study.seeds=3 "study.dir=$root/arch_comparison" "$@")
      "${cmd[@]}"
      final=$root/arch_comparison/final
      python -m src.report "$final" --baseline arch=encdec --no-wandb-log
      finish arch_comparison "$final/report" $(( $(date +%s) - start )) "\`${cmd[*]}\`"
      # shellcheck disable=SC2046  # the members' dirs, one argument each
      python -m src.report $(ls -d "$final"/*_{encdec,nar}_*) --out "$root/ar_vs_nar/report" --baseline arch=encdec \
        --no-wandb-log
      finish ar_vs_nar "$root/ar_vs_nar/report" 0 "\`python -m src.report $final/*_{encdec,nar}_*\` (arch_comparison's members)"
      # shellcheck disable=SC2046
      python -m src.report $(ls -d "$final"/*_{rnn_seq2seq,rnn_attn,encdec}_*) --out "$root/length_study/report" \
        --baseline arch=rnn_seq2seq --buckets 0-10,10-20,20-30,30+ --no-wandb-log
      finish length_study "$root/length_study/report" 0 \
        "\`python -m src.report $final/*_{rnn_seq2seq,rnn_attn,encdec}_*\` (arch_comparison's members)"
      ;;
    sst2_encoder_vs_decoder)
      cmd=(python -m src.study experiment=sst2_encoder_vs_decoder study.trials=5 study.seeds=3
           "study.dir=$root/sst2_encoder_vs_decoder" "$@")
      "${cmd[@]}"
      python -m src.report "$root/sst2_encoder_vs_decoder/final" --baseline arch=encoder --no-wandb-log
      finish sst2_encoder_vs_decoder "$root/sst2_encoder_vs_decoder/final/report" $(( $(date +%s) - start )) \
        "\`${cmd[*]}\`"
      ;;
    lm_scaling)
      cmd=(python -m src.run -m experiment=lm_scaling data=tinyshakespeare data.tasks.lm.block_size=64 data.max_length=65
           data.batch_size=24 data.eval_batch_size=512 trainer.max_steps=400 trainer.limit_val_batches=2 optim.lr=2e-3
           bench.batch_sizes=[1,8] bench.latency_sentences=4 bench.repeats=3
           "hydra.sweep.dir=$root/lm_scaling" "$@")
      "${cmd[@]}"
      python -m src.report "$root/lm_scaling" --baseline size.name=small --no-wandb-log
      finish lm_scaling "$root/lm_scaling/report" $(( $(date +%s) - start )) "\`${cmd[*]}\`"
      ;;
    gpu_comparison)
      if ! python -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; then
        echo "skip gpu_comparison: no CUDA here (run it on the cluster)"; continue
      fi
      python -m src.run -m experiment=gpu_comparison "hydra.sweep.dir=$root/gpu_comparison" "$@"
      python -m src.report "$root/gpu_comparison" --no-wandb-log
      finish gpu_comparison "$root/gpu_comparison/report" $(( $(date +%s) - start )) \
        "\`python -m src.run -m experiment=gpu_comparison\`"
      ;;
    *) echo "error: unknown study $study; choose among arch_comparison sst2_encoder_vs_decoder lm_scaling gpu_comparison" >&2
       exit 2 ;;
  esac
done
