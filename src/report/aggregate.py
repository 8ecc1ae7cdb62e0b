"""Aggregate finished members into one row per configuration: mean ± sample std (n-1) over seeds, and the seed count.

A configuration and its label: src/report/identity.py. Its statistics (CIs, paired tests, win matrices):
`add_statistics` here, with src/report/stats.py.
Also: the AR/NAR latency crossover over batch sizes, and sacreBLEU per source-length bucket (Bahdanau et al. 2015,
"Neural Machine Translation by Jointly Learning to Align and Translate", Fig. 2)."""
from __future__ import annotations

import statistics

from ..config import ConfigError
from .identity import KEYS, config_of, decode_label, device_of, get_in, group  # noqa: F401  (re-exported: write.py, plots)


def mean_std(values) -> tuple[float | None, float | None, int]:
    """(mean, sample standard deviation with n-1, n) of the non-missing values; std is None below 2 values."""
    xs = [float(v) for v in values if isinstance(v, (int, float))]
    if not xs:
        return None, None, 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None), len(xs)


def measures(record: dict, metric: str | None = None) -> dict:
    """The per-run numbers a row averages: headline metric (`metric`, default the run's own), params, train
    tokens/s, inference per decoding, and the headline metric of each evaluation (`eval:<name>`, src/eval.py)."""
    headline = metric or record.get("headline_metric")
    out = {"metric": get_in(record, "metrics", headline) if headline else None,
           "params": record.get("params"), "flops_per_token": get_in(record, "train", "flops_per_token"),
           "train_tokens_per_s": get_in(record, "train", "tokens_per_s")}
    for variant, d in (record.get("inference") or {}).items():
        if isinstance(d, dict):
            out[f"{variant}/latency_ms"] = d.get("latency_ms_batch1")
            out[f"{variant}/tokens_per_s"] = d.get("throughput_tokens_per_s")
            out.update(ct2_measures(d, variant))
    for name, ev in (record.get("evals") or {}).items():  # python -m src.eval: the headline metric per test set
        out[f"eval:{name}"] = get_in(ev, "metrics", headline) if headline else None
    return out


def _fixed(rows: list, batch_size: int | None = None) -> dict | None:
    """The fixed-mode by_batch row at `batch_size` (None: the largest)."""
    rows = sorted((r for r in rows or [] if isinstance(r, dict) and r.get("mode", "fixed") == "fixed"),
                  key=lambda r: r.get("batch_size", 0))
    if not rows:
        return None
    return rows[-1] if batch_size is None else next((r for r in rows if r.get("batch_size") == batch_size), None)


def ct2_engines(decode: dict) -> dict[str, dict]:
    """The CTranslate2 entries a bench.ct2 run timed beside its "decode" entry: {"ct2_float32": {..., "by_batch"}}."""
    return {k: v for k, v in (decode or {}).items() if k.startswith("ct2_") and isinstance(v, dict) and v.get("by_batch")}


def ct2_measures(decode: dict, variant: str = "decode") -> dict:
    """A bench.ct2 run's CTranslate2 entries (src/speed/deploy.py `run_ct2`) beside ours, all in fixed mode (<eos>
    banned, bench.fixed_tokens per sentence, the same test batches): <variant>/fixed_latency_ms (batch 1,
    ms/sentence) and <variant>/fixed_tokens_per_s (the largest batch CT2 ran), and ct2_<q>/latency_ms,
    ct2_<q>/tokens_per_s for each quantization. {} for a run without CT2 entries."""
    engines = ct2_engines(decode)
    if not engines:
        return {}
    out = {}
    for name, entry in engines.items():
        one, big = _fixed(entry["by_batch"], 1), _fixed(entry["by_batch"])
        out[f"{name}/latency_ms"] = one and one.get("ms_per_sentence")
        out[f"{name}/tokens_per_s"] = big and big.get("tokens_per_s")
        ours_one = _fixed(decode.get("by_batch"), 1)
        ours_big = big and _fixed(decode.get("by_batch"), big["batch_size"])
        out[f"{variant}/fixed_latency_ms"] = ours_one and ours_one.get("ms_per_sentence")
        out[f"{variant}/fixed_tokens_per_s"] = ours_big and ours_big.get("tokens_per_s")
    return out


def machine_of(record: dict) -> str:
    """What a run's speed was measured on: the GPU type, else the CPU model its benchmark recorded
    (inference.decode.cpu.model), else the device string (identity.device_of)."""
    cpu = None if get_in(record, "cluster", "gpu_type") else get_in(record, "inference", "decode", "cpu", "model")
    return str(cpu or device_of(record))


def latency_spread(record: dict, variant: str = "decode") -> float | None:
    """The recorded spread ((max - min) / median of the repeats) of the batch-1 natural-mode row behind
    latency_ms_batch1 (src/speed/inference.py), or None."""
    rows = get_in(record, "inference", variant, "by_batch") or []
    row = next((r for r in rows if isinstance(r, dict) and r.get("batch_size") == 1
                and r.get("mode", "natural") == "natural"), None)
    return row.get("spread") if row else None


def aggregate(records: list[dict], metric: str | None = None) -> list[dict]:
    """One row per configuration (`group`): its label, the configuration keys, headline metric name (`metric`,
    default each run's own), seeds, n, and <measure>_mean/_std."""
    rows = []
    for label, _, members in group(records):
        row = {"label": label, **config_of(members[0])}
        row["headline"] = metric or members[0].get("headline_metric")
        row["seeds"] = sorted((m.get("seed") for m in members), key=str)
        row["n"] = len(members)
        per_member = [measures(m, metric) for m in members]
        for name in dict.fromkeys(k for ms in per_member for k in ms):
            mean, std, _ = mean_std(ms.get(name) for ms in per_member)
            row[f"{name}_mean"], row[f"{name}_std"] = mean, std
        rows.append(row)
    for arch in {r["arch"] for r in rows}:  # same arch name, different arch.params: name the difference
        if len({r["arch_params"] for r in rows if r["arch"] == arch}) > 1:
            for r in rows:
                if r["arch"] == arch:
                    r["arch"] = f"{arch}({r['arch_params']})"
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in (*KEYS, "label")))


def crossover(batch_sizes, ar_latency, nar_latency) -> dict:
    """The smallest batch size at which NAR stops beating AR on latency (lower is better).

    Scans batch sizes in increasing order; after a batch size where NAR wins (nar < ar), the first one where it
    loses (nar >= ar) is the crossover, linearly interpolated in log2(batch size) on the difference nar - ar.
    Returns {"status": "crosses" | "nar_never_wins" | "nar_always_wins", "batch_size": float | None,
    "first_loss": the measured batch size where NAR first loses (None if never)}."""
    points = sorted(zip(batch_sizes, ar_latency, nar_latency))
    if not points:
        return {"status": "no_data", "batch_size": None, "first_loss": None}
    import math

    won = False
    for i, (b, ar, nar) in enumerate(points):
        if nar < ar:
            won = True
        elif won:
            b0, ar0, nar0 = points[i - 1]
            d0, d1 = nar0 - ar0, nar - ar  # d0 < 0 <= d1
            x0, x1 = math.log2(b0), math.log2(b)
            x = x0 + (x1 - x0) * (-d0) / (d1 - d0)
            return {"status": "crosses", "batch_size": 2 ** x, "first_loss": b}
    return {"status": "nar_always_wins" if won else "nar_never_wins", "batch_size": None,
            "first_loss": None if won else points[0][0]}


def by_batch_curve(record: dict, variant: str = "decode") -> dict[str, list]:
    """{batch_size, ms_per_sentence, tokens_per_s} lists from the honest benchmark's rows (fixed-length rows
    preferred: AR outputs that stop early at <eos> make latency unfair); empty when the record has none.
    variant `ct2_<q>`: the run's CTranslate2 rows (bench.ct2), which sit in its "decode" entry."""
    path = ("decode", variant) if variant.startswith("ct2_") else (variant,)
    rows = get_in(record, "inference", *path, "by_batch") or []
    rows = [r for r in rows if isinstance(r, dict) and "batch_size" in r]
    fixed = [r for r in rows if r.get("mode") == "fixed"]
    rows = sorted(fixed or rows, key=lambda r: r["batch_size"])
    return {k: [r.get(k) for r in rows] for k in ("batch_size", "ms_per_sentence", "tokens_per_s")}


