"""A re-run sweep is a resume: which members of a multirun are done, which resume, which are new.

`plan(...)` decides per member from the sweep dir alone, for both launchers (hydra_plugins/archbench_local, the
default for `-m`, and hydra_plugins/archbench_slurm):
  done      a member dir holds this member's finished results  -> not launched; its recorded validation value
                                                                  (src/objective.py) is returned to the sweeper
  resumed   a member dir holds an unfinished run of it         -> launched into that dir (`hydra.sweep.subdir`
                                                                  override), where the pipeline resumes from its
                                                                  checkpoint (src/train.py `check_resume`)
  new       no dir holds it                                    -> launched into its own subdir (renamed with a
                                                                  `_2`, `_3`... suffix if that dir holds another run)
Members are matched by config, never by directory number (which follows sweep order): each member's config is
composed as its job will compose it (same overrides, `hydra.job.num`, `${hydra:...}` resolved against it) and
hashed as the pipeline hashes it (`src.results.run_key` of the resolved task config); an unfinished member dir's
key comes from its status.json, a finished one's is hashed again from the config in its results.json. The key
leaves out the fields at their schema default, so a switch added to the schema since a run does not lose it. A
config that interpolates something that changes between launches (`${now:...}`, `${hydra:job.id}` on SLURM, its
own output dir) has a new key each time and is always new.
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from .objective import objective, val_metric
from .results import run_key
from .run_dir import STATUS_FILE, RunDir, task_config

SUBDIR_KEY = "hydra.sweep.subdir"


@dataclass
class Member:
    num: int                     # hydra.job.num
    overrides: list[str]         # what the job is launched with (+ a hydra.sweep.subdir override when planned)
    state: str = "new"           # done | resumed | new
    run_key: str | None = None   # None: the config does not compose (the job reports why, as before)
    run_dir: Path | None = None  # None: the job's own subdir, resolved in the job
    pinned: bool = False         # run_dir is fixed by a hydra.sweep.subdir override (else resolved in the job)
    value: float | None = None   # done: the value its run returned to the sweeper (best validation value)
    step: int | None = None      # resumed: the step its status.json recorded
    cfg: DictConfig | None = None

    @property
    def label(self) -> str:
        return " ".join(filter_overrides(self.overrides))


def compose(config_loader, launcher_config: DictConfig, overrides: Sequence[str], num: int,
            job_id: str | None = None) -> DictConfig:
    """A member's full config as its launcher's job composes it (basic launcher / submitit `__call__`)."""
    cfg = config_loader.load_sweep_config(launcher_config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = job_id if job_id is not None else num
        cfg.hydra.job.num = num
    return cfg


def member_key(cfg: DictConfig) -> str:
    """The run_key the pipeline will record for this member (src/train.py: run_key of the resolved task config),
    with `${hydra:...}` resolved against the member's own Hydra config."""
    HydraConfig.instance().set_config(cfg)
    return run_key(OmegaConf.to_container(task_config(cfg), resolve=True))


def recorded_runs(sweep_dir: Path) -> dict[Path, dict]:
    """Every run dir under the sweep dir that recorded a run: {dir: {"run_key", "state", "step"}}.
    A finished run's key is hashed from the config in its results.json; an unfinished one's is in status.json."""
    runs: dict[Path, dict] = {}
    for root, dirs, files in os.walk(sweep_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("checkpoints", "csv", "wandb")]
        if STATUS_FILE not in files and "results.json" not in files:
            continue
        path = Path(root)
        status = RunDir(path).status()
        key = status.get("run_key")
        if "results.json" in files:  # a finished run is keyed from its recorded config, by today's run_key
            try:
                record = json.loads((path / "results.json").read_text())
                key = run_key(record["config"]) if isinstance(record.get("config"), dict) else record.get("run_key", key)
            except (OSError, ValueError):
                pass
        runs[path] = {"run_key": key, "state": status.get("state"), "step": status.get("step")}
    return runs


def _quote(value: str) -> str:
    """A Hydra override value that is taken literally (spaces, commas, `=`, quotes, `${`)."""
    return "'" + value.replace("'", "\\'").replace("${", "\\${") + "'"


