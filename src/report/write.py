"""Render a collected sweep: report.md, report.csv, the PNG plots (drawn by src/plots.py), a rich table, and one
W&B run of the sweep's group with job_type=report (offline unless logged in, like the runs)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from .aggregate import aggregate
from .collect import Member, unreadable
from .figures import draw_figures

TABLE_MEASURES = ("metric", "params", "train_tokens_per_s")


def fmt(mean, std=None) -> str:
    if mean is None:
        return "—"
    text = f"{mean:.4g}" if abs(mean) < 1000 else f"{mean:,.0f}"
    return text + (f" ± {std:.2g}" if std is not None else "")


def table_columns(rows: list[dict]) -> list[str]:
    measures = [m for m in TABLE_MEASURES] + sorted({k[:-5] for r in rows for k in r if k.endswith("_mean")
                                                     and k[:-5] not in TABLE_MEASURES})
    return measures


def write_report(members: list[Member], out: Path, buckets, metric: str | None = None) -> dict:
    """Writes everything into `out` (never into a run dir); returns {"rows", "plots", "notes", "crossings", ...}."""
    out.mkdir(parents=True, exist_ok=True)
    records = [m.record for m in members if m.record]
    rows = aggregate(records, metric)
    notes = []
    for r in rows:
        if len(set(map(str, r["seeds"]))) < r["n"]:
            notes.append(f"{r['arch']} {r['size']} {r['decode']}: {r['n']} members with seeds {r['seeds']}: a seed "
                         "repeats (the same configuration run twice?); they are averaged as if independent")
    metric = rows[0]["headline"] if rows and len({r["headline"] for r in rows}) == 1 else "headline metric"

    figures = draw_figures(members, out, buckets, metric if metric != "headline metric" else None)
    notes += figures.notes
    plot_paths, crossings, bleu_series = figures.plots, figures.crossings, figures.bleu_by_length

    columns = list(rows[0]) if rows else []
    for r in rows[1:]:
        columns += [k for k in r if k not in columns]
    with (out / "report.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows({**r, "seeds": " ".join(map(str, r["seeds"]))} for r in rows)
    result = {"rows": rows, "plots": plot_paths, "notes": notes, "crossings": crossings, "bleu_by_length": bleu_series,
              "failed": [m for m in members if not m.record]}
    (out / "report.md").write_text(markdown(result, members))
    return result


def markdown(result: dict, members: list[Member]) -> str:
    rows, measures = result["rows"], table_columns(result["rows"])
    mixed = len({r["headline"] for r in rows}) > 1  # e.g. a translation and an lm sweep in one report
    head = ["arch", "task", "data", "size", "device", "decode", "n"] + [
        (("headline metric" if mixed else rows[0]["headline"]) if m == "metric" and rows else m) for m in measures]
    lines = ["# Sweep report", "", f"{len(members)} members: {len(members) - len(result['failed'])} finished, "
             f"{len(result['failed'])} not. Values are mean ± sample std (n-1) over seeds; n = seed count.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r[k]) for k in ("arch", "task", "data", "size", "device", "decode", "n")]
        values = [(f"{r['headline']}: " if m == "metric" and mixed else "") + fmt(r.get(f"{m}_mean"), r.get(f"{m}_std"))
                  for m in measures]
        lines.append("| " + " | ".join(cells + values) + " |")
    if result["failed"]:
        lines += ["", "## Members without results", "", "| run | state | error |", "|---|---|---|"]
        lines += [f"| {m.where} | {m.state} | {(m.error or '').replace('|', '/').splitlines()[0] if m.error else ''} |"
                  for m in result["failed"]]
    if result["crossings"]:
        lines += ["", "## AR vs NAR crossover (batch size where NAR stops beating AR on latency; fixed-length "
                  "rows, <eos> banned, so AR and NAR emit the same number of tokens)", ""]
        lines += [f"- {k}: {v['status']}" + (f", ≈ {v['batch_size']:.1f} (first loss at {v['first_loss']})"
                                             if v["batch_size"] else "") for k, v in result["crossings"].items()]
    if result["bleu_by_length"]:
        lines += ["", "## BLEU by source length (words)", ""]
        lines += [f"- {k}: " + ", ".join(f"{b}: {v:.1f}" for b, v in s.items()) for k, s in result["bleu_by_length"].items()]
    lines += [""] + [f"![{name}]({p.name})" for name, p in result["plots"].items()]
    lines += [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    rows, measures = result["rows"], table_columns(result["rows"])
    table = Table(title="archbench sweep report (mean ± std over seeds)")
    headline = rows[0]["headline"] if rows and len({r["headline"] for r in rows}) == 1 else "metric"
    for col in ("arch", "task", "data", "size", "device", "decode", "n", *measures):
        table.add_column(headline if col == "metric" else col, justify="right" if col not in ("arch", "task", "data", "size", "device", "decode") else "left")
    for r in rows:
        table.add_row(*[str(r[k]) for k in ("arch", "task", "data", "size", "device", "decode", "n")],
                      *[fmt(r.get(f"{m}_mean"), r.get(f"{m}_std")) for m in measures])
    console = Console()
    if not console.is_terminal:  # piped / logged: keep the table's columns whole
        console = Console(width=220)
    console.print(table)
    if result["failed"]:  # one line naming every member the table leaves out, and why
        console.print("[red]not in the table[/red], " + escape(unreadable(result["failed"])), soft_wrap=True)
    for note in result["notes"]:
        console.print(f"note: {note}")


def typed_table(rows: list[dict], columns: list[str] | None = None) -> tuple[list[str], list[list]]:
    """(columns, data) for a wandb.Table that W&B can sort and plot: numbers stay numbers (ints, floats; None is
    a missing value), lists are joined with spaces, and a column mixing numbers and text becomes text."""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))

    def cell(v):
        if isinstance(v, (list, tuple)):
            return " ".join(map(str, v))
        return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)

    data = [[cell(r.get(c)) for c in columns] for r in rows]
    for j, _ in enumerate(columns):
        kinds = {type(row[j]) for row in data if row[j] is not None}
        if str in kinds and len(kinds) > 1:
            for row in data:
                row[j] = None if row[j] is None else str(row[j])
    return columns, data


def runs_table(members: list[Member]) -> list[dict]:
    """One row per member: where, state, configuration, seed and its own numbers (the table behind report.csv)."""
    out = []
    for m in members:
        r = m.record or {}
        headline = r.get("headline_metric")
        out.append({"run": Path(m.where).name, "state": m.state, "arch": r.get("arch"), "task": r.get("task"),
                    "data": r.get("data"), "size": r.get("size"), "seed": r.get("seed"), "headline": headline,
                    "metric": (r.get("metrics") or {}).get(headline) if headline else None,
                    "val_best": (r.get("validation") or {}).get("best"), "params": r.get("params"),
                    "train_tokens_per_s": (r.get("train") or {}).get("tokens_per_s"),
                    "train_flops": (r.get("train") or {}).get("flops"), "error": m.error})
    return out


def report_group(members: list[Member], group: str | None) -> str | None:
    """The W&B group the report run joins: `group` (--group), else the members' logger.group when they share one,
    else the sweep's own (src/loggers.py sweep_group, which its multirun members were logged into)."""
    from ..loggers import sweep_group

    if group:
        return group
    cfgs = [m.record.get("config") or {} for m in members if m.record]
    named = {(c.get("logger") or {}).get("group") for c in cfgs}
    if len(named) == 1 and None not in named:
        return named.pop()
    parents = {Path(m.where).parent for m in members if not m.where.startswith("wandb:")}
    if len(parents) == 1 and (next(iter(parents)) / "multirun.yaml").exists():  # a Hydra sweep dir
        return sweep_group(parents.pop())
    return None


def log_to_wandb(result: dict, members: list[Member], out: Path, group: str | None) -> Path | None:
    """One W&B run (job_type=report) of the sweep's group: typed tables (configurations, runs) and every plot;
    offline unless logged in."""
    import wandb

    from ..loggers import wandb_logged_in  # deferred with wandb: lightning is heavy, only --wandb needs it

    cfgs = [m.record.get("config") or {} for m in members if m.record]
    project = next((c.get("logger", {}).get("project") for c in cfgs if c.get("logger", {}).get("project")), "archbench")
    mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
    run = wandb.init(project=project, group=report_group(members, group), job_type="report",
                     name=f"report-{out.parent.name}", dir=str(out), mode=mode,
                     config={"members": len(members), "failed": len(result["failed"])})
    tables = {name: wandb.Table(*typed_table(rows)) for name, rows in (("report", result["rows"]),
                                                                       ("runs", runs_table(members))) if rows}
    run.log({**tables, **{f"plots/{name}": wandb.Image(str(p)) for name, p in result["plots"].items()}})
    run.summary.update({"configurations": len(result["rows"]), "members": len(members),
                        "failed": len(result["failed"])})
    run_dir = Path(run.dir).parent
    run.finish()
    return run_dir
