"""Where a run ran: the SLURM job (ids, node, requested GPU type) and the data-parallel world size.

Read from the environment SLURM gives every job step (https://slurm.schedmd.com/sbatch.html#SECTION_OUTPUT-ENVIRONMENT-VARIABLES)
and from the composed config's `gpu` group; written as results.json's `record["cluster"]`.
"""
from __future__ import annotations

import os
import platform


def cluster_info(cfg=None, world_size: int | None = None) -> dict:
    env = os.environ
    gpu = cfg.get("gpu") if cfg is not None else None
    return {
        "gpu_type": gpu.name if gpu else None,  # requested; the device actually used is record["device"]
        "job_id": env.get("SLURM_JOB_ID"),
        "array_job_id": env.get("SLURM_ARRAY_JOB_ID"),
        "array_task_id": env.get("SLURM_ARRAY_TASK_ID"),
        "node": env.get("SLURMD_NODENAME") or platform.node(),
        "world_size": world_size or int(env.get("SLURM_NTASKS") or env.get("WORLD_SIZE") or 1),
        "job_gpus": env.get("SLURM_JOB_GPUS"),  # GRES indices SLURM allocated (None outside SLURM)
        "partition": env.get("SLURM_JOB_PARTITION"),
    }