def plan(sweep_dir: Path, job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
         compose_member: Callable[[Sequence[str], int], DictConfig]) -> list[Member]:
    """Per member: done / resumed (in which existing dir) / new. `compose_member(overrides, num)` returns the
    member's full config as its job will see it (`compose` above, bound to the launcher)."""
    sweep_dir = Path(sweep_dir)
    saved = HydraConfig.instance().cfg
    members = [Member(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
    try:
        for m in members:
            try:
                m.cfg = compose_member(m.overrides, m.num)
                m.run_key = member_key(m.cfg)
            except Exception:  # noqa: BLE001 -- a member that does not compose is new; its job says why
                m.cfg, m.run_key = None, None
        _match(sweep_dir, members)
    finally:
        if saved is not None:
            HydraConfig.instance().set_config(saved)
    return members


def _match(sweep_dir: Path, members: list[Member]) -> None:
    runs = recorded_runs(sweep_dir)
    claimed: set[Path] = set()
    for m in members:  # first the members a dir already holds, so that no new member takes their dir
        if m.run_key is None:
            continue
        found = [(RunDir(p), info) for p, info in sorted(runs.items())
                 if info["run_key"] == m.run_key and p not in claimed]
        if not found:
            continue
        # a finished one first, then the furthest unfinished one (a sweep may hold the same config twice)
        rd, info = max(found, key=lambda f: (f[0].state == "finished", f[1]["step"] or 0))
        claimed.add(rd.path)
        m.run_dir, m.pinned = rd.path, True
        m.overrides.append(f"{SUBDIR_KEY}={_quote(os.path.relpath(rd.path, sweep_dir))}")
        if rd.state == "finished":
            m.state = "done"
            m.value = headline(json.loads(rd.results.read_text()), m.cfg)
        else:
            m.state, m.step = "resumed", info["step"]
    taken = claimed | set(runs)
    for m in members:
        if m.state != "new" or m.cfg is None:
            continue
        HydraConfig.instance().set_config(m.cfg)
        try:
            subdir = str(OmegaConf.select(m.cfg, SUBDIR_KEY))
        except Exception:  # noqa: BLE001 -- resolved in the job, as before
            continue
        path, n = sweep_dir / subdir, 1
        while path in taken:  # its default dir holds another config's run (sweep order changed), or is claimed
            n += 1
            path = sweep_dir / f"{subdir}_{n}"
        taken.add(path)
        if n > 1:
            m.overrides.append(f"{SUBDIR_KEY}={_quote(os.path.relpath(path, sweep_dir))}")
        m.run_dir, m.pinned = path, n > 1


def headline(record: dict, cfg: DictConfig) -> float | None:
    """The value src/run.py's main returns to the sweeper: the run's best validation value (src/objective.py)."""
    return objective(record, cfg)


def summary(members: Sequence[Member]) -> str:
    n = {s: sum(m.state == s for m in members) for s in ("done", "resumed", "new")}
    return f"{n['done']} done, {n['resumed']} resumed, {n['new']} new"


def report(sweep_dir: Path, members: Sequence[Member]) -> str:
    """The lines printed before launching: one per member that is not new, then the summary line."""
    lines = []
    for m in members:
        if m.state == "done":
            lines.append(f"\t#{m.num} : {m.label} · done in {os.path.relpath(m.run_dir, sweep_dir)} "
                         f"({val_metric(m.cfg)[0]}={m.value})")
        elif m.state == "resumed":
            lines.append(f"\t#{m.num} : {m.label} · resumes {os.path.relpath(m.run_dir, sweep_dir)} "
                         f"at step {m.step if m.step is not None else '?'}")
    return "\n".join([*lines, f"sweep {sweep_dir}: {summary(members)}"])


def done_return(m: Member) -> JobReturn:
    """What the sweeper gets for a member that is not launched again: its recorded headline value."""
    cfg = copy.deepcopy(m.cfg)
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(m.run_dir.resolve())
    return JobReturn(overrides=OmegaConf.to_container(cfg.hydra.overrides.task), cfg=task_config(cfg),
                     hydra_cfg=cfg, working_dir=str(m.run_dir), task_name=cfg.hydra.job.name,
                     status=JobStatus.COMPLETED, _return_value=m.value)
