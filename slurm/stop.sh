#!/usr/bin/env bash
# Stop the local cluster started by slurm/start.sh: kill only the PIDs it recorded (never by name), newest first.
#   slurm/stop.sh [STATE_DIR]   (default $ARCHBENCH_SLURM_DIR or /tmp/archbench-slurm)
set -uo pipefail
STATE=$(realpath -m "${1:-${ARCHBENCH_SLURM_DIR:-/tmp/archbench-slurm}}")
[ -f "$STATE/pids" ] || { echo "no cluster recorded in $STATE"; exit 0; }
pids=$(tac "$STATE/pids" | awk '{print $2}')
for pid in $pids; do kill "$pid" 2>/dev/null; done
for _ in $(seq 100); do
  alive=0; for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break; sleep 0.1
done
for pid in $pids; do kill -0 "$pid" 2>/dev/null && kill -9 "$pid"; done
rm -f "$STATE/pids"
echo "SLURM cluster in $STATE stopped"
