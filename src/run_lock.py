"""One process at a time in a run directory: `run.lock`.

A run holds `run.lock` in its directory (a POSIX record lock, `fcntl.lockf`, with the holder's PID and host written
in the file). The kernel drops the lock when the process dies, however it dies, so a killed run never leaves a stale
lock; unlike `flock`, the lock is not inherited by forked children (DataLoader workers outlive a SIGKILLed parent by
seconds). A second process refuses at once (one line naming the holder, exit 2); a requeued SLURM job
(`SLURM_RESTART_COUNT` > 0) or one given `ARCHBENCH_LOCK_WAIT_S` waits that long for the previous process to finish
saving. Only the launching process (rank 0) takes it: the DDP ranks of the same run do not compete.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from .errors import ConfigError

LOCK_FILE = "run.lock"
REQUEUE_LOCK_WAIT_S = 300.0
_HELD: dict[Path, int] = {}  # run dir -> fd of its run.lock, for the run dirs this process holds


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
