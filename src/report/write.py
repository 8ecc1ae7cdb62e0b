"""Render a collected sweep: report.md, report.csv (one row per configuration), runs.csv (one row per finished
member), the PNG plots (drawn by src/plots.py), a rich table, and one W&B run of the sweep's group with
job_type=report (offline unless logged in, like the runs). Statistics: src/report/stats.py.

Numbers: a mean ± std shows the std to 2 significant digits and the mean to the same decimal place
(10,750 ± 460, 31.45 ± 0.41); exact counts (params, FLOPs per token) and a std of 0 print no "±"."""
from __future__ import annotations

import csv
import math
import os
import statistics
from collections import defaultdict
from pathlib import Path

from ..tasks.scoring import tokenize_of
from .aggregate import add_statistics, aggregate, bleu_by_length, by_batch_curve, crossover, row_name
from .identity import config_of, get_in, group, select
from .collect import Member, unreadable

TABLE_MEASURES = ("metric", "params", "flops_per_token", "train_tokens_per_s")
EXACT = ("params", "flops_per_token")  # counts: never "± 0"
CONFIG_COLUMNS = ("arch", "task", "data", "size", "device", "decode", "n")


def number(x: float) -> str:
    """4 significant digits, thousands separated; integers (and anything >= 1000) in full."""
    if abs(x) >= 1e15 or (x != 0 and abs(x) < 1e-4):
        return f"{x:.3g}"
    if abs(x) >= 1000 or float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:.4g}"


def fmt(mean, std=None) -> str:
    """"10,750 ± 460", "31.45 ± 0.41", "908,800" (std None or 0: no ±), "—" for a missing value."""
    if mean is None or (isinstance(mean, float) and not math.isfinite(mean)):
        return "—"
    if not std or not math.isfinite(std):
        return number(mean)
    d = 1 - math.floor(math.log10(abs(std)))  # decimals that keep 2 significant digits of the std
    if d <= 0:
        step = 10 ** -d
        return f"{round(mean / step) * step:,.0f} ± {round(std / step) * step:,.0f}"
    return f"{mean:,.{d}f} ± {std:,.{d}f}"


def _ci_decimals(low, high) -> int:
    """Decimals that show one significant digit of the interval's half-width (as the sentences: stats.decimals)."""
    from .stats import decimals

    return decimals((high - low) / 2)


def fmt_ci(low, high) -> str:
    if low is None or high is None:
        return "—"
    if low == high:  # a constant metric: zero width
        return f"{number(low)}–{number(high)}"
    d = _ci_decimals(low, high)
    return f"{low:,.{d}f}{'–' if low >= 0 else ' to '}{high:,.{d}f}"


def fmt_delta(row: dict) -> str:
    delta, low, high = (row.get(k) for k in ("delta_vs_baseline", "delta_vs_baseline_ci_low",
                                             "delta_vs_baseline_ci_high"))
    if delta is None:
        return "—"
    return f"{delta:+,.{_ci_decimals(low, high)}f} ({fmt_ci(low, high)})"


def fmt_p(p) -> str:
    return "—" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}")


def table_columns(rows: list[dict]) -> list[str]:
    rest = {k[:-5] for r in rows for k in r if k.endswith("_mean") and k[:-5] not in TABLE_MEASURES}
    # ours (natural mode), then ours in fixed mode beside CTranslate2's (bench.ct2), then evaluations
    def order(m: str) -> tuple:
        return (2 if m.startswith("ct2_") else 1 if "/fixed_" in m else 3 if m.startswith("eval:") else 0), m

    return [*TABLE_MEASURES, *sorted(rest, key=order)]


def cell(row: dict, measure: str) -> str:
    return fmt(row.get(f"{measure}_mean"), None if measure in EXACT else row.get(f"{measure}_std"))


def write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows({**r, "seeds": " ".join(map(str, r["seeds"]))} if "seeds" in r else r for r in rows)


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


def write_report(members: list[Member], out: Path, buckets, metric: str | None = None,
                 baseline: list[str] | None = None) -> dict:
    """Writes everything into `out` (never into a run dir); returns {"rows", "plots", "notes", "crossings",
    "stats", ...}. `baseline`: --baseline KEY=VALUE specs naming one configuration (ConfigError before anything
    is written when they do not)."""
    records = [m.record for m in members if m.record]
    configs = group(records)
    base = select(configs, baseline) if baseline else None
    from .. import plots  # matplotlib: after the input is checked
    out.mkdir(parents=True, exist_ok=True)
    rows = aggregate(records, metric)
    where = {id(m.record): Path(m.where) for m in members if m.record and not m.where.startswith("wandb:")}
    stats = add_statistics(rows, configs, lambda r: where.get(id(r)), metric, base)
    notes, plot_paths = list(stats["notes"]), {}
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

    write_csv(out / "report.csv", rows)
    write_csv(out / "runs.csv", stats["runs"])
    result = {"rows": rows, "plots": plot_paths, "notes": notes, "crossings": crossings, "bleu_by_length": bleu_series,
              "failed": [m for m in members if not m.record], "stats": stats}
    (out / "report.md").write_text(markdown(result, members))
    return result


