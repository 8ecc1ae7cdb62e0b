"""The sweep report's figures, each drawn only where it applies (src/plots.py draws them, one colour per arch):

- quality_vs_throughput   test metric vs training tokens/s, one point per configuration (mean ± std over seeds);
- throughput_by_device    training tokens/s per device / GPU type;
- quality_vs_latency      test metric vs decoding latency at batch 1 and at the largest batch every point measured,
                          the Pareto front marked (runs with `inference[variant].by_batch` rows);
- ar_vs_nar_batch         latency and throughput over batch sizes with the AR/NAR crossover (a sweep with both
                          an AR and a NAR run);
- validation_vs_compute   the task's validation metric vs training FLOPs (else tokens, else steps): mean over seeds,
                          min–max band (runs with a validation history);
- training_curves         train/loss at every logged step, one line per seed; NAR's loss (masked CE + length loss)
                          on its own panel, never on the AR cross-entropy's axis;
- bleu_by_length          BLEU per source-length bucket (Bahdanau et al. 2015, Fig. 2) with each bucket's size and a
                          95 % bootstrap CI (translation runs with hypotheses.jsonl).
(the per-configuration data: src/report/groups.py; the bucket statistics: src/report/bleu_by_length.py)
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .aggregate import by_batch_curve, crossover, get_in
from .bleu_by_length import bleu_series
from .collect import Member
from .groups import (Group, curve_label, curve_variants, family, groups_of, headline_of, higher_is_better, mean_of,
                     mean_std, val_metric, variant_metric)


@dataclass
class Figures:
    """What draw_figures made: the PNGs, what each one shows (read back from the drawn artists), notes for the
    report on figures that could not be drawn, the AR/NAR crossovers, and BLEU per length bucket for report.md."""

    plots: dict[str, Path] = field(default_factory=dict)
    drawn: dict[str, dict] = field(default_factory=dict)   # figure -> plots.Plot.series
    notes: list[str] = field(default_factory=list)
    crossings: dict[str, dict] = field(default_factory=dict)
    bleu_by_length: dict[str, dict[str, float]] = field(default_factory=dict)    # label -> bucket -> mean BLEU
    bleu_by_length_ci: dict[str, dict[str, dict]] = field(default_factory=dict)  # + "low", "high", "n", "seeds"


# ---------------------------------------------------------------------------------------------------- the data


def throughput_points(groups: list[Group], metric: str | None):
    from ..plots import Series

    points = []
    for g in groups:
        x, xs = mean_std(get_in(r, "train", "tokens_per_s") for r in g.records)
        y, ys = mean_std(get_in(r, "metrics", headline_of(r, metric)) for r in g.records)
        if x is not None and y is not None:
            points.append(Series(f"{g.label} (n={len(g.members)})", g.arch, [x], [y], [y - ys], [y + ys], [xs],
                                 g.marker))
    return points


def device_bars(groups: list[Group]):
    from ..plots import Series

    bars: dict[str, Series] = {}
    for g in groups:
        y, ys = mean_std(get_in(r, "train", "tokens_per_s") for r in g.records)
        if y is None:
            continue
        s = bars.setdefault(g.base, Series(g.base, g.arch, [], [], marker=g.marker))
        s.x.append(g.device)
        s.y.append(y)
        s.high = [*(s.high or []), y + ys]
    return list(bars.values())


def latency_at(record: dict, variant: str, batch: int) -> float | None:
    """ms per sentence at `batch` from the benchmark's by_batch rows (fixed-length preferred, src/report/aggregate.py
    by_batch_curve); at batch 1 without rows, inference[variant].latency_ms_batch1."""
    c = by_batch_curve(record, variant)
    if batch in c["batch_size"]:
        return c["ms_per_sentence"][c["batch_size"].index(batch)]
    return get_in(record, "inference", variant, "latency_ms_batch1") if batch == 1 else None


def pareto_front(points: list[tuple[float, float]], higher: bool = True) -> list[bool]:
    """Whether each (latency, quality) point is on the Pareto front: no other point is at least as fast and at
    least as good, and strictly better in one of the two."""
    sign = 1 if higher else -1

    def dominates(a, b):
        return a[0] <= b[0] and sign * a[1] >= sign * b[1] and (a[0] < b[0] or sign * a[1] > sign * b[1])

    return [not any(dominates(q, p) for q in points if q is not p) for p in points]


def latency_panels(groups: list[Group], metric: str | None) -> tuple[dict[str, list], str, bool]:
    """{"batch 1": points, "batch B": points} (B: the largest batch size every point measured), the metric name
    and whether higher is better; a point per (configuration, decoding variant) with a test metric of its own."""
    from ..plots import Series

    found = []  # (group, variant, quality mean, std, {batch: mean ms})
    names = set()
    for g in groups:
        variants = dict.fromkeys(v for r in g.records for v in (r.get("inference") or {}))
        for v in variants:
            names_v = [variant_metric(headline_of(r, metric) or "", v) for r in g.records]
            y, ys = mean_std(get_in(r, "metrics", n) for r, n in zip(g.records, names_v))
            if y is None:
                continue
            batches = {b for r in g.records for b in by_batch_curve(r, v)["batch_size"]} | {1}
            ms = {b: mean_of(latency_at(r, v, b) for r in g.records) for b in batches}
            ms = {b: x for b, x in ms.items() if x is not None}
            if ms:
                found.append((g, v, y, ys, ms))
                names.add(headline_of(g.records[0], metric))
    if not found:
        return {}, "", True
    name = names.pop() if len(names) == 1 else "headline metric"
    higher = higher_is_better(name)
    common = set.intersection(*(set(ms) for *_, ms in found))
    panels = {}
    for b in sorted({1, max(common)}):
        pts = [Series(curve_label(g.label, v), g.arch, [ms[b]], [y],
                      [y - ys], [y + ys], marker=g.marker, dashed=v != "decode") for g, v, y, ys, ms in found]
        for s, on in zip(pts, pareto_front([(s.x[0], s.y[0]) for s in pts], higher)):
            s.front = on
        panels[f"batch {b}"] = pts
    return panels, name, higher


def batch_curves(groups: list[Group], baseline: str | None = None) -> tuple[list, list, dict, dict]:
    """Mean-over-seeds by_batch curves (latency, throughput) per (configuration, decoding variant), each NAR
    curve's crossover against the AR configuration's curves (the baseline configuration when it is AR, else the
    first AR one) at the batch sizes both measured, and each curve's family."""
    from ..plots import Series

    lat, thr, fam, group_of = [], [], {}, {}
    for g in groups:
        for v in dict.fromkeys(v for r in g.records for v in curve_variants(r)):
            acc = defaultdict(lambda: defaultdict(list))
            for r in g.records:
                c = by_batch_curve(r, v)
                for b, ms, tps in zip(c["batch_size"], c["ms_per_sentence"], c["tokens_per_s"]):
                    acc[b]["ms"].append(ms)
                    acc[b]["tps"].append(tps)
            bs = sorted(b for b in acc if mean_of(acc[b]["ms"]) is not None)
            if not bs:
                continue
            label = curve_label(g.label, v)
            fam[label], group_of[label] = family(g.records[0]), g.config
            lat.append(Series(label, g.arch, bs, [mean_of(acc[b]["ms"]) for b in bs], marker=g.marker,
                              dashed=v != "decode"))
            thr.append(Series(label, g.arch, bs, [mean_of(acc[b]["tps"]) or float("nan") for b in bs],
                              marker=g.marker, dashed=v != "decode"))
    crossings = {}  # each NAR curve against one AR configuration, on our loop and on CTranslate2
    ar_curves = [s for s in lat if fam[s.label] != "nar"]
    first = next((s for s in ar_curves if group_of[s.label] == baseline), ar_curves[0] if ar_curves else None)
    for ar in (s for s in ar_curves if group_of[s.label] == group_of[first.label]):
        for s in (s for s in lat if fam[s.label] == "nar"):
            common = sorted(set(ar.x) & set(s.x))
            crossings[f"{s.label} vs {ar.label}"] = crossover(common, [ar.y[ar.x.index(b)] for b in common],
                                                              [s.y[s.x.index(b)] for b in common])
    return lat, thr, crossings, fam


