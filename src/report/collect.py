"""Collect the members of a sweep: every run directory under the given paths (Hydra multirun dirs
`multirun/<date>/<time>/<n>_<name>/`, SLURM sweep dirs, or run dirs listed one by one), or the runs of a W&B group.

A member is finished when its `results.json` exists; otherwise its state and error come from `status.json`
(written by the run), or it is reported as "no results.json". Nothing is dropped silently, nothing is written."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError

MARKERS = ("results.json", "status.json", ".hydra")
SKIP = {"report", "wandb", "checkpoints", "csv", ".hydra", ".submitit", "eval"}


@dataclass
class Member:
    """One run of the sweep: its directory (or W&B path), record (None unless finished), state and error."""

    where: str
    record: dict | None
    state: str
    error: str | None = None
    history: dict = field(default_factory=dict)  # {"val/loss": [[step, value], ...]}
    hypotheses: list = field(default_factory=list)  # rows of hypotheses.jsonl


def is_run_dir(path: Path) -> bool:
    return any((path / m).exists() for m in MARKERS)


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Every run directory at or under `paths`, in sorted order (no duplicates)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise ConfigError(f"{path} is not a directory (give a sweep dir or run dirs)")
        if is_run_dir(path):
            found.append(path)
            continue
        stack = sorted((p for p in path.iterdir() if p.is_dir() and p.name not in SKIP), reverse=True)
        while stack:
            p = stack.pop()
            if is_run_dir(p):
                found.append(p)
            else:
                stack.extend(sorted((q for q in p.iterdir() if q.is_dir() and q.name not in SKIP), reverse=True))
    return list(dict.fromkeys(p.resolve() for p in found))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return e


def history_of(run_dir: Path, record: dict | None) -> dict:
    """Validation/training loss vs step: record["history"] when present, else the CSV logger's metrics.csv."""
    history = (record or {}).get("history")
    if isinstance(history, dict) and history:
        return history
    metrics = run_dir / "csv" / "metrics.csv"
    out: dict[str, list] = {}
    if metrics.exists():
        with metrics.open() as f:
            for row in csv.DictReader(f):
                for key in ("val/loss", "train/loss"):
                    if row.get(key) not in (None, ""):
                        out.setdefault(key, []).append([int(row["step"]), float(row[key])])
    return out


def jsonl_file(path: Path) -> Path | None:
    """`path`, else `path`.gz (a committed study's members keep their per-example files compressed), else None."""
    gz = path.with_name(path.name + ".gz")
    return path if path.exists() else gz if gz.exists() else None


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a .jsonl (or .jsonl.gz) file, one a line; unreadable lines are skipped, a missing file
    gives []."""
    import gzip

    found = jsonl_file(path)
    if found is None:
        return []
    text = gzip.decompress(found.read_bytes()).decode() if found.suffix == ".gz" else found.read_text()
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return [r for r in rows if isinstance(r, dict)]


def read_hypotheses(run_dir: Path) -> list[dict]:
    return read_jsonl(run_dir / "hypotheses.jsonl")


def read_evals(run_dir: Path) -> dict[str, dict]:
    """name -> the record of <run_dir>/eval/<name>/results.json (python -m src.eval), readable ones only."""
    out = {}
    for path in sorted((run_dir / "eval").glob("*/results.json")):
        record = _read_json(path)
        if isinstance(record, dict):
            out[path.parent.name] = record
    return out


def read_member(run_dir: Path) -> Member:
    results = run_dir / "results.json"
    if results.exists():
        record = _read_json(results)
        if isinstance(record, Exception) or not isinstance(record, dict):
            return Member(str(run_dir), None, "unreadable", f"results.json: {record}")
        evals = read_evals(run_dir)
        if evals:  # in memory only: the report's extra columns, one per eval name
            record = {**record, "evals": evals}
        return Member(str(run_dir), record, "finished", None, history_of(run_dir, record), read_hypotheses(run_dir))
    status = _read_json(run_dir / "status.json") if (run_dir / "status.json").exists() else None
    if isinstance(status, dict):
        return Member(str(run_dir), None, str(status.get("state", "unknown")), status.get("error") or "no results.json",
                      history_of(run_dir, None))
    return Member(str(run_dir), None, "unfinished", "no results.json (still running, or killed)",
                  history_of(run_dir, None))


def unreadable(members: list[Member]) -> str:
    """'N unreadable: <run> (<state>: <why>), ...' for the members without a readable results.json (one line)."""
    missing = [m for m in members if not m.record]
    why = [f"{Path(m.where).name} ({m.state}" + (f": {m.error.splitlines()[0]})" if m.error else ")") for m in missing]
    return f"{len(missing)} unreadable: {', '.join(why)}"


def collect(paths: list[Path]) -> list[Member]:
    dirs = find_run_dirs(paths)
    if not dirs:
        raise ConfigError(f"no run directories (with results.json, status.json or .hydra/) under {', '.join(map(str, paths))}")
    return [read_member(d) for d in dirs]


def collect_wandb(project_path: str, group: str | None) -> list[Member]:
    """The runs of `entity/project` (optionally one group) through the public API; needs a login."""
    from ..loggers import wandb_logged_in  # deferred with wandb: lightning is heavy, only --wandb needs it

    if "/" not in project_path:
        raise ConfigError(f"--wandb {project_path!r}: expected entity/project")
    if not wandb_logged_in():
        raise ConfigError("--wandb needs a W&B login (run `wandb login` or set WANDB_API_KEY); "
                          "offline runs: report their local run dirs instead")
    import wandb

    try:
        runs = wandb.Api().runs(project_path, filters={"group": group} if group else None)
        members = []
        for run in runs:
            cfg, summary = dict(run.config), dict(run.summary)
            record = None
            if run.state == "finished":
                record = {"arch": cfg.get("arch", {}).get("name"), "task": cfg.get("task", {}).get("name"),
                          "data": cfg.get("data", {}).get("name"), "size": cfg.get("size", {}).get("name"),
                          "seed": cfg.get("seed"), "decode": cfg.get("decode", {}),
                          "headline_metric": cfg.get("task", {}).get("metric"),
                          "metrics": {k: v for k, v in summary.items() if k.startswith(("test/", "val/"))},
                          "params": summary.get("params"),
                          "train": {"tokens_per_s": summary.get("train/tokens_per_s")}, "inference": {}}
            members.append(Member(f"wandb:{run.path}", record, run.state, None if record else f"W&B state {run.state}"))
    except Exception as e:  # network / auth / missing project: one line, not a traceback
        raise ConfigError(f"--wandb {project_path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return members
