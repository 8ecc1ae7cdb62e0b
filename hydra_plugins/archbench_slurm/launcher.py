"""Hydra launcher `hydra/launcher=slurm`: hydra-submitit-launcher's SlurmLauncher, but the GPU type is a sweep axis.

The stock launcher builds one executor and submits one `sbatch` array for the whole sweep, with `hydra.launcher.*`
resolved once. Here `launch` (1) composes every sweep point and checks it with `src.config.validate` before anything
is queued (one bad member refuses the sweep, one line each, exit 2); (2) groups the jobs by their `gpu` choice and
submits one array per group with that group's partition / gres / constraint (conf/gpu/<type>.yaml) and its cpus / memory per GPU (`job_size`); (3) with
`wait: false` prints the job ids and the sweep dir and returns at once, else returns the results in job order.
A re-run sweep is a resume (src/sweep.py, as with the local launcher): finished members are not queued again,
unfinished ones are queued into their own run dir, missing ones run.
It must live in the `hydra_plugins` namespace package: Hydra only discovers launchers there.
"""

import copy
import logging
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)
GPU_KEYS = ("partition", "gres", "constraint")  # what conf/gpu/<type>.yaml may set on the launcher
SIZE_KEYS = ("cpus_per_task", "mem_gb")  # sized per GPU type unless hydra.launcher sets them
DEFAULT_CPUS_PER_GPU, DEFAULT_MEM_GB_PER_GPU = 8, 32  # neither the launcher nor the GPU type says


@dataclass
class ArchbenchSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.archbench_slurm.launcher.GpuTypeSlurmLauncher"
    wait: bool = True  # false: return once the arrays are queued (collect results later from the sweep dir)


ConfigStore.instance().store(group="hydra/launcher", name="archbench_slurm", node=ArchbenchSlurmConf,
                             provider="archbench")


def partition_nodes(partition: str | None) -> int | None:
    """Number of nodes in a SLURM partition (None when sinfo is absent or does not know it)."""
    if not shutil.which("sinfo"):
        return None
    args = ["sinfo", "-h", "-o", "%D"] + (["-p", partition] if partition else [])
    out = subprocess.run(args, capture_output=True, text=True).stdout.split()
    return sum(int(n) for n in out) if out else None


def job_size(launcher: dict, gpu: dict | None) -> dict:
    """--cpus-per-task and --mem (GB per node) of a job: hydra.launcher's cpus_per_task / mem_gb when set, else the
    GPU type's cpus_per_gpu (one task per GPU) and mem_gb_per_gpu x tasks_per_node, else 8 CPUs / 32 GB per GPU."""
    gpu = gpu or {}
    tasks = int(launcher.get("tasks_per_node") or 1)
    cpus = launcher.get("cpus_per_task") or gpu.get("cpus_per_gpu") or DEFAULT_CPUS_PER_GPU
    mem = launcher.get("mem_gb") or (gpu.get("mem_gb_per_gpu") or DEFAULT_MEM_GB_PER_GPU) * tasks
    return {"cpus_per_task": int(cpus), "mem_gb": int(mem)}


def requeue_if_interrupted(sweep_dir: Path, job_num: int, run_dir: str | None = None) -> None:
    """`scontrol requeue` this job if its run dir's status.json says `interrupted` (rank 0 only). `run_dir`: the
    dir the sweep plan pinned this member to (a resumed member's dir need not start with its job number)."""
    import json
    import os

    if os.environ.get("SLURM_PROCID", "0") != "0" or "SLURM_JOB_ID" not in os.environ:
        return
    statuses = [Path(run_dir) / "status.json"] if run_dir else sweep_dir.glob(f"{job_num}_*/status.json")
    for status in (s for s in statuses if s.exists()):
        if json.loads(status.read_text()).get("state") == "interrupted":
            array = os.environ.get("SLURM_ARRAY_JOB_ID")
            job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
            log.info(f"run {status.parent} interrupted: requeueing job {job}")
            subprocess.run(["scontrol", "requeue", job], check=False)


