"""The per-run results record (`results.json`): what a report aggregates across a sweep.

Written atomically (src/atomic.py: temp file in the same directory, fsynced, hard-linked), never over an existing
file."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import subprocess
import typing
from pathlib import Path

from .atomic import write_json_atomic
from .config import RunConfig

SCHEMA_VERSION = 1


def run_key(config: dict) -> str:
    """Deterministic id of a run: a hash of its resolved config (seed included, logger settings and the data cache
    excluded), so the same experiment gets the same key on every machine and after a restart. A field at its schema
    default is left out of the hash, so a switch added to the schema later (at the default that keeps the old
    behaviour) does not change the key of a run made before it: a re-run sweep still finds and resumes that run."""
    config = {k: v for k, v in config.items() if k != "logger"}
    if isinstance(config.get("data"), dict):  # where the cache lives is not part of the experiment
        config["data"] = {k: v for k, v in config["data"].items() if k != "cache_dir"}
    defaults = schema_defaults()
    keyed = {k: v for k, v in flatten(config).items()
             if not (k in defaults and type(v) is type(defaults[k]) and v == defaults[k])}
    blob = json.dumps(keyed, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def flatten(d: dict, prefix: str = "") -> dict:
    """{"optim": {"lr": 1e-3}} -> {"optim.lr": 1e-3}; lists kept whole (as JSON-like text, hashable)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = str(v) if isinstance(v, (list, dict)) else v
    return out


@functools.cache
def schema_defaults() -> dict:
    """{dotted key: default} of every scalar field of the run schema that has a default (nested dataclasses
    followed, a required one's fields included)."""
    def walk(cls, prefix: str) -> dict:
        out, types = {}, typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(types[f.name]):
                out.update(walk(types[f.name], f"{prefix}{f.name}."))
            elif f.default is not dataclasses.MISSING and not isinstance(f.default, (list, dict)):
                out[f"{prefix}{f.name}"] = f.default
        return out
    return walk(RunConfig, "")


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
