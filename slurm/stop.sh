#!/usr/bin/env bash
# Stop the local cluster started by slurm/start.sh and every process it started, job steps included, never by name:
#   1. cancel the jobs through SLURM (scancel: SIGTERM to each step, as on a real cluster) and wait up to 10 s for them to end;
#   2. kill the recorded daemons (DIR/pids), newest first;
#   3. kill what is left of the cluster's processes: the test cluster has no cgroups and slurmstepd is reparented to
#      init, so they are found in /proc by SLURM_CONF=DIR/slurm.conf in their environment (inherited by the daemons'
#      children, slurmstepd, job scripts and steps) together with a SLURM_JOB_ID or a SLURM daemon's name.
#   slurm/stop.sh [STATE_DIR]   (default $ARCHBENCH_SLURM_DIR or /tmp/archbench-slurm); exit 1 if any process is left
set -uo pipefail
STATE=$(realpath -m "${1:-${ARCHBENCH_SLURM_DIR:-/tmp/archbench-slurm}}")
[ -f "$STATE/pids" ] || { echo "no cluster recorded in $STATE"; exit 0; }
export SLURM_CONF=$STATE/slurm.conf
daemons=$(tac "$STATE/pids" | awk '{print $2}')

ancestors() {  # this script and its callers: never ours to kill (a shell may have SLURM_CONF exported)
  local pid=$$
  while [ "$pid" -gt 1 ] 2>/dev/null; do echo "$pid"; pid=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null) || break; done
}
cluster_pids() {  # the live processes of this cluster (recorded daemons aside, though they match too)
  local self f pid
  self=" $(ancestors | tr '\n' ' ') "
  for f in $(grep -lszxF "SLURM_CONF=$SLURM_CONF" /proc/[0-9]*/environ); do
    pid=${f#/proc/}; pid=${pid%/environ}
    [[ $self == *" $pid "* ]] && continue
    if grep -qsz '^SLURM_JOB_ID=' "$f" || grep -qsxE 'slurm(stepd|scriptd|d|ctld|dbd)' "/proc/$pid/comm"; then
      echo "$pid"
    fi
  done
}
alive() { local pid; for pid in "$@"; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }
wait_gone() {  # wait_gone SECONDS PID...: until none of them runs
  local n=$(( $1 * 10 )); shift
  for _ in $(seq "$n"); do alive "$@" || return 0; sleep 0.1; done
  return 1
}

# 1. jobs, through SLURM while its daemons still run
if jobs=$(squeue -h -o %A 2>/dev/null) && [ -n "$jobs" ]; then
  scancel $jobs 2>/dev/null
  for _ in $(seq 100); do [ -z "$(cluster_pids | grep -vxF "$daemons")" ] && break; sleep 0.1; done
fi
# 2. the daemons, newest first
for pid in $daemons; do kill "$pid" 2>/dev/null; done
wait_gone 10 $daemons || for pid in $daemons; do kill -9 "$pid" 2>/dev/null; done
# 3. whatever is left (a step that ignored SIGTERM, a slurmstepd whose slurmd is gone)
left=$(cluster_pids)
if [ -n "$left" ]; then
  kill $left 2>/dev/null
  wait_gone 5 $left || kill -9 $left 2>/dev/null
  wait_gone 5 $left
fi
left=$(cluster_pids; for pid in $daemons; do kill -0 "$pid" 2>/dev/null && echo "$pid"; done)
if [ -n "$left" ]; then
  echo "error: processes of the cluster in $STATE still run: $(echo $left)" >&2
  exit 1
fi
rm -f "$STATE/pids"
echo "SLURM cluster in $STATE stopped"
