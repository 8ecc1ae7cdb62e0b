"""The run directory under concurrency and kills (src/run_dir.py): one process at a time holds it (a second refuses
at once, a requeued job waits, a killed holder leaves no lock), checkpoints are written atomically in the run dir
(a kill mid-save or a truncated last.ckpt costs at most one checkpoint), and a run SIGKILLed anywhere resumes to the
same test metrics as an uninterrupted one. Real `python -m src.run` processes, no mocks."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from tests.e2e.test_reliability import assert_refused, digest

# debug=fast on the tiny model, test and inference timing cut to a few sentences
TINY = ("debug=fast", "logger=csv", "size=tiny", "bench.batch_sizes=[1]", "bench.repeats=1",
        "bench.latency_sentences=1", "bench.fixed_tokens=4", "data.limit.test=8", "samples=1", "progress_every_s=0")
SHORT = (*TINY, "trainer.max_steps=30", "checkpoint_every_n_steps=5", "trainer.val_check_interval=10")


def start(run_dir: Path, *overrides: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "src.run", *overrides, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_until(proc: subprocess.Popen, ready, timeout: float = 300, poll: float = 0.05) -> None:
    """Until ready() (a condition on the run dir's files); fails if the run ends first."""
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (rc {proc.returncode}) before it got there: {err[-2000:]}")
        assert time.time() < deadline, "the run did not get there in time"
        time.sleep(poll)


def mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def stage_is(run_dir: Path, stage: str):
    """A condition: status.json names `stage`, written by the process started now (a resumed run's status.json
    still names the stage its previous process was killed in until the new one rewrites it)."""
    before = mtime_ns(run_dir / "status.json")
    return lambda: mtime_ns(run_dir / "status.json") != before and status(run_dir).get("stage") == stage


def training(run_dir: Path):
    return stage_is(run_dir, "train")


def finished_ok(out: subprocess.CompletedProcess | tuple, run_dir: Path, steps: int) -> dict:
    rc, err = (out.returncode, out.stderr) if hasattr(out, "returncode") else out
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err
    record = json.loads((run_dir / "results.json").read_text())
    assert record["train"]["steps"] == steps and status(run_dir)["state"] == "finished"
    return record


def test_a_second_run_in_a_running_dir_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path):
    run_dir = tmp_path / "run"
    first = start(run_dir, *SHORT)
    wait_until(first, training(run_dir))
    first.send_signal(signal.SIGSTOP)  # the first holds the lock and writes nothing while the second tries
    try:
        before = digest(run_dir)
        second = run_cli(*SHORT, f"hydra.run.dir={run_dir}", timeout=120)
        after = digest(run_dir)
    finally:
        first.send_signal(signal.SIGCONT)
    line = assert_refused(second, f"PID {first.pid}", "in use by another run", "choose another hydra.run.dir")
    assert "waiting" not in second.stderr  # refused at once
    assert after == before  # nothing of its own: no .hydra/, run.log, status or checkpoint written
    out, err = first.communicate(timeout=300)
    record = finished_ok((first.returncode, err), run_dir, 30)
    assert record["train"]["segments"] == 1
    log = (run_dir / "run.log").read_text()
    assert log.count(f"· run dir {run_dir}") == 1 and line not in log  # one run wrote it
    assert (run_dir / "run.lock").read_text().split()[0] == str(first.pid)

    # SIGKILL of the holder: the kernel drops the lock, the same command resumes at once
    killed_dir = tmp_path / "killed"
    holder = start(killed_dir, *SHORT)
    wait_until(holder, lambda: (killed_dir / "checkpoints" / "last.ckpt").exists())
    holder.kill()
    holder.communicate(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    resumed = run_cli(*SHORT, f"hydra.run.dir={killed_dir}", timeout=300)
    assert finished_ok(resumed, killed_dir, 30)["train"]["segments"] == 2


def test_a_requeued_job_waits_for_its_previous_process_to_save(tmp_path):
    """SLURM_RESTART_COUNT > 0: the previous process may still be saving its checkpoint; wait, then resume."""
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    previous = start(run_dir, *SHORT)
    wait_until(previous, training(run_dir))
    previous.send_signal(signal.SIGSTOP)
    requeued = subprocess.Popen([sys.executable, "-m", "src.run", *SHORT, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**env, "SLURM_RESTART_COUNT": "1"})
    waiting = requeued.stderr.readline()  # its first line: it found the lock held and waits (bounded)
    assert f"locked by PID {previous.pid}" in waiting and "waiting up to 300 s" in waiting, waiting
    previous.send_signal(signal.SIGTERM)  # the scheduler's stop: the previous process saves and exits
    previous.send_signal(signal.SIGCONT)
    previous.communicate(timeout=120)
    assert previous.returncode == 143
    out, err = requeued.communicate(timeout=300)
    record = finished_ok((requeued.returncode, err), run_dir, 30)
    assert record["train"]["segments"] == 2


def _interrupted(run_dir: Path) -> None:
    """A run stopped by SIGTERM after its second periodic save: last.ckpt and prev.ckpt, no results."""
    proc = start(run_dir, *SHORT)
    wait_until(proc, lambda: (run_dir / "checkpoints" / "prev.ckpt").exists(), poll=0.005)
    proc.send_signal(signal.SIGSTOP)  # still training (step 10 of 30): the signal lands in a training step
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} - {"best.ckpt"} == {"last.ckpt", "prev.ckpt"}


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_checkpoint_falls_back_to_the_previous_one_and_none_readable_exits_2(tmp_path):
    run_dir, hopeless = tmp_path / "run", tmp_path / "hopeless"
    _interrupted(run_dir)
    shutil.copytree(run_dir, hopeless)

    truncate(hopeless / "checkpoints" / "last.ckpt")
    (hopeless / "checkpoints" / "prev.ckpt").write_bytes(b"")  # a full disk
    before = digest(hopeless)
    out = run_cli(*SHORT, f"hydra.run.dir={hopeless}", timeout=120)
    line = assert_refused(out, f"{hopeless / 'checkpoints' / 'last.ckpt'} is unreadable", "prev.ckpt",
                          f"delete {hopeless / 'checkpoints'} to start this run over", "another hydra.run.dir")
    assert digest(hopeless) == before, line  # refused, nothing touched

    truncate(run_dir / "checkpoints" / "last.ckpt")
    out = run_cli(*SHORT, f"hydra.run.dir={run_dir}", timeout=300)
    finished_ok(out, run_dir, 30)
    said = [ln for ln in (out.stdout + out.stderr).splitlines() if "unreadable" in ln]
    assert len(said) == 1 and f"{run_dir / 'checkpoints' / 'last.ckpt'} is unreadable" in said[0], said
    assert f"resuming from the previous one, {run_dir / 'checkpoints' / 'prev.ckpt'}" in said[0]
    names = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert names == {"best.ckpt", "last.ckpt", "prev.ckpt", "last.ckpt.unreadable"}, names  # the bad one kept aside


