"""The run directory is the unit of resume.

A run directory is in one of three states, read from its files alone:
  finished    it holds results.json                       -> a new run there is refused (exit 2)
  unfinished  it holds a checkpoint or a status.json      -> the run resumes from its latest checkpoint
  empty       neither                                     -> a fresh run starts
`status.json` says what the run is doing or how it ended: {"state": running|finished|failed|diverged|interrupted,
"error", "step", "updated", "run_key", "wandb_id", "segments"}. It is rewritten atomically at every change.

`RunGuard` is a Hydra callback: for a single run it validates the config and refuses a finished directory in
`on_run_start`, *before* Hydra creates the directory or writes `.hydra/` and `run.log` there, so a refused run
touches nothing. Nothing heavy is imported here.
"""
from __future__ import annotations

import copy
import datetime
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

STATUS_FILE = "status.json"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
CREATED: set[Path] = set()  # run directories this process is about to create (RunGuard)


def write_json_atomic(path: Path, obj: dict) -> None:
    """Strict JSON (no NaN/Infinity) written to a temp file in the same directory, then renamed over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDir:
    def __init__(self, path, results_file: str = "results.json"):
        self.path = Path(path)
        self.results = self.path / results_file
        self.checkpoints = self.path / CHECKPOINTS
        self.status_path = self.path / STATUS_FILE

    @property
    def state(self) -> str:
        if self.results.exists():
            return "finished"
        if self.status_path.exists() or self.latest_checkpoint():
            return "unfinished"
        return "empty"

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint to resume from: last.ckpt (periodic and on-signal saves overwrite it), else the newest."""
        last = self.checkpoints / LAST_CHECKPOINT
        if last.exists():
            return last
        found = sorted(self.checkpoints.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
        return found[-1] if found else None

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


def task_config(config: DictConfig) -> DictConfig:
    """The job's config without the `hydra` node (what the task function receives)."""
    cfg = copy.deepcopy(config)
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def refuse(message: str) -> None:
    """Bad input: one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class RunGuard(Callback):
    """Validate and check the run directory before Hydra writes anything into it (single runs)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from .config import ConfigError, validate

        cfg = task_config(config)
        try:
            spec = validate(cfg)
        except ConfigError as e:
            refuse(str(e))
        run_dir = RunDir(OmegaConf.select(config, "hydra.run.dir"), spec.results_file)
        if run_dir.state == "finished":
            refuse(f"{run_dir.results} already holds finished results; choose another hydra.run.dir")
        if not run_dir.path.exists():  # so that a run refused later (bad data) removes the directory it created
            CREATED.add(run_dir.path.resolve())


class BelowError(logging.Filter):
    """Console filter: errors are printed once, as one `error: ...` line on stderr, not again on stdout."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR
