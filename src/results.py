"""The per-run results record (`results.json`): what a report aggregates across a sweep.

Written atomically (src/atomic.py: temp file in the same directory, fsynced, hard-linked), never over an existing
file."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from .atomic import write_json_atomic

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


def write_results(path: Path, record: dict) -> Path:
    """Write `record` as JSON to `path` atomically and durably; refuse to replace finished results."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already holds finished results; refusing to overwrite it")
    return write_json_atomic(path, record, durable=True, exclusive=True)