# ~10M parameters (120 MB with Adam's moments): a save takes a good fraction of a second; a short step
BIG = ("debug=fast", "logger=csv", "size.d_model=256", "size.d_ff=4096", "data.batch_size=2", "data.limit.test=4",
       "bench.batch_sizes=[1]", "bench.repeats=1", "bench.latency_sentences=1", "bench.fixed_tokens=4", "samples=1",
       "trainer.max_steps=24", "checkpoint_every_n_steps=4", "trainer.val_check_interval=100", "progress_every_s=0")


def _incomplete(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is not None
    except (OSError, zipfile.BadZipFile):
        return True


def _kill_mid_save(run_dir: Path, env: dict) -> bool:
    """Start (or resume) the run; once it holds a complete checkpoint, SIGKILL it as soon as a checkpoint file in
    the run dir is being written. True if the kill left a partial file (it hit the save)."""
    ckpts = run_dir / "checkpoints"
    trains = training(run_dir)
    proc = start(run_dir, *BIG, env=env)
    wait_until(proc, lambda: trains() and (ckpts / "last.ckpt").exists() and not _incomplete(ckpts / "last.ckpt"),
               poll=0.01)

    def sizes():
        try:
            return {p.name: p.stat().st_size for p in ckpts.iterdir()}
        except OSError:
            return {}

    seen = sizes()
    while proc.poll() is None:
        now = sizes()
        if any(n.endswith(".tmp") and n not in seen for n in now) or now.get("last.ckpt") != seen["last.ckpt"]:
            proc.kill()  # a new temp file (written beside last.ckpt), or last.ckpt rewritten in place
            break
        time.sleep(0.002)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before a save was caught"
    return any(_incomplete(p) for p in ckpts.iterdir() if p.is_file())


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_checkpoint_save_resumes(tmp_path):
    """$TMPDIR on another filesystem (tmpfs), as a cluster's node-local disk is: the save must not go through it."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the run dir")
    tmpdir = shm / f"archbench-test-{os.getpid()}"
    tmpdir.mkdir()
    try:
        env = {"TMPDIR": str(tmpdir)}
        run_dir = tmp_path / "run"
        hits = [_kill_mid_save(run_dir, env) for _ in range(3)]  # three saves a kill lands in
        assert any(hits), "no kill landed inside a save"
        out = subprocess.run([sys.executable, "-m", "src.run", *BIG, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                             capture_output=True, text=True, timeout=600, env={**os.environ, **env})
        finished_ok(out, run_dir, 24)
        assert "unreadable" not in out.stdout + out.stderr  # the kills cost no checkpoint: last.ckpt stayed whole
        assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"last.ckpt", "prev.ckpt"}  # temp files gone
        big = [p for p in tmpdir.rglob("*") if p.is_file() and p.stat().st_size > 1 << 20]
        assert not big, f"checkpoint data went through $TMPDIR: {big}"
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# Kill anywhere: the stages a kill is aimed at, each seen in status.json ("stage") or in the checkpoint dir (a save)
KILL = (*TINY, "trainer.max_steps=60", "checkpoint_every_n_steps=4", "trainer.val_check_interval=8")
TRAINING_STAGES = ["train", "save", "save", "validation"]
AFTER_TRAINING = ["test", "inference"]


@pytest.mark.slow
def test_a_run_killed_anywhere_resumes_to_the_same_test_metrics(tmp_path):
    """6 SIGKILLs at seeded random moments, each stage once and a save twice (the training kills first: a kill in
    the test stage comes after the last step), a resume after each; the run ends exactly as an uninterrupted one."""
    whole = run_cli(*KILL, f"hydra.run.dir={tmp_path / 'whole'}", timeout=600)
    reference = finished_ok(whole, tmp_path / "whole", 60)
    wall = reference["wall_seconds"]  # this machine's stage durations, to draw the kill moments in
    delay = {"train": wall["fit"] / 4, "validation": 0.0, "test": wall["test"] / 2, "inference": wall["bench"] / 2}
    rng = random.Random(15)
    plan = rng.sample(TRAINING_STAGES, len(TRAINING_STAGES)) + rng.sample(AFTER_TRAINING, len(AFTER_TRAINING))
    run_dir, ckpts = tmp_path / "cut", tmp_path / "cut" / "checkpoints"
    landed = []
    for aim in plan:
        ready = stage_is(run_dir, "train" if aim == "save" else aim)
        temps = set(ckpts.glob(".*.tmp")) if ckpts.is_dir() else set()
        proc = start(run_dir, *KILL)
        wait_until(proc, ready, poll=0.002)
        if aim == "save":  # a temp file of this process: a save under way
            wait_until(proc, lambda: bool(set(ckpts.glob(".*.tmp")) - temps), poll=0.001)
        else:
            time.sleep(rng.uniform(0, delay[aim]))
        proc.kill()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, f"the run ended by itself (rc {proc.returncode}): {err[-2000:]}"
        assert "Traceback" not in err, err[-3000:]
        left = status(run_dir)
        landed.append((aim, left.get("stage"), left.get("step"), bool(set(ckpts.glob(".*.tmp")) - temps)))
    print("kills (aimed at, stage in status.json, step, a save cut short):", *landed, sep="\n  ")
    out = run_cli(*KILL, f"hydra.run.dir={run_dir}", timeout=600)  # the last resume, not killed
    record = finished_ok(out, run_dir, 60)
    assert record["metrics"] == reference["metrics"]  # the same model at the end: test/loss to the last bit
    assert record["train"]["tokens"] == reference["train"]["tokens"]
    assert {p.name for p in ckpts.iterdir()} == {"best.ckpt", "last.ckpt", "prev.ckpt"}


def test_last_checkpoint_holds_the_final_weights(tmp_path):
    """max_steps not a multiple of checkpoint_every_n_steps: the periodic save (step 5) is older, yet last.ckpt holds
    the final step, which eval, translate and a distillation teacher load."""
    import torch

    from tests.conftest import run_main

    run_dir = tmp_path / "run"
    run_main(run_dir, *TINY, "trainer.max_steps=7", "checkpoint_every_n_steps=5", "select_best=false")
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 7
