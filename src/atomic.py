"""The one atomic writer: a file (or a directory) is complete or absent, whatever kills the process.

A temp file in the target's own directory (never $TMPDIR: on a cluster that is another filesystem, and the move a
copy), renamed over the target. `durable`: flushed and fsynced, and the rename fsynced too (checkpoints, results).
`exclusive`: a hard link instead of the rename, which fails if the target appeared meanwhile (results.json is
never replaced). Standard library only: every room may use it (run dir, results, data caches, run assets).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable


def write_atomic(path, write: Callable[[IO], object], *, binary: bool = False, durable: bool = False,
                 exclusive: bool = False, keep_previous: Path | None = None) -> Path:
    """`write(f)` into a temp file beside `path`, then rename it over `path` (`keep_previous`: the file it replaces
    is first renamed there; `exclusive`: FileExistsError if `path` exists)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as a plain open() would create it (mkstemp's is 0600)
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")) as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)  # atomic, and fails if `path` appeared meanwhile
            os.unlink(tmp)
        else:
            if keep_previous is not None and path.exists():
                os.replace(path, keep_previous)
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the renames themselves
        finally:
            os.close(dir_fd)
    return path


def finite(obj):
    """Strict JSON: a non-finite float (NaN, ±inf) is written as null, never as the invalid token NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_json_atomic(path, obj, *, indent: int | None = 2, ensure_ascii: bool = True, **how) -> Path:
    """Strict JSON (non-finite floats as null) + a newline, through `write_atomic` (`how`: its switches)."""
    def write(f):
        json.dump(finite(obj), f, indent=indent, ensure_ascii=ensure_ascii, default=float, allow_nan=False)
        f.write("\n")

    return write_atomic(path, write, **how)


def save_dir_atomically(target: Path, save: Callable[[Path], object]) -> None:
    """`save(tmp_dir)` into a temp directory beside `target`, renamed to `target` (a cache entry: all or nothing)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        save(tmp)
        tmp.rename(target)
    except OSError:  # another run finished the same entry first
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
