"""Sweeps on the real local SLURM cluster (slurm/start.sh): GPU type as a sweep axis, validation before launch,
failures recorded per member, submit-and-exit, 2-node DDP, and resume after USR1 / USR2 / `scontrol requeue`.

One cluster per test session (started once; at the end every process it started, job steps included, is stopped and
checked gone, even when a test fails). Ports: ARCHBENCH_SLURM_PORT (default 7817) + 100 per xdist worker. Skipped
only when the SLURM binaries are absent (CI installs them: slurm/install.sh).
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
# the local cluster's small nodes (2 CPUs, 4 GB): the GPU types' per-GPU cpus / memory would never fit
LOCAL = ("hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1")
SLURM_DAEMONS = {"slurmstepd", "slurmscriptd", "slurmd", "slurmctld", "slurmdbd"}


def cluster_processes(state: Path) -> list[str]:
    """Live processes of the cluster in `state`: its recorded daemons, and every process whose environment names its
    slurm.conf and that is a job's (SLURM_JOB_ID) or a SLURM daemon (slurmstepd is reparented to init: no tree)."""
    conf = f"SLURM_CONF={state / 'slurm.conf'}".encode()
    recorded = set((state / "pids").read_text().split()[1::2]) if (state / "pids").exists() else set()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            comm = (proc / "comm").read_text().strip()
        except OSError:
            continue
        if proc.name in recorded or (conf in env and (comm in SLURM_DAEMONS or any(e.startswith(b"SLURM_JOB_ID=")
                                                                                   for e in env))):
            found.append(f"{proc.name} {comm}")
    return found


