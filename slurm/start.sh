#!/usr/bin/env bash
# Start a real single-machine SLURM cluster on localhost: munged, MariaDB, slurmdbd, slurmctld and two slurmd
# nodes (node-h100 with gpu:h100:1, node-a100 with gpu:a100:1; typed GRES whose File= is a mknod char device).
# Partitions: h100, a100 (one node each) and `all` (both nodes, for 2-node DDP).
# All state lives in one directory:  slurm/start.sh [STATE_DIR]   (default $ARCHBENCH_SLURM_DIR or /tmp/archbench-slurm)
# Then:  export SLURM_CONF=STATE_DIR/slurm.conf      Stop:  slurm/stop.sh STATE_DIR  (kills only the recorded PIDs)
# Tested on Debian 12 (SLURM 22.05) as root without systemd; install the packages with slurm/install.sh.
set -euo pipefail
STATE=$(realpath -m "${1:-${ARCHBENCH_SLURM_DIR:-/tmp/archbench-slurm}}")
BASE=${ARCHBENCH_SLURM_PORT:-6817}               # ports BASE..BASE+3 (ctld, 2 slurmd, dbd) and BASE+10 (MariaDB)
CTLD_PORT=$BASE; H100_PORT=$((BASE + 1)); A100_PORT=$((BASE + 2)); DBD_PORT=$((BASE + 3)); DB_PORT=$((BASE + 10))
HOST=$(hostname -s)
NCPU=$(nproc)
for bin in munged mysqld mariadb-install-db slurmdbd slurmctld slurmd sacctmgr; do
  command -v "$bin" >/dev/null || { echo "error: $bin not found; run slurm/install.sh" >&2; exit 2; }
done
if [ -f "$STATE/pids" ]; then echo "error: $STATE/pids exists: a cluster may be running; run slurm/stop.sh $STATE" >&2; exit 2; fi
rm -rf "$STATE"; mkdir -p "$STATE"/{log,munge,ctld,spool,dev,db}
chmod 755 "$STATE" "$STATE/munge"                 # munge refuses a socket dir that is not 755
: > "$STATE/pids"
trap 'status=$?; [ $status = 0 ] || "$(dirname "$0")/stop.sh" "$STATE" >/dev/null; exit $status' EXIT  # no half cluster
started=$(date +%s.%N)

launch() {  # launch NAME LOG CMD...: start CMD in the background, record NAME PID
  local name=$1 log=$2; shift 2
  nohup "$@" >>"$log" 2>&1 </dev/null &
  echo "$name $!" >> "$STATE/pids"
}
alive_or_die() {  # every recorded daemon must still run; else print the tail of its log and exit 1
  local name pid
  while read -r name pid; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "error: $name (pid $pid) died; tail of $STATE/log/$name.log:" >&2
      tail -n 20 "$STATE/log/$name.log" >&2 || true
      exit 1
    fi
  done < "$STATE/pids"
}
wait_for() {  # wait_for WHAT CMD...: retry CMD for up to 30 s
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; alive_or_die; sleep 0.1; done
  echo "error: timed out waiting for $what" >&2; exit 1
}

# munge
dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$STATE/munge/munge.key"
MUNGE_SOCKET=$STATE/munge/munge.socket
launch munged "$STATE/log/munged.log" munged --foreground --force --socket="$MUNGE_SOCKET" \
  --key-file="$STATE/munge/munge.key" --pid-file="$STATE/munge/munged.pid" --seed-file="$STATE/munge/seed" \
  --log-file="$STATE/log/munged.log"
wait_for munged test -S "$MUNGE_SOCKET"

# MariaDB (own data dir, socket and port) with a `slurm` user for localhost and 127.0.0.1
mariadb-install-db --no-defaults --datadir="$STATE/db" --user=root --auth-root-authentication-method=normal \
  --skip-test-db >"$STATE/log/mysqld-install.log" 2>&1
launch mysqld "$STATE/log/mysqld.log" mysqld --no-defaults --datadir="$STATE/db" --socket="$STATE/mysqld.sock" \
  --port="$DB_PORT" --bind-address=127.0.0.1 --user=root --pid-file="$STATE/mysqld.pid" --skip-log-bin
wait_for mysqld mysql --no-defaults -S "$STATE/mysqld.sock" -u root -e "select 1"
mysql --no-defaults -S "$STATE/mysqld.sock" -u root <<SQL
CREATE USER 'slurm'@'localhost' IDENTIFIED BY 'slurm'; CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# fake GPUs: one char device per node
mknod "$STATE/dev/h100" c 1 3; mknod "$STATE/dev/a100" c 1 3

cat > "$STATE/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 "$STATE/slurmdbd.conf"                  # slurmdbd refuses a readable config

cat > "$STATE/slurm.conf" <<CONF
ClusterName=archbench
SlurmctldHost=$HOST
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=256
ReturnToService=2
MinJobAge=600
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/gpu,gres/gpu:h100,gres/gpu:a100
JobAcctGatherType=jobacct_gather/none
NodeName=node-h100 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$H100_PORT CPUs=$NCPU RealMemory=4096 Gres=gpu:h100:1 State=UNKNOWN
NodeName=node-a100 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$A100_PORT CPUs=$NCPU RealMemory=4096 Gres=gpu:a100:1 State=UNKNOWN
PartitionName=h100 Nodes=node-h100 MaxTime=INFINITE State=UP
PartitionName=a100 Nodes=node-a100 MaxTime=INFINITE State=UP
PartitionName=all Nodes=node-h100,node-a100 Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$STATE/gres.conf" <<CONF
NodeName=node-h100 Name=gpu Type=h100 File=$STATE/dev/h100
NodeName=node-a100 Name=gpu Type=a100 File=$STATE/dev/a100
CONF
export SLURM_CONF=$STATE/slurm.conf

launch slurmdbd "$STATE/log/slurmdbd.log" env SLURM_CONF="$SLURM_CONF" slurmdbd -D   # reads slurmdbd.conf next to $SLURM_CONF
wait_for slurmdbd sacctmgr -i add cluster archbench
launch slurmctld "$STATE/log/slurmctld.log" slurmctld -D -i -f "$SLURM_CONF"
wait_for slurmctld scontrol ping
for node in node-h100 node-a100; do
  launch "slurmd-$node" "$STATE/log/slurmd-$node.log" slurmd -D -N "$node" -f "$SLURM_CONF"
done
wait_for "both nodes idle" bash -c '[ "$(sinfo -h -N -p all -o %t | grep -c idle)" = 2 ]'
alive_or_die
echo "$(date +%s.%N) $started" | awk '{printf "SLURM cluster up in %.1f s: %s\n", $1 - $2, "'"$STATE"'"}'
echo "export SLURM_CONF=$SLURM_CONF"