def parse_buckets(spec: str) -> list[tuple[int, int | None]]:
    """"0-10,10-20,20-30,30+" -> [(0, 10), (10, 20), (20, 30), (30, None)]: [lo, hi) in source words."""
    buckets = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if part.endswith("+"):
                buckets.append((int(part[:-1]), None))
            else:
                lo, hi = part.split("-")
                buckets.append((int(lo), int(hi)))
        except ValueError:
            raise ConfigError(f"length bucket {part!r}: expected lo-hi or lo+ (e.g. 0-10,10-20,30+)") from None
    return buckets


def bucket_label(bucket: tuple[int, int | None]) -> str:
    lo, hi = bucket
    return f"{lo}+" if hi is None else f"{lo}-{hi}"


def bleu_by_length(hypotheses: list[dict], buckets, tokenize: str = "13a") -> dict[str, dict[str, dict]]:
    """{variant: {bucket label: {"bleu": corpus sacreBLEU, "n": sentences}}} from hypotheses.jsonl rows,
    bucketed by source length in whitespace words; empty buckets are left out. `tokenize`: the run's own sacreBLEU
    tokenizer (zh for Chinese targets: src/tasks/scoring.py)."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=tokenize)

    out: dict[str, dict[str, dict]] = {}
    for variant in dict.fromkeys(h.get("variant", "") for h in hypotheses):
        rows = [h for h in hypotheses if h.get("variant", "") == variant]
        per = {}
        for lo, hi in buckets:
            sel = [h for h in rows if lo <= len(str(h.get("source", "")).split()) and (hi is None or
                                                                                 len(str(h.get("source", "")).split()) < hi)]
            if sel:
                bleu = metric.corpus_score([str(h.get("hypothesis", "")) for h in sel],
                                           [[str(h.get("reference", "")) for h in sel]]).score
                per[bucket_label((lo, hi))] = {"bleu": bleu, "n": len(sel)}
        out[variant] = per
    return out


def add_statistics(rows: list[dict], configs: list[tuple[str, dict, list[dict]]], run_dir, metric: str | None,
                   baseline: str | None) -> dict:
    """The statistics of src/report/stats.py added to `rows` (in place) and returned for the report:
    per run its bootstrap CI (`runs`: the runs.csv rows), per configuration metric_ci_low/_high/_kind (the
    t-interval over seeds for n >= 2, else the one run's bootstrap CI), and against `baseline` (a label)
    delta_vs_baseline (+ _ci_low/_ci_high), p_vs_baseline, p_ar_vs_baseline (translation), p_mcnemar_vs_baseline
    (classification); the comparisons in words, the quality and latency win matrices, the sacreBLEU signatures.
    `run_dir(record)`: the record's run directory (None for a W&B member)."""
    from . import stats
    from .latency import latency_wins

    by_label = {r["label"]: r for r in rows}
    examples: dict[str, dict] = {}  # label -> {seed: Examples}
    out = {"runs": [], "notes": [], "signatures": set(), "claims": []}
    for label, _, members in configs:
        examples[label] = _run_statistics(by_label[label], members, run_dir, metric, out)
    for row in rows:
        row.update({k: None for k in BASELINE_COLUMNS})
        if baseline is not None and row["label"] != baseline:
            _vs_baseline(row, by_label[baseline], examples, out)
    names = {r["label"]: row_name(r) for r in rows}
    latency = {}
    for label, _, members in configs:
        timed = [m for m in members if get_in(m, "inference", "decode", "latency_ms_batch1") is not None]
        latency[names[label]] = ([m["inference"]["decode"]["latency_ms_batch1"] for m in timed],
                                 [latency_spread(m) for m in timed], {machine_of(m) for m in timed})
    several = len(rows) > 1
    out["quality"] = stats.quality_wins({names[k]: v for k, v in examples.items()}) if several else {}
    out["latency"], out["spread_used"] = latency_wins(latency) if several else ({}, True)
    out["machines"] = {name: sorted(ms) for name, (_, _, ms) in latency.items() if ms}
    return {**out, "names": [names[r["label"]] for r in rows], "signatures": sorted(out["signatures"]),
            "baseline": names.get(baseline) if baseline else None}


BASELINE_COLUMNS = ("delta_vs_baseline", "delta_vs_baseline_ci_low", "delta_vs_baseline_ci_high", "p_vs_baseline",
                    "p_ar_vs_baseline", "p_mcnemar_vs_baseline")


def _run_statistics(row: dict, members: list[dict], run_dir, metric: str | None, out: dict) -> dict:
    """One configuration: each run's bootstrap CI (a runs.csv row in out["runs"]), the row's metric_ci_*;
    returns {seed: Examples} of the runs that have per-example files."""
    from . import stats

    headline, examples, boot = metric or members[0].get("headline_metric"), {}, []
    for i, rec in enumerate(members):
        ex, low, high = stats.load_examples(run_dir(rec), rec, headline), None, None
        if ex is not None:
            key = rec.get("seed")
            examples[key if key not in examples else f"{key}#{i}"] = ex  # a repeated seed stays a run of its own
            low, high = stats.bootstrap_ci(ex)
            boot.append((low, high))
            recorded = get_in(rec, "metrics", headline)
            if isinstance(recorded, (int, float)) and abs(ex.value() - recorded) > 1e-3 * max(1.0, abs(recorded)):
                out["notes"].append(f"{row_name(row)} seed {rec.get('seed')}: {headline} recomputed from the "
                                    f"per-example file is {ex.value():.4g}, results.json says {recorded:.4g}")
        out["signatures"].update(f"{k}: {v}" for k, v in (rec.get("metrics_signature") or {}).items())
        out["runs"].append({"label": row["label"], "run": run_dir(rec).name if run_dir(rec) else "?",
                            "seed": rec.get("seed"), **config_of(rec), "headline": headline,
                            **_with_ci(measures(rec, metric), low, high)})
    t = stats.t_interval(get_in(m, "metrics", headline) for m in members)
    if t["low"] is not None:
        row.update(metric_ci_low=t["low"], metric_ci_high=t["high"], metric_ci_kind=f"t over {t['n']} seeds")
    elif len(members) == 1 and boot:
        row.update(metric_ci_low=boot[0][0], metric_ci_high=boot[0][1], metric_ci_kind="bootstrap over test examples")
    else:
        row.update(metric_ci_low=None, metric_ci_high=None, metric_ci_kind="")
    if len(members) == 1:
        out["notes"].append(f"{row_name(row)}: n = 1: no interval over seeds" + (
            "; its CI is the run's bootstrap CI over test examples" if boot else ""))
    elif t["n"] == 2:
        out["notes"].append(f"{row_name(row)}: n = 2: the t-interval uses t(0.975, 1) = 12.7, so it is wide; "
                            "n >= 3 seeds for a claim")
    if not examples:
        out["notes"].append(f"{row_name(row)}: no per-example predictions: no CI over test examples, no paired test")
    return examples


def _vs_baseline(row: dict, base_row: dict, examples: dict, out: dict) -> None:
    """The row's paired test against the baseline row: its BASELINE_COLUMNS and a sentence in out["claims"]."""
    from . import stats

    runs, base = examples[row["label"]], examples[base_row["label"]]
    result = stats.compare(base, runs) if runs and base and row["headline"] == base_row["headline"] else None
    if result is None:
        out["claims"].append(f"{row_name(row)} vs {row_name(base_row)}: no paired test (no per-example "
                             "predictions in both, or not the same test set)")
        return
    row.update(delta_vs_baseline=result["delta"], delta_vs_baseline_ci_low=result["ci"][0],
               delta_vs_baseline_ci_high=result["ci"][1], p_vs_baseline=result["p"],
               p_ar_vs_baseline=result.get("p_ar"), p_mcnemar_vs_baseline=result.get("p_mcnemar"))
    out["claims"].append(stats.claim(row_name(row), row_name(base_row), result, row["headline"]))
    if result.get("signature"):
        out["signatures"].add(f"paired test: {result['signature']}")


def row_name(row: dict) -> str:
    """How a row is named in sentences and matrices: its label, or its arch for a one-configuration report."""
    return row.get("label") or str(row.get("arch"))


def _with_ci(ms: dict, low, high) -> dict:
    """The measures with metric_ci_low/_high right after the metric."""
    out = {}
    for k, v in ms.items():
        out[k] = v
        if k == "metric":
            out.update(metric_ci_low=low, metric_ci_high=high)
    return out
