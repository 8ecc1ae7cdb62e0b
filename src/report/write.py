"""Render a collected sweep: report.md, report.csv (one row per configuration), runs.csv (one row per finished
member), the PNG plots (drawn by src/plots.py), a rich table, and one W&B run of the sweep's group with
job_type=report (offline unless logged in, like the runs). Statistics: src/report/stats.py.

Numbers: a mean ± std shows the std to 2 significant digits and the mean to the same decimal place
(10,750 ± 460, 31.45 ± 0.41); exact counts (params, FLOPs per token) and a std of 0 print no "±"."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from .aggregate import add_statistics, aggregate, row_name
from .identity import group, select
from .collect import Member, unreadable
from .figures import draw_figures

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


def write_report(members: list[Member], out: Path, buckets, metric: str | None = None,
                 baseline: list[str] | None = None) -> dict:
    """Writes everything into `out` (never into a run dir); returns {"rows", "plots", "notes", "crossings",
    "stats", ...}. `baseline`: --baseline KEY=VALUE specs naming one configuration (ConfigError before anything
    is written when they do not)."""
    records = [m.record for m in members if m.record]
    configs = group(records)
    base = select(configs, baseline) if baseline else None
    out.mkdir(parents=True, exist_ok=True)
    rows = aggregate(records, metric)
    where = {id(m.record): Path(m.where) for m in members if m.record and not m.where.startswith("wandb:")}
    stats = add_statistics(rows, configs, lambda r: where.get(id(r)), metric, base)
    notes = list(stats["notes"])
    for r in rows:
        if len(set(map(str, r["seeds"]))) < r["n"]:
            notes.append(f"{r['arch']} {r['size']} {r['decode']}: {r['n']} members with seeds {r['seeds']}: a seed "
                         "repeats (the same configuration run twice?); they are averaged as if independent")
    metric = rows[0]["headline"] if rows and len({r["headline"] for r in rows}) == 1 else "headline metric"

    figures = draw_figures(members, out, buckets, metric if metric != "headline metric" else None, base)
    notes += figures.notes
    plot_paths, crossings, bleu_series = figures.plots, figures.crossings, figures.bleu_by_length

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
    lines += matrix(f"## Win matrix: batch-1 latency (row vs column, lower wins; {how}; n/a = timed on another "
                    "machine)", st["names"], st["latency"])
    machines = st.get("machines") or {}
    if len({m for ms in machines.values() for m in ms}) > 1:
        lines += ["", "Timed on more than one machine (speed columns compare only within one): "
                  + "; ".join(f"{name}: {', '.join(ms)}" for name, ms in machines.items()) + "."]
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