def _x_axis(members: list[Member], key: str) -> str:
    """The compute axis all members of a panel have at every point of `key`: flops, else tokens, else step."""
    for x in ("flops", "tokens"):
        if all(m.history.get(x) and {s for s, _ in m.history[key]} <= {s for s, _ in m.history[x]} for m in members):
            return x
    return "step"


def mean_curve(members: list[Member], key: str, x: str) -> tuple[list, list, list, list]:
    """(x, mean y, min y, max y) of history[key] over the members (seeds), point i of the curve from each member's
    i-th logged point: seeds under one token/FLOPs budget validate at slightly different steps (their batches hold
    different token counts), so aligning on the step would give each seed its own points, a saw-tooth.
    x = the mean of history[x] at those points (x "step": the mean step)."""
    at = defaultdict(list)
    for m in members:
        xs = dict(map(tuple, m.history.get(x) or [])) if x != "step" else None
        points = [(step if xs is None else xs[step], float(y)) for step, y in m.history.get(key) or []
                  if y is not None and (xs is None or step in xs)]
        for i, point in enumerate(points):
            at[i].append(point)
    idx = sorted(at)
    return ([statistics.fmean(p[0] for p in at[i]) for i in idx], [statistics.fmean(p[1] for p in at[i]) for i in idx],
            [min(p[1] for p in at[i]) for i in idx], [max(p[1] for p in at[i]) for i in idx])


