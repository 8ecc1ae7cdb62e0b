"""Runs never lie and never lose work: every bad case ends with its exit code and one line, without a traceback,
and leaves a finished run's files byte-identical; a signal saves a checkpoint the same command resumes from."""
import csv
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

FAST = ("debug=fast", "logger=csv")


def digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run beside the bad ones: no bad case may touch it."""
    run_dir = tmp_path_factory.mktemp("runs") / "finished"
    out = run_cli(*FAST, f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr[-2000:]
    return run_dir, digest(run_dir)


def assert_refused(out, *needles, code=2):
    assert out.returncode == code, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr + out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_divergence_stops_with_one_line_and_writes_no_results(tmp_path, finished):
    out = run_cli("debug=fast", "logger=wandb", "optim.lr=1e9", f"hydra.run.dir={tmp_path}")
    line = assert_refused(out, "training diverged at step", "loss=nan", "try a lower optim.lr", code=1)
    assert not (tmp_path / "results.json").exists()
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "diverged" and status["error"] == line.removeprefix("error: ")
    assert line in (tmp_path / "run.log").read_text()
    [wandb_dir] = (tmp_path / "wandb").glob("offline-run-*")
    summary = json.loads(subprocess.run(["wandb", "leet", "inspect", "--json", "--summary", str(wandb_dir)],
                                        capture_output=True, text=True, check=True).stdout)
    assert summary["state"] != "finished" and summary["exit_code"] == 1
    assert digest(finished[0]) == finished[1]


def test_results_json_is_strict_json(tmp_path):
    from src.results import write_results

    write_results(tmp_path / "r.json", {"loss": float("nan"), "m": [float("inf"), 1.0]})
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict token {c}")) == {"loss": None,
                                                                                                 "m": [None, 1.0]}


def test_rerun_in_a_finished_dir_is_refused_before_anything_is_written(finished):
    run_dir, before = finished
    out = run_cli(*FAST, "seed=3", f"hydra.run.dir={run_dir}")
    assert_refused(out, "already holds finished results")
    assert digest(run_dir) == before  # .hydra/config.yaml, overrides.yaml, run.log untouched


@pytest.mark.parametrize("override, needle", [
    ("arch=encoder", "arch=encoder does not support task=translation"),
    ("size.n_heads=3", "size.d_model=64 is not divisible"),
    ("data.max_length=0", "data.max_length=0 must be >= 1"),
    ("data.tasks.translation.n_test=0", "data split 'test' is empty"),  # found after the run dir was created
])
def test_a_refused_run_leaves_nothing_behind(tmp_path, finished, override, needle):
    run_dir = tmp_path / "run"
    assert_refused(run_cli(*FAST, override, f"hydra.run.dir={run_dir}"), needle)
    assert not run_dir.exists()
    assert digest(finished[0]) == finished[1]


def test_unknown_group_option_exits_2_and_keeps_hydras_list(tmp_path):
    out = run_cli("arch=foo", f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2
    assert "Could not find 'arch/foo'" in out.stderr and "rnn_attn" in out.stderr  # the valid options
    assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()
    assert run_cli("seed=abc", f"hydra.run.dir={tmp_path / 'run'}").returncode == 2


def test_progress_and_results_are_in_run_log(tmp_path):
    out = run_cli(*FAST, "progress_every_s=0", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    log = (tmp_path / "run.log").read_text()
    assert "arch=encdec task=translation" in log.splitlines()[0]  # the run's summary line first
    assert sum(" steps/s" in line for line in log.splitlines()) >= 4  # one progress line per step here
    assert "test/exact_match" in log and f"results: {tmp_path / 'results.json'}" in log
    assert "step 4/4 (100%)" in out.stdout  # non-interactive: plain progress lines, no progress bar


def test_validation_progress_line_carries_every_val_metric(tmp_path):
    """The progress line names what the run's history keeps: here an LM's val/perplexity beside val/loss."""
    out = run_cli(*FAST, "task=lm", "arch=decoder", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("validation at step")]
    assert lines and all("val/loss" in line and "val/perplexity" in line for line in lines)


def test_a_terminal_gets_the_rich_progress_bar(tmp_path):
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "src.run", *FAST, f"hydra.run.dir={tmp_path}"], cwd=ROOT,
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "Epoch 0" in screen and "━" in screen  # Lightning's RichProgressBar


def start_run(run_dir: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "src.run", *overrides, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_training(run_dir: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until the first periodic checkpoint is written."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "checkpoints" / "last.ckpt").exists():
            return
        time.sleep(0.1)
    pytest.fail(f"training did not start: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}")


STEPS = 160  # the first checkpoint at step 20: a signal sent once it exists lands well inside training
LONG = ("logger=csv", f"trainer.max_steps={STEPS}", "trainer.val_check_interval=40", "progress_every_s=0.2",
        "checkpoint_every_n_steps=20", "trainer.log_every_n_steps=5", "bench.latency_sentences=2", "bench.repeats=1",
        "bench.batch_sizes=[1,8]")


def interrupt(run_dir: Path, signum: int, code: int, overrides=LONG) -> list[str]:
    """Start the run (LONG unless told), send `signum` once it trains; it saves, says how to resume, and exits with
    `code`. Returns the resume command it printed."""
    proc = start_run(run_dir, *overrides)
    wait_for_training(run_dir, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if ln.startswith("interrupted by")]
    assert f"checkpoint saved in {run_dir / 'checkpoints'}" in line
    assert line.endswith(f"hydra.run.dir={run_dir}") and "resume with: python -m src.run" in line
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and not (run_dir / "results.json").exists()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "interrupted" and 0 < status["step"] < STEPS
    command = shlex.split(line.split("resume with: ")[1])
    assert command[:3] == ["python", "-m", "src.run"]
    return command


def resume(command: list[str], run_dir: Path) -> dict:
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    r = json.loads((run_dir / "results.json").read_text())
    assert r["train"]["steps"] == STEPS and r["train"]["segments"] == 2
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt", "prev.ckpt"]
    return r


def test_ctrl_c_saves_a_checkpoint_and_the_printed_command_resumes(tmp_path):
    resume(interrupt(tmp_path, signal.SIGINT, 130), tmp_path)


@pytest.mark.slow
def test_a_sigterm_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    """SIGTERM (the scheduler's stop): saved, resumed by the command it printed, and the two segments end as one
    uninterrupted run does: the same metrics, tokens, validation history and one CSV."""
    whole = run_cli(*LONG, f"hydra.run.dir={tmp_path / 'whole'}", timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]
    command = interrupt(tmp_path / "cut", signal.SIGTERM, 143)
    cut_at = json.loads((tmp_path / "cut" / "status.json").read_text())["step"]
    b = resume(command, tmp_path / "cut")
    a = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert a["train"]["segments"] == 1
    assert a["metrics"] == b["metrics"]  # same seed, CPU, deterministic
    assert a["train"]["tokens"] == b["train"]["tokens"]  # summed over both segments
    assert a["history"]["val/loss"] == b["history"]["val/loss"]
    assert a["history"]["tokens"] == b["history"]["tokens"] and a["history"]["flops"] == b["history"]["flops"]
    assert [s for s, _ in b["history"]["flops"]] == [40, 80, 120, 160]  # one point each validation, both segments
    rows = (tmp_path / "cut" / "csv" / "metrics.csv").read_text().splitlines()
    steps = [int(r.split(",")[rows[0].split(",").index("step")]) for r in rows[1:]
             if r.split(",")[rows[0].split(",").index("step")]]
    assert rows[0].startswith(("epoch", "step", "test", "train", "val"))  # one header: appended, not overwritten
    assert min(steps) < cut_at <= max(steps)  # the CSV holds both segments


@pytest.mark.parametrize("when,at_step,stopped_at", [("batch", 30, 31), ("end", 30, 30), ("train_batch_end", 16, 16)])
def test_a_signal_resumes_with_the_rows_of_one_run(tmp_path, when, at_step, stopped_at):
    """SIGTERM during the validation after step 30. From its first batch: the validation finishes (Lightning would
    stop in its middle and lose its row) and the run stops after the next step. After its last batch: Lightning
    stops between the two steps, and the checkpoint used to resume one step off. Or SIGTERM at step 16's end, after
    the run's own check (a signal racing it): Lightning stops before the next step, and that checkpoint too resumed
    one step off. Each way the resumed run logs each row once, under its own step."""
    cmd = ("logger=csv", "size=tiny", "trainer.max_steps=60", "trainer.val_check_interval=30",
           "trainer.log_every_n_steps=1", "checkpoint_every_n_steps=10", "bench.latency_sentences=2", "bench.repeats=1",
           "bench.batch_sizes=[1]", "+callbacks.sigterm._target_=tests.e2e.signal_callbacks.SigtermAtStep",
           f"+callbacks.sigterm.at_step={at_step}", f"+callbacks.sigterm.when={when}", f"hydra.run.dir={tmp_path}")
    cut = run_cli(*cmd, timeout=600)
    assert cut.returncode == 143, cut.stderr[-2000:]
    assert json.loads((tmp_path / "status.json").read_text())["step"] == stopped_at
    assert run_cli(*cmd, timeout=600).returncode == 0
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = [(int(r["step"]), "test" if r.get("test/loss") else "val" if r.get("val/loss") else "train")
                for r in csv.DictReader(f)]
    expected = [(s, "train") for s in range(30)] + [(29, "val")] + [(s, "train") for s in range(30, 60)]
    assert rows == expected + [(59, "val"), (60, "test")]


def test_a_resumed_run_continues_the_same_wandb_run(tmp_path):
    """Both segments log to one W&B run id (kept in status.json), and the history steps continue, never restart."""
    command = interrupt(tmp_path, signal.SIGTERM, 143, overrides=(*LONG[1:], "logger=wandb"))
    cut_at = json.loads((tmp_path / "status.json").read_text())["step"]
    resume(command, tmp_path)
    first, second = sorted((tmp_path / "wandb").glob("offline-run-*"))
    wandb_id = json.loads((tmp_path / "status.json").read_text())["wandb_id"]
    assert first.name.endswith(wandb_id) and second.name.endswith(wandb_id)

    def steps(run_dir):
        """Every logged trainer/global_step of the run's history records."""
        out = subprocess.run(["wandb", "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True,
                             check=True).stdout
        found = []

        def walk(obj, history):
            if isinstance(obj, dict):
                history = history or obj.get("type") == "history"
                for k, v in obj.items():
                    if k == "trainer/global_step" and history and isinstance(v, (int, float)):
                        found.append(v)
                    walk(v, history)
            elif isinstance(obj, list):
                for v in obj:
                    walk(v, history)

        for line in out.splitlines():
            if line.strip():
                walk(json.loads(line), False)
        return found

    a, b = steps(first), steps(second)
    assert a and b and max(a) < min(b) and max(b) >= STEPS - 1  # continuous: segment 2 picks up where segment 1 stopped
    summary = json.loads(subprocess.run(["wandb", "leet", "inspect", "--json", "--summary", str(second)],
                                        capture_output=True, text=True, check=True).stdout)
    assert summary["state"] == "finished" and max(a) <= cut_at
