"""Aggregate finished members into one row per configuration: mean ± sample std (n-1) over seeds, and the seed count.

A configuration is (arch, task, data, size, device/GPU type, decode); `seed` is the only thing averaged over.
Also: the AR/NAR latency crossover over batch sizes, and sacreBLEU per source-length bucket (Bahdanau et al. 2015,
"Neural Machine Translation by Jointly Learning to Align and Translate", Fig. 2)."""
from __future__ import annotations

import statistics
from collections import defaultdict

from ..config import ConfigError

KEYS = ("arch", "task", "data", "size", "device", "decode", "arch_params")


def get_in(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def decode_label(decode) -> str:
    if not isinstance(decode, dict):
        return str(decode or "")
    rest = ",".join(f"{k}={v}" for k, v in decode.items() if k != "method")
    return f"{decode.get('method', '?')}" + (f"({rest})" if rest else "")


def config_of(record: dict) -> dict:
    """The configuration a record belongs to (GPU type from the SLURM `cluster` field, else the device string)."""
    return {"arch": record.get("arch"), "task": record.get("task"), "data": record.get("data"),
            "size": record.get("size"),
            "device": get_in(record, "cluster", "gpu_type") or record.get("device") or "?",
            "decode": decode_label(record.get("decode")),
            "arch_params": decode_label({"method": "", **(get_in(record, "config", "arch", "params") or {})}).strip("()")}


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
           "params": record.get("params"), "train_tokens_per_s": get_in(record, "train", "tokens_per_s")}
    for variant, d in (record.get("inference") or {}).items():
        if isinstance(d, dict):
            out[f"{variant}/latency_ms"] = d.get("latency_ms_batch1")
            out[f"{variant}/tokens_per_s"] = d.get("throughput_tokens_per_s")
    for name, ev in (record.get("evals") or {}).items():  # python -m src.eval: the headline metric per test set
        out[f"eval:{name}"] = get_in(ev, "metrics", headline) if headline else None
    return out


def aggregate(records: list[dict], metric: str | None = None) -> list[dict]:
    """One row per configuration: the configuration keys, headline metric name (`metric`, default each run's own),
    seeds, n, and <measure>_mean/_std."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[tuple(config_of(r).values())].append(r)
    rows = []
    for key, members in groups.items():
        row = dict(zip(KEYS, key))
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
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in KEYS))


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
    preferred: AR outputs that stop early at <eos> make latency unfair); empty when the record has none."""
    rows = get_in(record, "inference", variant, "by_batch") or []
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