XLABEL = {"flops": "training FLOPs", "tokens": "training tokens", "step": "training step"}


def validation_panels(groups: list[Group]) -> tuple[dict, list[str]]:
    """{panel title: (xlabel, ylabel, [Series])}: the validation metric of each configuration vs training compute,
    mean over seeds with a min–max band. A loss is split by family: NAR's val/loss (masked CE + length loss) never
    shares the AR cross-entropy's axis; a run without its task's validation metric falls back to val/loss."""
    from ..plots import Series

    panels, notes = defaultdict(list), []
    for g in groups:
        by_metric = defaultdict(list)
        for m in g.members:
            key = val_metric(m.record)
            if not m.history.get(key):
                key = "val/loss" if m.history.get("val/loss") else None
            if key:
                by_metric[key].append(m)
        for key, ms in by_metric.items():
            nar = family(ms[0].record) == "nar" and "loss" in key
            panels[(key, nar)].append((g, ms))
    out = {}
    for (key, nar), entries in panels.items():
        x = _x_axis([m for _, ms in entries for m in ms], key)
        series = []
        for g, ms in entries:
            xs, ys, lo, hi = mean_curve(ms, key, x)
            band = len(ms) > 1
            series.append(Series(f"{g.label} (n={len(ms)})", g.arch, xs, ys, lo if band else None,
                                 hi if band else None, marker=g.marker))
        title = key + (" · NAR (masked CE + length loss)" if nar else "")
        out[title] = (XLABEL[x], key, series)
    if len({(k, n) for k, n in panels}) > 1 and any(n for _, n in panels):
        notes.append("validation vs compute: NAR's val/loss (masked CE + length loss) is drawn on its own panel")
    return out, notes


def loss_panels(groups: list[Group]) -> dict:
    """train/loss at every logged step, one line per seed, a panel per (task, family)."""
    from ..plots import Series

    panels = defaultdict(list)
    for g in groups:
        for m in g.members:
            points = m.history.get("train/loss") or []
            if points:
                steps, values = zip(*points)
                fam = family(m.record)
                title = f"{m.record.get('task')} · " + ("NAR: masked CE + length loss" if fam == "nar" else "AR")
                panels[title].append(Series(g.label, g.arch, list(steps), list(values), marker=g.marker))
    return {t: ("training step", "train/loss", s) for t, s in panels.items()}


