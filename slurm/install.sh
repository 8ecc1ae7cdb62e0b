#!/usr/bin/env bash
# Install the packages the local SLURM cluster needs (Debian 12, root): SLURM 22.05, munge, slurmdbd + MariaDB.
# Idempotent and quiet: does nothing when the binaries are already there.
set -euo pipefail
need=()
for bin in slurmctld slurmd slurmdbd munged mysqld sbatch; do command -v "$bin" >/dev/null || need+=("$bin"); done
[ ${#need[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends slurm-wlm munge mariadb-server slurmdbd >/dev/null