def markdown(result: dict, members: list[Member]) -> str:
    rows, measures, st = result["rows"], table_columns(result["rows"]), result["stats"]
    mixed = len({r["headline"] for r in rows}) > 1  # e.g. a translation and an lm sweep in one report
    headline = ("headline metric" if mixed else rows[0]["headline"]) if rows else "metric"
    head = ["configuration", *CONFIG_COLUMNS, headline, "95 % CI", "Δ vs baseline (95 % CI)", "p vs baseline"] + [
        m for m in measures if m != "metric"]
    lines = ["# Sweep report", "", f"{len(members)} members: {len(members) - len(result['failed'])} finished, "
             f"{len(result['failed'])} not. Values are mean ± sample std (n-1) over seeds; n = seed count. 95 % CI: "
             "the t-interval over seeds (n ≥ 2), else the one run's bootstrap CI over test examples (1,000 "
             "resamples); per-run CIs in runs.csv. Δ and p: paired on the same test examples (src/report/stats.py).",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = r["label"] or "—"
        delta = "baseline" if st["baseline"] is not None and st["baseline"] == row_name(r) else fmt_delta(r)
        cells = [name, *(str(r[k]) for k in CONFIG_COLUMNS),
                 (f"{r['headline']}: " if mixed else "") + cell(r, "metric"),
                 fmt_ci(r.get("metric_ci_low"), r.get("metric_ci_high")) + (" (1 run)" if r.get("metric_ci_kind", "")
                                                                           .startswith("bootstrap") else ""),
                 delta, fmt_p(r.get("p_vs_baseline"))]
        lines.append("| " + " | ".join(cells + [cell(r, m) for m in measures if m != "metric"]) + " |")
    lines += significance(result)
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


def matrix(title: str, names: list[str], cells: dict) -> list[str]:
    """A configuration × configuration table: the row's verdict against the column, and the row's win count."""
    if not cells:
        return []
    lines = ["", title, "", "| | " + " | ".join(names) + " | wins |", "|" + "---|" * (len(names) + 2)]
    for a in names:
        verdicts = ["·" if a == b else cells.get((a, b), "n/a") for b in names]
        lines.append(f"| {a} | " + " | ".join(verdicts) + f" | {verdicts.count('win')} |")
    return lines


def significance(result: dict) -> list[str]:
    """The comparisons in words, the win matrices and the sacreBLEU signatures (report.md)."""
    st, lines = result["stats"], []
    if st["baseline"] is not None:
        lines += ["", f"## Against the baseline {st['baseline']} (paired on the same test examples, pooled over "
                      "seeds paired by seed; p < 0.05 is significant, no multiple-comparison correction)", ""]
        lines += [f"- {c}" for c in st["claims"]] or ["- no other configuration"]
    elif len(result["rows"]) > 1:
        lines += ["", "No --baseline KEY=VALUE: no paired test against one configuration (the win matrix below "
                      "compares every pair)."]
    lines += matrix("## Win matrix: quality (row vs column: win / loss = significantly better / worse, paired "
                    "bootstrap p < 0.05; tie = not significant; n/a = no per-example predictions or another test set)",
                    st["names"], st["quality"])
    how = ("ranges (median ± recorded spread of the timed repeats, over seeds) that do not overlap decide; tie = "
           "they overlap" if st["spread_used"] else "no recorded spread for some runs: the plain mean decides, "
           "differences may be noise")
    lines += matrix(f"## Win matrix: batch-1 latency (row vs column, lower wins; {how})", st["names"], st["latency"])
    if st["signatures"]:
        lines += ["", "## sacreBLEU signatures", ""] + [f"- `{s}`" for s in st["signatures"]]
    if any(k.startswith("ct2_") for r in result["rows"] for k in r):
        lines += ["", "CTranslate2 columns (bench.ct2=true): fixed mode (<eos> banned, bench.fixed_tokens per sentence) "
                      "on the same test batches, CPU; compare them with decode/fixed_*, not with the natural-mode "
                      "decode/latency_ms."]
    return lines


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    rows, measures = result["rows"], table_columns(result["rows"])
    table = Table(title="archbench sweep report (mean ± std over seeds, 95 % CI, p vs baseline)")
    headline = rows[0]["headline"] if rows and len({r["headline"] for r in rows}) == 1 else "metric"
    left = ("configuration", "arch", "task", "data", "size", "device", "decode")
    for col in ("configuration", *CONFIG_COLUMNS, "metric", "95 % CI", "p", *[m for m in measures if m != "metric"]):
        table.add_column(headline if col == "metric" else col, justify="left" if col in left else "right")
    for r in rows:
        table.add_row(escape(r["label"] or "—"), *[escape(str(r[k])) for k in CONFIG_COLUMNS], cell(r, "metric"),
                      fmt_ci(r.get("metric_ci_low"), r.get("metric_ci_high")), fmt_p(r.get("p_vs_baseline")),
                      *[cell(r, m) for m in measures if m != "metric"])
    console = Console()
    if not console.is_terminal:  # piped / logged: keep the table's columns whole
        console = Console(width=220)
    console.print(table)
    if result["failed"]:  # one line naming every member the table leaves out, and why
        console.print("[red]not in the table[/red], " + escape(unreadable(result["failed"])), soft_wrap=True)
    for claim in result["stats"]["claims"]:
        console.print(escape(claim), soft_wrap=True)
    for note in result["notes"]:
        console.print(f"note: {escape(note)}", soft_wrap=True)


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