# ---------------------------------------------------------------------------------------------------- drawing


def draw_figures(members: list[Member], out: Path, buckets, metric: str | None = None,
                 baseline: str | None = None) -> Figures:
    """Every figure that applies to `members`, as PNGs in `out`; see the module docstring. `baseline`: the report's
    label of the --baseline configuration (the NAR crossovers are against it when it is AR)."""
    from .. import plots

    figs, groups = Figures(), groups_of(members)

    def keep(name: str, plot) -> None:
        figs.plots[name], figs.drawn[name] = plot.path, plot.series

    if not groups:
        return figs
    out.mkdir(parents=True, exist_ok=True)
    headline = {headline_of(r, metric) for g in groups for r in g.records}
    name = headline.pop() if len(headline) == 1 else "headline metric"
    points = throughput_points(groups, metric)
    if points:
        keep("quality_vs_throughput", plots.quality_vs_throughput(points, name, out / "quality_vs_throughput.png"))
    bars = device_bars(groups)
    if bars:
        keep("throughput_by_device", plots.throughput_by_device(bars, out / "throughput_by_device.png"))

    panels, quality, higher = latency_panels(groups, metric)
    if panels:
        keep("quality_vs_latency", plots.quality_vs_latency(panels, quality, higher, out / "quality_vs_latency.png"))
    lat, thr, figs.crossings, fam = batch_curves(groups, baseline)
    nar = any(family(r) == "nar" for g in groups for r in g.records)
    if lat and {"nar", "ar"} <= set(fam.values()):
        keep("ar_vs_nar_batch", plots.latency_vs_batch(lat, thr, figs.crossings, out / "ar_vs_nar_batch.png"))
    elif nar:
        figs.notes.append("AR vs NAR over batch sizes: skipped, the sweep's AR and NAR runs do not both have "
                          "inference[variant].by_batch rows (results.json from before the honest benchmark?)")

    val, notes = validation_panels(groups)
    figs.notes += notes
    if val:
        keep("validation_vs_compute", plots.curves(val, "validation metric vs training compute (mean over seeds, "
                                                        "band: min–max)", out / "validation_vs_compute.png"))
    losses = loss_panels(groups)
    if losses:
        keep("training_curves", plots.curves(losses, "training loss (every logged step, one line per seed)",
                                             out / "training_curves.png"))
    else:
        figs.notes.append("training curves: skipped, no record['history'] and no csv/metrics.csv in any run")

    bleu = bleu_series(groups, buckets)
    if bleu:
        series = [plots.Series(label, g.arch, list(ci), [c["bleu"] for c in ci.values()],
                               [c["low"] for c in ci.values()], [c["high"] for c in ci.values()], marker=g.marker,
                               dashed=v != "decode") for label, (g, v, ci) in bleu.items()]
        sizes = defaultdict(set)
        for _, _, ci in bleu.values():
            for b, c in ci.items():
                sizes[b].add(c["n"])
        counts = {b: (str(min(n)) if len(n) == 1 else f"{min(n)}–{max(n)}") for b, n in sizes.items()}
        keep("bleu_by_length", plots.bleu_by_length_plot(series, counts, out / "bleu_by_length.png"))
        figs.bleu_by_length_ci = {label: ci for label, (_, _, ci) in bleu.items()}
        figs.bleu_by_length = {label: {b: c["bleu"] for b, c in ci.items()} for label, ci in figs.bleu_by_length_ci.items()}
    elif any(r.get("task") == "translation" for g in groups for r in g.records):
        figs.notes.append("BLEU by source length: skipped, no run dir has hypotheses.jsonl")
    return figs
