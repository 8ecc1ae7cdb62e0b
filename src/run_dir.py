"""The run directory is the unit of resume.

A run directory is in one of three states, read from its files alone:
  finished    it holds results.json                       -> a new run there is refused (exit 2)
  unfinished  it holds a checkpoint or a status.json      -> the run resumes from its latest checkpoint
  empty       neither                                     -> a fresh run starts
`status.json` says what the run is doing or how it ended: {"state": running|finished|failed|diverged|interrupted,
"error", "step", "updated", "run_key", "wandb_id", "segments"}. It is rewritten atomically at every change.

One process at a time: a run holds `run.lock` in its directory (src/run_lock.py).

Checkpoints are written by `save_checkpoint` (src/atomic.py's writer): a temp file in `checkpoints/`, flushed and fsynced, then renamed over
`last.ckpt`, the previous `last.ckpt` kept as `prev.ckpt` until the new one is complete. `resume_checkpoint` checks
them (the zip archive's CRCs) and falls back from an unreadable `last.ckpt` to `prev.ckpt` with one line.

`RunGuard` is a Hydra callback: for a single run it validates the config, refuses a finished directory and takes the
lock in `on_run_start`, *before* Hydra creates the directory or writes `.hydra/` and `run.log` there, so a refused
run touches nothing (multirun members take the lock in the task function). Nothing heavy is imported here.
"""
from __future__ import annotations

import copy
import datetime
import json
import logging
import os
import zipfile
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from .atomic import write_json_atomic, write_atomic
from .config import validate
from .errors import ConfigError, refuse
from .run_lock import RunDirBusy, acquire, launching_process, lock_wait_s, release

STATUS_FILE = "status.json"
RESULTS_FILE = "results.json"  # always <run_dir>/results.json (the config key results_file is gone)
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
PREVIOUS_CHECKPOINT = "prev.ckpt"  # the last.ckpt before the latest save
BEST_CHECKPOINT = "best.ckpt"  # model selection (src/selection.py): what the test stage uses, never a resume point
UNREADABLE = ".unreadable"  # an unreadable checkpoint is kept aside under its name + this suffix
CREATED: set[Path] = set()  # run directories this process is about to create (RunGuard)
log = logging.getLogger("archbench")


class RunDir:
    def __init__(self, path):
        self.path = Path(path)
        self.results = self.path / RESULTS_FILE
        self.checkpoints = self.path / CHECKPOINTS
        self.status_path = self.path / STATUS_FILE

    @property
    def state(self) -> str:
        if self.results.exists():
            return "finished"
        if self.status_path.exists() or self.latest_checkpoint():
            return "unfinished"
        return "empty"

    def checkpoint_files(self) -> list[Path]:
        """The checkpoints to resume from, first choice first: last.ckpt, prev.ckpt, then any other, newest first
        (not best.ckpt: an earlier step, kept for the test stage)."""
        named = [self.checkpoints / LAST_CHECKPOINT, self.checkpoints / PREVIOUS_CHECKPOINT]
        others = sorted((p for p in self.checkpoints.glob("*.ckpt") if p not in named and p.name != BEST_CHECKPOINT),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        return [p for p in named if p.exists()] + others

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoint_files()
        return found[0] if found else None

    def check_resumable(self) -> None:
        """ConfigError (exit 2) if the directory holds checkpoints and none is readable (RunGuard: before Hydra
        writes into it)."""
        found = self.checkpoint_files()
        if found and all(unreadable(p) for p in found):
            self.resume_checkpoint()

    def resume_checkpoint(self) -> Path | None:
        """The newest readable checkpoint. An unreadable one before it is set aside (`<name>.unreadable`, so that the
        next save cannot rotate it into prev.ckpt) with one line saying so; none readable: ConfigError (exit 2)."""
        found = self.checkpoint_files()
        bad = []
        for path in found:
            reason = unreadable(path)
            if reason is None:
                break
            bad.append((path, reason))
        else:
            if found:
                path, reason = bad[0]
                others = "".join(f", {p.name}: {r}" for p, r in bad[1:])
                raise ConfigError(f"checkpoint {path} is unreadable ({reason}{others}) and there is no readable "
                                  f"earlier one; delete {self.checkpoints} to start this run over, or choose another "
                                  "hydra.run.dir")
            return None
        if launching_process():  # rank 0 tidies up; the other ranks reach the same choice by the same checks
            for tmp in self.checkpoints.glob(".*.tmp"):  # a save cut short (we hold the lock: no save is running)
                tmp.unlink(missing_ok=True)
            for p, _ in bad:
                os.replace(p, p.with_name(p.name + UNREADABLE))
        if bad:
            log.warning("warning: " + "; ".join(f"checkpoint {p} is unreadable ({r}), kept as {p.name}{UNREADABLE}"
                                                for p, r in bad) + f"; resuming from the previous one, {path}")
        return path

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def set_status(self, state: str, step: int | None = None, error: str | None = None, **extra) -> dict:
        status = {**self.status(), **extra, "state": state, "error": error,
                  "updated": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        if step is not None:
            status["step"] = step
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.status_path, status)
        return status


_CHECKED: dict[tuple, str | None] = {}  # (path, size, mtime) -> unreadable(): each file is read once


def unreadable(path: Path) -> str | None:
    """Why `path` is not a complete torch checkpoint (zip archive, every member's CRC checked), or None."""
    try:
        st = path.stat()
    except OSError as e:
        return f"unreadable: {e.strerror}"
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _CHECKED:
        _CHECKED[key] = _unreadable(path)
    return _CHECKED[key]


def _unreadable(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            if bad is not None:
                return f"corrupt member {bad}"
            if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in z.namelist()):
                return "no data.pkl: not a torch checkpoint"
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
        return f"truncated or corrupt: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None


def save_checkpoint(checkpoint: dict, path: Path) -> None:
    """torch.save through the atomic writer (temp file beside `path`, fsynced, renamed); the last.ckpt it replaces
    becomes prev.ckpt."""
    import torch  # deferred: RunGuard imports this module before Hydra starts the run, which must stay fast

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = path.with_name(PREVIOUS_CHECKPOINT) if path.name == LAST_CHECKPOINT else None
    write_atomic(path, lambda f: torch.save(checkpoint, f), binary=True, durable=True, keep_previous=keep)


def task_config(config: DictConfig) -> DictConfig:
    """The job's config without the `hydra` node (what the task function receives)."""
    cfg = copy.deepcopy(config)
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


class RunGuard(Callback):
    """Validate, check and lock the run directory before Hydra writes anything into it (single runs)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        cfg = task_config(config)
        try:
            validate(cfg)
        except ConfigError as e:
            refuse(str(e))
        run_dir = RunDir(OmegaConf.select(config, "hydra.run.dir"))
        self.locked = run_dir.path
        if run_dir.state == "finished":
            refuse(f"{run_dir.results} already holds finished results; choose another hydra.run.dir")
        if not run_dir.path.exists():  # so that a run refused later (bad data) removes the directory it created
            CREATED.add(run_dir.path.resolve())
        try:
            run_dir.check_resumable()  # checkpoints are complete or absent at any moment: no lock needed to read
        except ConfigError as e:
            refuse(str(e))
        try:
            acquire(run_dir.path, lock_wait_s())
        except RunDirBusy as e:
            refuse(str(e))
        if run_dir.state == "finished":  # it finished while we waited for its lock
            refuse(f"{run_dir.results} already holds finished results; choose another hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        if getattr(self, "locked", None):
            release(self.locked)


class BelowError(logging.Filter):
    """Console filter: errors are printed once, as one `error: ...` line on stderr, not again on stdout."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR
