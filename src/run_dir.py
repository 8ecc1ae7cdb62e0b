"""The run directory is the unit of resume.

A run directory is in one of three states, read from its files alone:
  finished    it holds results.json                       -> a new run there is refused (exit 2)
  unfinished  it holds a checkpoint or a status.json      -> the run resumes from its latest checkpoint
  empty       neither                                     -> a fresh run starts
`status.json` says what the run is doing or how it ended: {"state": running|finished|failed|diverged|interrupted,
"error", "step", "updated", "run_key", "wandb_id", "segments"}. It is rewritten atomically at every change.

One process at a time: a run holds `run.lock` in its directory (a POSIX record lock, `fcntl.lockf`, with the holder's
PID and host written in the file). The kernel drops the lock when the process dies, however it dies, so a killed run
never leaves a stale lock; unlike `flock`, the lock is not inherited by forked children (DataLoader workers outlive
a SIGKILLed parent by seconds). A second process refuses at once (one line naming the holder, exit 2); a requeued
SLURM job (`SLURM_RESTART_COUNT` > 0) or one given `ARCHBENCH_LOCK_WAIT_S` waits that long for the previous process
to finish saving. Only the launching process (rank 0) takes it: the DDP ranks of the same run do not compete.

Checkpoints are written by `save_checkpoint`: a temp file in `checkpoints/`, flushed and fsynced, then renamed over
`last.ckpt`, the previous `last.ckpt` kept as `prev.ckpt` until the new one is complete. `resume_checkpoint` checks
them (the zip archive's CRCs) and falls back from an unreadable `last.ckpt` to `prev.ckpt` with one line.

`RunGuard` is a Hydra callback: for a single run it validates the config, refuses a finished directory and takes the
lock in `on_run_start`, *before* Hydra creates the directory or writes `.hydra/` and `run.log` there, so a refused
run touches nothing (multirun members take the lock in the task function). Nothing heavy is imported here.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from .config import ConfigError

STATUS_FILE = "status.json"
LOCK_FILE = "run.lock"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
PREVIOUS_CHECKPOINT = "prev.ckpt"  # the last.ckpt before the latest save
UNREADABLE = ".unreadable"  # an unreadable checkpoint is kept aside under its name + this suffix
REQUEUE_LOCK_WAIT_S = 300.0
CREATED: set[Path] = set()  # run directories this process is about to create (RunGuard)
_HELD: dict[Path, int] = {}  # run dir -> fd of its run.lock, for the run dirs this process holds
log = logging.getLogger("archbench")


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

    def checkpoint_files(self) -> list[Path]:
        """The checkpoints, the one to resume from first: last.ckpt, prev.ckpt, then any other, newest first."""
        named = [self.checkpoints / LAST_CHECKPOINT, self.checkpoints / PREVIOUS_CHECKPOINT]
        others = sorted((p for p in self.checkpoints.glob("*.ckpt") if p not in named),
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
    """torch.save into a temp file beside `path` (never $TMPDIR: on a cluster that is another filesystem, and the
    move a copy), flushed and fsynced, then renamed over `path`. The last.ckpt it replaces becomes prev.ckpt."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as a plain open() would create it (mkstemp's is 0600)
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        if path.name == LAST_CHECKPOINT and path.exists():
            os.replace(path, path.with_name(PREVIOUS_CHECKPOINT))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the renames themselves
    finally:
        os.close(dir_fd)


class RunDirBusy(ConfigError):
    """Another process holds the run directory's lock."""


def launching_process() -> bool:
    """False in the DDP ranks beside rank 0 (Lightning's children: LOCAL_RANK; srun's tasks: SLURM_PROCID; torchrun:
    RANK): one run, one lock, taken by the process that launched it."""
    return all(os.environ.get(v, "0") in ("", "0") for v in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID"))


def lock_wait_s() -> float:
    """How long to wait for a held lock: `ARCHBENCH_LOCK_WAIT_S`, else 300 s in a requeued SLURM job (its previous
    process may still be saving its checkpoint), else 0 (refuse at once)."""
    if os.environ.get("ARCHBENCH_LOCK_WAIT_S"):
        return float(os.environ["ARCHBENCH_LOCK_WAIT_S"])
    return REQUEUE_LOCK_WAIT_S if int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0 else 0.0


def _holder(lock: Path) -> str:
    """"PID n" (+ "on host h" when another host) of the lock's holder, from what it wrote into the file."""
    for _ in range(20):  # the holder writes its PID just after taking the lock
        try:
            words = lock.read_text().split()
        except OSError:
            words = []
        if words:
            host = f" on {words[1]}" if len(words) > 1 and words[1] != socket.gethostname() else ""
            return f"PID {words[0]}{host}"
        time.sleep(0.05)
    return "a process that has not written its PID"


def acquire(run_dir: Path, wait_s: float = 0.0) -> None:
    """Take `run_dir`'s lock for this process (creating the directory), waiting up to `wait_s`; RunDirBusy if
    another process holds it. A no-op where this process holds it already or is not the launching process."""
    key = Path(run_dir).resolve()
    if key in _HELD or not launching_process():
        return
    key.mkdir(parents=True, exist_ok=True)
    lock = key / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    deadline, waiting = time.monotonic() + wait_s, False
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
        holder = _holder(lock)
        if time.monotonic() >= deadline:
            os.close(fd)
            raise RunDirBusy(f"{key} is in use by another run ({holder} holds {lock}); wait for it to end, or "
                             "choose another hydra.run.dir" + (f" (waited {wait_s:.0f} s)" if wait_s else ""))
        if not waiting:
            print(f"{key} is locked by {holder}: waiting up to {wait_s:.0f} s for it to end", file=sys.stderr,
                  flush=True)
            waiting = True
        time.sleep(0.5)
    line = f"{os.getpid()} {socket.gethostname()}\n".encode()
    os.pwrite(fd, line, 0)  # over the old holder's line, then cut: a reader never sees an empty file
    os.ftruncate(fd, len(line))
    _HELD[key] = fd


def release(run_dir: Path) -> None:
    """Drop the lock (closing the file releases it); the file stays, holding the last holder's PID."""
    fd = _HELD.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def holding(run_dir: Path):
    """The lock for the duration of a block (multirun members); kept if this process held it before (single runs:
    RunGuard took it)."""
    key = Path(run_dir).resolve()
    if key in _HELD or not launching_process():
        yield
        return
    acquire(key, lock_wait_s())
    try:
        yield
    finally:
        release(key)


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
    """Validate, check and lock the run directory before Hydra writes anything into it (single runs)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from .config import validate

        cfg = task_config(config)
        try:
            spec = validate(cfg)
        except ConfigError as e:
            refuse(str(e))
        run_dir = RunDir(OmegaConf.select(config, "hydra.run.dir"), spec.results_file)
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
