"""Sweeps on the real local SLURM cluster (slurm/start.sh): GPU type as a sweep axis, validation before launch,
failures recorded per member, submit-and-exit, 2-node DDP, and resume after USR1 / USR2 / `scontrol requeue`.

One cluster per test session (started once, every daemon stopped at the end even when a test fails). Skipped only
when the SLURM binaries are absent (CI installs them: slurm/install.sh).
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm"),
              pytest.mark.skipif(not all(shutil.which(b) for b in ("slurmctld", "slurmd", "slurmdbd", "munged", "mysqld")),
                                 reason="SLURM binaries absent: install them with slurm/install.sh (root, Debian 12)")]
FAST = ("debug=fast", "logger=csv")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    env = {**os.environ, "ARCHBENCH_SLURM_PORT": os.environ.get("ARCHBENCH_SLURM_PORT") or str(7817 + 100 * worker)}
    try:
        started = subprocess.run(["bash", str(ROOT / "slurm/start.sh"), str(state)], env=env, capture_output=True,
                                 text=True, timeout=120)
        assert started.returncode == 0, started.stderr
        env["SLURM_CONF"] = str(state / "slurm.conf")
        yield env
    finally:
        subprocess.run(["bash", str(ROOT / "slurm/stop.sh"), str(state)], capture_output=True, timeout=60)


def multirun(env, sweep_dir, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "src.run", "-m", "hydra/launcher=slurm", f"hydra.sweep.dir={sweep_dir}",
                           *args], cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"},
                          capture_output=True, text=True, timeout=timeout)


def sacct(env, job, fields):
    """sacct's line for one job (it lags 1-2 s after the job ends, so retry)."""
    for _ in range(50):
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", fields], env=env, capture_output=True,
                             text=True).stdout.strip()
        if out and "RUNNING" not in out and "PENDING" not in out:
            return out.splitlines()[0].split("|")
        time.sleep(0.5)
    raise AssertionError(f"sacct has no final line for job {job}")


def results(sweep_dir):
    return {p.parent.name: json.loads(p.read_text()) for p in Path(sweep_dir).glob("*/results.json")}


def test_each_gpu_type_runs_on_its_partition_and_gres(cluster, tmp_path):
    done = multirun(cluster, tmp_path, "gpu=h100,a100", "arch=encdec,nar", *FAST)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = results(tmp_path)
    assert len(runs) == 4
    for name, record in runs.items():
        c = record["cluster"]
        gpu = name.split("_")[1]  # hydra.sweep.subdir holds the GPU type
        assert c["gpu_type"] == gpu and c["node"] == f"node-{gpu}" and c["job_gpus"] is not None, c
        partition, tres, nodes, state = sacct(cluster, c["job_id"], "Partition,AllocTRES,NodeList,State")
        print(c["array_job_id"], c["array_task_id"], partition, tres, nodes, state)
        assert partition == gpu and f"gres/gpu:{gpu}=1" in tres and nodes == f"node-{gpu}" and state == "COMPLETED"
    # one array per GPU type
    assert len({r["cluster"]["array_job_id"] for r in runs.values()}) == 2


def test_one_invalid_member_queues_nothing(cluster, tmp_path):
    before = subprocess.run(["sacct", "-X", "-n", "-o", "JobID"], env=cluster, capture_output=True, text=True).stdout
    refused = multirun(cluster, tmp_path, "arch=encdec,encoder", "task=translation", *FAST)
    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert any("arch=encoder" in line and "#1" in line for line in errors), refused.stderr
    assert "Traceback" not in refused.stderr and "queued" not in refused.stdout
    after = subprocess.run(["sacct", "-X", "-n", "-o", "JobID"], env=cluster, capture_output=True, text=True).stdout
    assert after == before and not (tmp_path / ".submitit").exists()


def test_a_failing_member_is_recorded_while_the_others_complete(cluster, tmp_path):
    # lr=-1: passes validate() but AdamW raises in training (inside the job)
    multirun(cluster, tmp_path, "optim.lr=0.002,-1.0", *FAST)
    dirs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(dirs) == 2
    assert (dirs[0] / "results.json").exists() and not (dirs[1] / "results.json").exists()
    status = json.loads((dirs[1] / "status.json").read_text())
    assert status["state"] == "failed" and "learning rate" in status["error"].lower()


def test_submit_and_exit_returns_before_the_jobs_finish(cluster, tmp_path):
    queued = multirun(cluster, tmp_path, "hydra.launcher.wait=false", "arch=encdec", *FAST)
    assert queued.returncode == 0, queued.stderr[-2000:]
    ids = [line.split(": ")[1].split() for line in queued.stdout.splitlines() if line.startswith("queued")][0]
    assert f"sweep dir: {tmp_path}" in queued.stdout
    pending = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i"], env=cluster, capture_output=True,
                             text=True).stdout.split()
    assert pending and not results(tmp_path)  # still queued or running: nothing finished yet
    subprocess.run(["scancel", *ids], env=cluster)


def test_two_node_ddp_trains_one_run_with_world_size_two(cluster, tmp_path):
    done = multirun(cluster, tmp_path, "hydra.launcher.partition=all", "hydra.launcher.nodes=2", "trainer=ddp",
                    "arch=encdec", *FAST, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = results(tmp_path).values()
    assert record["cluster"]["world_size"] == 2 and record["train"]["steps"] == 4 and record["train"]["tokens"] > 0
    nodes = sacct(cluster, record["cluster"]["job_id"], "NodeList")[0]
    assert nodes == "node-a100,node-h100"


def test_multi_node_request_on_a_one_node_partition_is_refused(cluster, tmp_path):
    refused = multirun(cluster, tmp_path, "hydra.launcher.nodes=2", "trainer=ddp", "gpu=h100", *FAST)
    assert refused.returncode == 2 and "partition=h100 has 1 node" in refused.stderr, refused.stderr


def _interrupted_run(cluster, tmp_path, interrupt):
    """A run long enough to interrupt once it has a checkpoint; returns its results.json and status.json."""
    queued = multirun(cluster, tmp_path, "hydra.launcher.wait=false", "arch=encdec", *FAST, "trainer.max_steps=60",
                      "checkpoint_every_n_steps=10", "trainer.val_check_interval=20")
    assert queued.returncode == 0, queued.stderr[-2000:]
    (job,) = [line.split(": ")[1].split()[0] for line in queued.stdout.splitlines() if line.startswith("queued")]
    deadline = time.time() + 120
    while not list(tmp_path.glob("*/checkpoints/*.ckpt")):
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.5)
    interrupt(job)
    deadline = time.time() + 240
    while not results(tmp_path):
        assert time.time() < deadline, "the requeued run did not finish"
        time.sleep(1)
    (run_dir,) = [p.parent for p in tmp_path.glob("*/results.json")]
    return json.loads((run_dir / "results.json").read_text()), json.loads((run_dir / "status.json").read_text()), run_dir


def _assert_resumed(record, run_dir):
    assert record["train"]["steps"] == 60 and record["train"]["segments"] >= 2
    with open(run_dir / "csv/metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("step")]
    assert steps == sorted(steps) and steps[-1] >= 59  # appended, continuous


@pytest.mark.parametrize("how", ["USR1", "USR2", "requeue"])
def test_preempted_run_resumes_in_the_same_run_dir(cluster, tmp_path, how):
    def interrupt(job):
        # scancel -s: to the job steps, as SLURM does on preemption; scontrol requeue: no warning beyond SIGTERM
        cmd = ["scontrol", "requeue", job] if how == "requeue" else ["scancel", "-s", how, job]
        subprocess.run(cmd, env=cluster, check=True)

    record, status, run_dir = _interrupted_run(cluster, tmp_path, interrupt)
    assert status["state"] == "finished"
    _assert_resumed(record, run_dir)


def test_a_rerun_sweep_on_slurm_queues_only_the_unfinished_members(cluster, tmp_path):
    """Member seed=0 finished and seed=1 interrupted (local launcher: same configs, same run_keys); the re-run on
    SLURM in another order queues seed=1 into its own dir (resumes) and seed=2 (new), and not seed=0."""
    from tests.test_reliability import digest
    from tests.test_sweep import SWEEP, _interrupt_member

    from .conftest import run_cli

    first = run_cli("-m", "seed=0", *SWEEP, f"hydra.sweep.dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-2000:]
    (done_dir,) = tmp_path.glob("*_s0")
    cut_dir = _interrupt_member(tmp_path, 1)
    finished, before = digest(done_dir), {p for p in tmp_path.iterdir() if p.is_dir()}
    rerun = multirun(cluster, tmp_path, "seed=2,1,0", *SWEEP, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"sweep {tmp_path}: 1 done, 1 resumed, 1 new" in rerun.stdout.splitlines()
    assert [line for line in rerun.stdout.splitlines() if line.startswith("queued")][0].startswith("queued 2 job(s)")
    assert digest(done_dir) == finished
    resumed = json.loads((cut_dir / "results.json").read_text())
    assert resumed["train"]["segments"] == 2 and resumed["train"]["steps"] == 60 and resumed["cluster"]["job_id"]
    (new_dir,) = {p for p in tmp_path.iterdir() if p.is_dir()} - before - {tmp_path / ".submitit"}
    assert new_dir.name.endswith("_s2") and (new_dir / "results.json").exists()
