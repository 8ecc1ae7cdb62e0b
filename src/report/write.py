"""Render a collected sweep: report.md, report.csv, the PNG plots (drawn by src/plots.py), a rich table, and one
W&B run of the sweep's group with job_type=report (offline unless logged in, like the runs)."""
from __future__ import annotations

import csv
import os
import statistics
from collections import defaultdict
from pathlib import Path

from ..tasks.scoring import tokenize_of
from .aggregate import get_in, aggregate, bleu_by_length, by_batch_curve, config_of, crossover
from .collect import Member, unreadable

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


def _label(record: dict) -> str:
    c = config_of(record)
    return f"{c['arch']} {c['size']} {c['decode']}"


def _curves(records: list[dict]) -> tuple[dict, dict]:
    """Mean-over-seeds by_batch curves per (configuration, decoding variant), and each NAR curve's crossover
    against the first AR curve at the batch sizes both measured."""
    sums: dict[str, dict] = {}
    family = {}
    for r in records:
        for variant in (r.get("inference") or {}):
            c = by_batch_curve(r, variant)
            if not c["batch_size"]:
                continue
            label = _label(r) + ("" if variant == "decode" else f" [{variant}]")
            family[label] = get_in(r, "config", "arch", "family") or ("nar" if r.get("arch") == "nar" else "ar")
            acc = sums.setdefault(label, defaultdict(lambda: defaultdict(list)))
            for b, ms, tps in zip(c["batch_size"], c["ms_per_sentence"], c["tokens_per_s"]):
                acc[b]["ms_per_sentence"].append(ms)
                acc[b]["tokens_per_s"].append(tps)
    curves = {}
    for label, acc in sums.items():
        bs = sorted(acc)
        curves[label] = {"batch_size": bs, **{k: [statistics.fmean(x for x in acc[b][k] if x is not None)
                                                  if any(x is not None for x in acc[b][k]) else float("nan")
                                                  for b in bs] for k in ("ms_per_sentence", "tokens_per_s")}}
    ar = next((l for l in curves if family[l] != "nar"), None)
    crossings = {}
    if ar:
        for label in (l for l in curves if family[l] == "nar"):
            common = sorted(set(curves[ar]["batch_size"]) & set(curves[label]["batch_size"]))
            pick = lambda l: [curves[l]["ms_per_sentence"][curves[l]["batch_size"].index(b)] for b in common]  # noqa: E731
            crossings[f"{label} vs {ar}"] = crossover(common, pick(ar), pick(label))
    return curves, crossings


def write_report(members: list[Member], out: Path, buckets, metric: str | None = None) -> dict:
    """Writes everything into `out` (never into a run dir); returns {"rows", "plots", "notes", "crossings", ...}."""
    from .. import plots

    out.mkdir(parents=True, exist_ok=True)
    records = [m.record for m in members if m.record]
    rows = aggregate(records, metric)
    notes, plot_paths = [], {}
    for r in rows:
        if len(set(map(str, r["seeds"]))) < r["n"]:
            notes.append(f"{r['arch']} {r['size']} {r['decode']}: {r['n']} members with seeds {r['seeds']}: a seed "
                         "repeats (the same configuration run twice?); they are averaged as if independent")
    metric = rows[0]["headline"] if rows and len({r["headline"] for r in rows}) == 1 else "headline metric"

    if rows:
        plot_paths["quality_vs_throughput"] = plots.quality_vs_throughput(rows, metric, out / "quality_vs_throughput.png")
        plot_paths["throughput_by_device"] = plots.throughput_by_device(rows, out / "throughput_by_device.png")
    curves, crossings = _curves(records)
    if curves:
        plot_paths["ar_vs_nar_batch"] = plots.latency_vs_batch(curves, crossings, out / "ar_vs_nar_batch.png")
    else:
        notes.append("AR vs NAR over batch sizes: skipped, no run has inference[variant].by_batch rows "
                     "(results.json from before the honest benchmark)")
    histories: dict[str, list] = defaultdict(list)
    for m in members:
        if m.history.get("val/loss"):
            histories[_label(m.record) if m.record else Path(m.where).name].append(m.history["val/loss"])
    if histories:
        plot_paths["training_curves"] = plots.training_curves(dict(histories), out / "training_curves.png")
    else:
        notes.append("training curves: skipped, no record['history'] and no csv/metrics.csv in any run")
    bleu = defaultdict(lambda: defaultdict(list))
    for m in members:
        if m.record and m.hypotheses:
            for variant, per in bleu_by_length(m.hypotheses, buckets, tokenize_of(m.record)).items():
                for b, v in per.items():
                    bleu[_label(m.record) + (f" [{variant.rstrip('/')}]" if variant else "")][b].append(v["bleu"])
    bleu_series = {label: {b: statistics.fmean(v) for b, v in per.items()} for label, per in bleu.items()}
    if bleu_series:
        plot_paths["bleu_by_length"] = plots.bleu_by_length_plot(bleu_series, out / "bleu_by_length.png")
    else:
        notes.append("BLEU by source length: skipped, no run dir has hypotheses.jsonl")

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


def log_to_wandb(result: dict, members: list[Member], out: Path, group: str | None) -> Path | None:
    """One W&B run (job_type=report) of the sweep's group: the table and every plot; offline unless logged in."""
    import wandb

    from ..loggers import wandb_logged_in  # deferred with wandb: lightning is heavy, only --wandb needs it

    cfgs = [m.record.get("config") or {} for m in members if m.record]
    project = next((c.get("logger", {}).get("project") for c in cfgs if c.get("logger", {}).get("project")), "archbench")
    group = group or next((c.get("logger", {}).get("group") for c in cfgs if c.get("logger", {}).get("group")), None)
    mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
    run = wandb.init(project=project, group=group, job_type="report", name=f"report-{out.parent.name}", dir=str(out),
                     mode=mode, config={"members": len(members), "failed": len(result["failed"])})
    rows = result["rows"]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    run.log({"report": wandb.Table(columns=columns, data=[[str(r.get(c)) for c in columns] for r in rows]),
             **{f"plots/{name}": wandb.Image(str(p)) for name, p in result["plots"].items()}})
    run.summary.update({"configurations": len(rows), "members": len(members), "failed": len(result["failed"])})
    run_dir = Path(run.dir).parent
    run.finish()
    return run_dir