class GpuTypeSlurmLauncher(SlurmLauncher):
    def __init__(self, wait: bool = True, **params: Any) -> None:
        super().__init__(**params)
        self.wait = wait
        self.run_dirs: dict[int, str] = {}  # job num -> the run dir the sweep plan pinned it to (src/sweep.py)

    def __call__(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state) -> JobReturn:
        """Run one member in its SLURM job; requeue the job when the run stopped `interrupted` (signal: checkpoint,
        exit). The requeued job re-runs the same member into the same run dir, where the pipeline resumes."""
        try:
            return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        finally:
            requeue_if_interrupted(Path(str(self.config.hydra.sweep.dir)), job_num, self.run_dirs.get(job_num))

    def check_sweep(self, job_overrides: Sequence[Sequence[str]]) -> list:
        """Compose and validate every member; the resources of each (None: launcher defaults). Exit 2 if any is bad."""
        from src.config import validate
        from src.errors import refuse

        errors, resources = [], []
        for idx, overrides in enumerate(job_overrides):
            label = " ".join(filter_overrides(overrides))
            try:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                HydraConfig.instance().set_config(cfg)  # ${hydra:...} resolves as in the job
                job_cfg = copy.deepcopy(cfg)
                with read_write(job_cfg), open_dict(job_cfg):
                    del job_cfg["hydra"]  # what the job's task function gets
                validate(job_cfg)
                gpu = OmegaConf.to_container(cfg.gpu) if cfg.get("gpu") else None
                res = {**{k: self.params.get(k) for k in GPU_KEYS}, **{k: gpu[k] for k in GPU_KEYS if gpu and gpu.get(k)}}
                res.update(job_size(self.params, gpu))
                res["gpu_type"] = gpu["name"] if gpu else None
                self._check_nodes(cfg, res)
                resources.append(res)
            except Exception as e:  # noqa: BLE001 -- any failure to compose is a bad member
                errors.append(f"sweep member #{idx} ({label}): {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        HydraConfig.instance().set_config(self.config)
        if errors:
            refuse("\n".join(errors + [f"{len(errors)} of {len(job_overrides)} sweep members are invalid; "
                                       "nothing was queued"]))
        return resources

    def _check_nodes(self, cfg, res: dict) -> None:
        from src.config import ConfigError

        nodes, tasks = int(self.params.get("nodes", 1)), int(self.params.get("tasks_per_node", 1))
        have = partition_nodes(res["partition"])
        if have is not None and nodes > have:
            raise ConfigError(f"hydra.launcher.nodes={nodes} but partition={res['partition'] or '(default)'} has "
                              f"{have} node(s); choose nodes<={have} or a larger partition")
        trainer = cfg.trainer
        if nodes * tasks > 1 and (trainer.get("num_nodes", 1) != nodes or trainer.get("devices", 1) != tasks):
            raise ConfigError(f"trainer.num_nodes={trainer.get('num_nodes', 1)} trainer.devices={trainer.get('devices', 1)}"
                              f" must equal hydra.launcher.nodes={nodes} tasks_per_node={tasks} (use trainer=ddp)")

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:

        from src import sweep

        assert self.config is not None and len(job_overrides) > 0
        resources = self.check_sweep(job_overrides)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        plan = sweep.plan(sweep_dir, job_overrides, initial_job_idx, lambda o, num: sweep.compose(
            self.hydra_context.config_loader, self.config, o, num, job_id=f"job_id_for_{num}"))
        print(sweep.report(sweep_dir, plan), flush=True)  # done members are not queued again
        self.run_dirs = {m.num: str(m.run_dir) for m in plan if m.pinned}
        groups: dict = {}
        for i, res in enumerate(resources):
            if plan[i].state != "done":
                groups.setdefault(tuple(res[k] for k in GPU_KEYS + SIZE_KEYS), []).append(i)

        jobs = [None] * len(job_overrides)
        for key, members in groups.items():
            executor = self._executor(dict(zip(GPU_KEYS + SIZE_KEYS, key)))
            params = []
            for i in members:
                log.info(f"\t#{plan[i].num} : {plan[i].label}")
                params.append((plan[i].overrides, "hydra.sweep.dir", plan[i].num, f"job_id_for_{plan[i].num}",
                               Singleton.get_state()))
            queued = executor.map_array(self, *zip(*params))
            for i, job in zip(members, queued):
                jobs[i] = job
            gpu = resources[members[0]]["gpu_type"] or "default"
            print(f"queued {len(members)} job(s) for gpu={gpu} partition={key[0] or '(default)'}: "
                  f"{' '.join(j.job_id for j in queued)}", flush=True)
        print(f"sweep dir: {sweep_dir}")
        if not self.wait:
            return [sweep.done_return(m) if m.state == "done" else
                    JobReturn(overrides=list(m.overrides), status=JobStatus.COMPLETED, _return_value=None)
                    for m in plan]
        return [sweep.done_return(m) if m.state == "done" else j.results()[0] for m, j in zip(plan, jobs)]

    def _executor(self, gpu_params: dict):
        """A submitit executor with the launcher's parameters, this GPU type's partition/gres/constraint and size."""
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        params = {**self.params, **gpu_params}
        executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()
                                      if v is not None or k in base})
        return executor
