"""src/cluster.py and DDP without SLURM: two gloo processes on one machine train one run."""
import json
import os
import subprocess
import sys

from src.cluster import cluster_info
from tests.conftest import ROOT


def test_cluster_info_outside_slurm_has_no_job_and_world_size_one(monkeypatch):
    for var in ("SLURM_JOB_ID", "SLURM_NTASKS", "WORLD_SIZE", "SLURM_JOB_GPUS"):
        monkeypatch.delenv(var, raising=False)
    info = cluster_info()
    assert info["job_id"] is None and info["world_size"] == 1 and info["gpu_type"] is None and info["node"]


def test_two_gloo_processes_train_one_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run([sys.executable, "-m", "src.run", "trainer=ddp", "trainer.num_nodes=1", "trainer.devices=2",
                           "trainer.accelerator=cpu", "debug=fast", "logger=csv", f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["cluster"]["world_size"] == 2 and record["train"]["steps"] == 4
    # tokens over both ranks: 2 x 4 steps of 8 sentences each, at least 2 tokens a sentence
    assert record["train"]["tokens"] >= 2 * 4 * 8 * 2


def test_slurm_jobs_are_sized_per_gpu_type_unless_the_launcher_says():
    from hydra_plugins.archbench_slurm.launcher import job_size
    from omegaconf import OmegaConf

    from tests.conftest import ROOT, compose

    launcher = OmegaConf.load(ROOT / "conf/hydra/launcher/slurm.yaml")
    assert launcher.cpus_per_task is None and launcher.mem_gb is None  # not the local cluster's 1 CPU / 1 GB
    h100 = OmegaConf.to_container(compose("gpu=h100").gpu)
    assert job_size({}, h100) == {"cpus_per_task": 16, "mem_gb": 128}
    assert job_size({"tasks_per_node": 2}, h100) == {"cpus_per_task": 16, "mem_gb": 256}  # --mem is per node
    assert job_size({}, OmegaConf.to_container(compose("gpu=h100", "gpu.cpus_per_gpu=4").gpu))["cpus_per_task"] == 4
    assert job_size({"cpus_per_task": 1, "mem_gb": 1}, h100) == {"cpus_per_task": 1, "mem_gb": 1}  # the test cluster
    assert job_size({}, None) == {"cpus_per_task": 8, "mem_gb": 32}
