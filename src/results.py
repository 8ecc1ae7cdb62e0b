"""The per-run results record (`results.json`): what a report aggregates across a sweep.

Written atomically (temp file in the same directory + rename), and never over an existing file."""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
from pathlib import Path

SCHEMA_VERSION = 1


def run_key(config: dict) -> str:
    """Deterministic id of a run: a hash of its resolved config (seed included, logger settings excluded), so the
    same experiment gets the same key on every machine and after a restart."""
    config = {k: v for k, v in config.items() if k != "logger"}
    if isinstance(config.get("data"), dict):  # where the cache lives is not part of the experiment
        config["data"] = {k: v for k, v in config["data"].items() if k != "cache_dir"}
    blob = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _finite(obj):
    """Strict JSON: a non-finite float (NaN, ±inf) is written as null, never as the invalid token NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_results(path: Path, record: dict) -> Path:
    """Write `record` as JSON to `path` atomically; refuse to replace finished results."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already holds finished results; refusing to overwrite it")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_finite(record), f, indent=2, sort_keys=False, default=float, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # atomic, and fails if `path` appeared meanwhile
    finally:
        os.unlink(tmp)
    return path
