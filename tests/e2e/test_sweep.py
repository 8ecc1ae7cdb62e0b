"""A re-run sweep is a resume (src/sweep.py, hydra_plugins/archbench_local): finished members are skipped and their
recorded value goes to the sweeper, an interrupted one resumes in its own dir, a missing one runs; members are
matched by config (run_key), not by directory number, so the sweep order may change."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.objective import objective
from tests.conftest import ROOT, run_cli
from tests.e2e.test_reliability import digest

# long enough to SIGTERM after the first checkpoint (step 10) with 50 steps to spare
SWEEP = ("debug=fast", "logger=csv", "trainer.max_steps=60", "checkpoint_every_n_steps=10",
         "trainer.val_check_interval=8")


def master_config(sweep_dir: Path, *overrides: str):
    """The launcher's view of a multirun (config loader + master config), as `python -m src.run -m` builds it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from src.config import register

    register()
    init = initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3")
    init.__enter__()
    cfg = compose(config_name="config", overrides=[f"hydra.sweep.dir={sweep_dir}", *overrides],
                  return_hydra_config=True)
    return GlobalHydra.instance().config_loader(), cfg, init


def plan(sweep_dir: Path, job_overrides):
    from src import sweep

    loader, master, init = master_config(sweep_dir)
    try:
        return sweep.plan(sweep_dir, job_overrides, 0, lambda o, num: sweep.compose(loader, master, o, num))
    finally:
        init.__exit__(None, None, None)


def _interrupt_member(sweep_dir: Path, seed: int) -> Path:
    """A real one-member multirun, SIGTERMed after its first checkpoint: checkpoint + status `interrupted`."""
    proc = subprocess.Popen([sys.executable, "-m", "src.run", "-m", f"seed={seed}", *SWEEP,
                             f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list(sweep_dir.glob(f"*_s{seed}/checkpoints/last.ckpt")):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    (run_dir,) = sweep_dir.glob(f"*_s{seed}")
    assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"
    assert not (run_dir / "results.json").exists()
    return run_dir


@pytest.mark.slow
def test_a_rerun_sweep_skips_the_done_member_resumes_the_interrupted_one_and_runs_the_new_one(tmp_path):
    sweep_dir = tmp_path / "sweep"
    first = run_cli("-m", "seed=0", *SWEEP, f"hydra.sweep.dir={sweep_dir}")
    assert first.returncode == 0, first.stderr[-2000:]
    (done_dir,) = sweep_dir.glob("*_s0")
    cut_dir = _interrupt_member(sweep_dir, 1)
    finished = digest(done_dir)
    before = {p for p in sweep_dir.iterdir() if p.is_dir()}

    rerun = run_cli("-m", "seed=2,1,0", *SWEEP, f"hydra.sweep.dir={sweep_dir}", timeout=600)  # another order
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr + rerun.stdout
    assert f"sweep {sweep_dir}: 1 done, 1 resumed, 1 new" in rerun.stdout.splitlines()
    assert digest(done_dir) == finished  # not launched again: every file byte-identical
    resumed = json.loads((cut_dir / "results.json").read_text())
    assert resumed["train"]["segments"] == 2 and resumed["train"]["steps"] == 60  # resumed in its own dir
    after = {p for p in sweep_dir.iterdir() if p.is_dir()}
    (new_dir,) = after - before  # one new dir, for seed 2 only
    assert new_dir.name.endswith("_s2") and before <= after
    assert all((d / "results.json").exists() for d in (done_dir, cut_dir, new_dir))

    # a third run: all done; the sweeper gets each member's recorded validation value, matched by config
    members = plan(sweep_dir, [["seed=1", *SWEEP], ["seed=0", *SWEEP], ["seed=2", *SWEEP]])
    assert [m.state for m in members] == ["done"] * 3
    assert [m.run_dir for m in members] == [cut_dir, done_dir, new_dir]
    for m in members:
        record = json.loads((m.run_dir / "results.json").read_text())
        assert m.run_key == record["run_key"]
        assert m.value == objective(record, m.cfg)  # what src/run.py returned: validation, not test


def test_a_new_member_never_takes_a_dir_that_holds_another_config(tmp_path):
    """The subdir names no lr: the new member lr=0.001 is job 0, whose default dir holds the lr=0.002 run."""
    from src.run_dir import RunDir

    sweep_dir = tmp_path / "sweep"
    [old] = plan(sweep_dir, [["optim.lr=0.002"]])
    RunDir(old.run_dir).set_status("interrupted", step=10, run_key=old.run_key)  # as the pipeline leaves it
    members = plan(sweep_dir, [["optim.lr=0.001"], ["optim.lr=0.002"]])
    assert [m.state for m in members] == ["new", "resumed"]
    assert members[1].run_dir == old.run_dir and members[1].step == 10
    assert members[0].run_dir == sweep_dir / f"{old.run_dir.name}_2"
    assert members[0].overrides[-1] == f"hydra.sweep.subdir='{old.run_dir.name}_2'"


def test_runs_made_before_a_schema_field_existed_are_still_found(tmp_path):
    """A switch added to the schema since the runs (here decode.int8, at its default): the interrupted run's status
    key and the finished run's record were made from configs that lack it; the re-run sweep resumes the one and
    skips the other. The finished one is keyed again from its recorded config, whatever key it stored."""
    from omegaconf import OmegaConf

    from src.results import run_key
    from src.run_dir import RunDir, task_config

    sweep_dir = tmp_path / "sweep"
    cut, done = plan(sweep_dir, [["seed=1"], ["seed=2"]])

    def older(cfg):  # the member's config as a run made before decode.int8 existed recorded it
        config = OmegaConf.to_container(task_config(cfg), resolve=True)
        del config["decode"]["int8"]
        return config

    RunDir(cut.run_dir).set_status("interrupted", step=10, run_key=run_key(older(cut.cfg)))
    RunDir(done.run_dir).set_status("finished", run_key="0123456789ab")  # e.g. an older run_key formula
    (done.run_dir / "results.json").write_text(json.dumps(
        {"run_key": "0123456789ab", "config": older(done.cfg), "validation": {"best": 1.5}}))
    members = plan(sweep_dir, [["seed=2"], ["seed=1"], ["seed=1", "decode.int8=true"]])
    assert [m.state for m in members] == ["done", "resumed", "new"]
    assert [m.run_dir for m in members[:2]] == [done.run_dir, cut.run_dir]
    assert members[0].value == 1.5 and members[1].step == 10
    assert members[2].run_dir not in (done.run_dir, cut.run_dir)
