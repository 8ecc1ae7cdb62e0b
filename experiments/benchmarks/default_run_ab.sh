#!/usr/bin/env bash
# Wall time of the default `python -m src.run` (encdec, synthetic translation, size small), before vs after:
# runs a baseline commit and the working tree alternately, N times each, and prints wall seconds, fit seconds and
# exact match per run. Take the figure on a quiet machine (on a loaded one, OpenMP threads fight for cores).
#   experiments/benchmarks/default_run_ab.sh <baseline-commit> [N=3] [extra overrides...]
set -euo pipefail
base=${1:?baseline commit}; n=${2:-3}; shift $(( $# >= 2 ? 2 : 1 ))
root=$(git rev-parse --show-toplevel); tmp=$(mktemp -d)
mkdir -p "$tmp/base" "$tmp/runs"
git -C "$root" archive "$base" | tar -x -C "$tmp/base"
for i in $(seq "$n"); do
  for side in base new; do
    dir=$([ "$side" = base ] && echo "$tmp/base" || echo "$root")
    out="$tmp/runs/$side$i"; start=$(date +%s.%N)
    (cd "$dir" && python -m src.run hydra.run.dir="$out" "$@" > "$out.log" 2>&1)
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    python - "$out/results.json" "$side" "$wall" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:4s} wall {float(sys.argv[3]):6.1f} s  fit {r['wall_seconds']['fit']:6.1f} s  "
      f"exact_match {r['metrics']['test/exact_match']:.1f}  steps {r['train']['steps']}  {r['device']}")
PY
  done
done
