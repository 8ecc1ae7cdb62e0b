#!/usr/bin/env bash
# Run every named study as one multirun and write its report into experiments/<study>/.
#   experiments/run_studies.sh                 # full size (hours on CPU; use a quiet machine or a GPU)
#   experiments/run_studies.sh debug=fast      # a smoke version in minutes (numbers meaningless)
#   STUDIES="arch_comparison length_study" experiments/run_studies.sh
# Extra arguments are Hydra overrides for every study. Records the command, hardware and wall time per study.
set -euo pipefail
cd "$(dirname "$0")/.."
STUDIES=${STUDIES:-"arch_comparison ar_vs_nar lm_scaling length_study gpu_comparison"}
for study in $STUDIES; do
  if [[ $study == gpu_comparison ]] && ! python -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; then
    echo "skip gpu_comparison: no CUDA here (run it on the cluster)"; continue
  fi
  sweep="multirun/studies/$study/$(date +%Y-%m-%d_%H-%M-%S)"
  start=$(date +%s)
  python -m src.run -m "experiment=$study" "hydra.sweep.dir=$sweep" "$@"
  wall=$(( $(date +%s) - start ))
  mkdir -p "experiments/$study"
  python -m src.report "$sweep"  # -> $sweep/report/ (+ its W&B report run, offline unless logged in)
  cp "$sweep"/report/*.md "$sweep"/report/*.csv "$sweep"/report/*.png "experiments/$study/"
  {
    echo
    echo "## How this was made"
    echo
    echo "- command: \`python -m src.run -m experiment=$study $*\` then \`python -m src.report $sweep\`"
    echo "- hardware: $(python -c "import torch,platform; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or platform.machine(), '|', torch.get_num_threads(), 'threads')")"
    echo "- wall time of the sweep: ${wall} s"
  } >> "experiments/$study/report.md"
done