def start_cluster(state: Path, port: int) -> dict:
    env = {**os.environ, "ARCHBENCH_SLURM_PORT": str(port)}
    started = subprocess.run(["bash", str(ROOT / "slurm/start.sh"), str(state)], env=env, capture_output=True,
                             text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    return {**env, "SLURM_CONF": str(state / "slurm.conf")}


def stop_cluster(state: Path) -> subprocess.CompletedProcess:
    stopped = subprocess.run(["bash", str(ROOT / "slurm/stop.sh"), str(state)], capture_output=True, text=True,
                             timeout=120)
    left = cluster_processes(state)
    assert not left, f"processes of the cluster left after slurm/stop.sh: {left}; {stopped.stderr}"
    return stopped


def port_base() -> int:
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    return int(os.environ.get("ARCHBENCH_SLURM_PORT", 7817)) + 100 * worker


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    try:
        yield start_cluster(state, port_base())
    finally:
        stop_cluster(state)


def test_stop_ends_every_process_the_cluster_started_job_steps_included(tmp_path_factory):
    """Jobs still running at stop: a batch script, a job step (srun) that ignores SIGTERM, and their slurmstepds."""
    state = tmp_path_factory.mktemp("stop")  # short: slurmstepd's socket path in the spool dir must fit sun_path
    try:
        env = start_cluster(state, port_base() + 50)
        for partition, script in [("h100", "srun bash -c 'trap \"\" TERM; sleep 300'"), ("a100", "sleep 300")]:
            subprocess.run(["sbatch", "-p", partition, "-o", str(state / "job-%j.out"), "--wrap", script], env=env, check=True, capture_output=True)
        deadline = time.time() + 60
        while sum(p.endswith("sleep") for p in cluster_processes(state)) < 2:
            assert time.time() < deadline, f"the jobs did not start: {cluster_processes(state)}"
            time.sleep(0.2)
        running = cluster_processes(state)
        assert sum(p.endswith("slurmstepd") for p in running) >= 3, running  # 2 batch steps + the srun step
    finally:
        stopped = stop_cluster(state)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr


def multirun(env, sweep_dir, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "src.run", "-m", "hydra/launcher=slurm", f"hydra.sweep.dir={sweep_dir}",
                           *LOCAL, *args], cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"},
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


STEPS = 300  # ~5 s of training on a quiet machine: an interrupt at the first checkpoint lands well inside it


def _interrupted_run(cluster, tmp_path, interrupts):
    """One run interrupted once per (how, when) in turn, each once `when` holds in the job's current segment
    (training: its first checkpoint exists; after_training: its test row is in metrics.csv, during a long inference
    timing); how: USR1 / USR2 (`scancel -s`: to the job steps, as SLURM does on preemption) or requeue (`scontrol
    requeue`: no warning beyond SIGTERM). Returns its results.json, status.json and run dir once the last requeue
    finished it."""
    queued = multirun(cluster, tmp_path, "hydra.launcher.wait=false", "arch=encdec", *FAST,
                      f"trainer.max_steps={STEPS}", "checkpoint_every_n_steps=10", "trainer.val_check_interval=20",
                      "bench.repeats=50")
    assert queued.returncode == 0, queued.stderr[-2000:]
    (job,) = [line.split(": ")[1].split()[0] for line in queued.stdout.splitlines() if line.startswith("queued")]

    def ready(when):
        if when == "training":
            return list(tmp_path.glob("*/checkpoints/*.ckpt"))
        # the header line names test/loss once the test row is written (the file may be empty while it is created)
        return any("test/loss" in (p.read_text().splitlines() or [""])[0] for p in tmp_path.glob("*/csv/metrics.csv"))

    for how, when in interrupts:
        deadline = time.time() + 180
        while not ready(when):
            assert time.time() < deadline, f"not {when} within 180 s"
            assert not results(tmp_path), "the run finished before it was interrupted"
            time.sleep(0.1)
        cmd = ["scontrol", "requeue", job] if how == "requeue" else ["scancel", "-s", how, job]
        subprocess.run(cmd, env=cluster, check=True)
    deadline = time.time() + 300
    while not results(tmp_path):
        assert time.time() < deadline, "the requeued run did not finish"
        time.sleep(1)
    (run_dir,) = [p.parent for p in tmp_path.glob("*/results.json")]
    return json.loads((run_dir / "results.json").read_text()), json.loads((run_dir / "status.json").read_text()), run_dir


def uninterrupted_rows(steps: int, val_every: int) -> list[tuple[int, str]]:
    """metrics.csv's (step, kind) rows of an uninterrupted run with trainer.log_every_n_steps=1: a train row per
    step (Lightning logs the step before its increment: 0..steps-1), a val row after every `val_every`-th, the test row
    at the last step."""
    rows = []
    for step in range(steps):
        rows.append((step, "train"))
        if (step + 1) % val_every == 0:
            rows.append((step, "val"))
    return rows + [(steps, "test")]


def _assert_resumed(record, run_dir):
    assert record["train"]["steps"] == STEPS and record["train"]["segments"] >= 2
    with open(run_dir / "csv/metrics.csv") as f:
        rows = [(int(r["step"]), "test" if r.get("test/loss") else "val" if r.get("val/loss") else "train")
                for r in csv.DictReader(f)]
    # each row once, in order, nothing lost: the history of one uninterrupted run
    assert rows == uninterrupted_rows(STEPS, 20), [r for r in rows if rows.count(r) > 1 or r not in uninterrupted_rows(STEPS, 20)]


@pytest.mark.parametrize("first,second", [("USR1", "USR2"), ("requeue", "requeue")])
def test_preempted_run_resumes_in_the_same_run_dir(cluster, tmp_path, first, second):
    """Interrupted while training, then again after training (its test row written, during the inference timing):
    each time requeued into the same run dir, which ends with the rows of one uninterrupted run."""
    record, status, run_dir = _interrupted_run(cluster, tmp_path, [(first, "training"), (second, "after_training")])
    assert status["state"] == "finished"
    _assert_resumed(record, run_dir)


def test_a_rerun_sweep_on_slurm_queues_only_the_unfinished_members(cluster, tmp_path):
    """Member seed=0 finished and seed=1 interrupted (local launcher: same configs, same run_keys); the re-run on
    SLURM in another order queues seed=1 into its own dir (resumes) and seed=2 (new), and not seed=0."""
    from tests.e2e.test_reliability import digest
    from tests.e2e.test_sweep import SWEEP, _interrupt_member

    from tests.conftest import run_cli

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
