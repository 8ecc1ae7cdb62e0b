"""BLEU per source-length bucket (Bahdanau et al. 2015, Fig. 2) with each bucket's size and a 95 % bootstrap CI.

The bootstrap resamples the bucket's test sentences as sacreBLEU's `corpus_score(..., n_bootstrap=1000)` does
(numpy default_rng(12345), 95 % interval from the sorted scores' 1/40 tails; Koehn 2004, "Statistical Significance
Tests for Machine Translation Evaluation"), with the same sentences drawn for every seed of a configuration, so
the interval is that of the mean over seeds; with one seed it is sacreBLEU's own.
"""
from __future__ import annotations

import statistics
from collections import defaultdict

from ..tasks.scoring import tokenize_of
from .aggregate import bucket_label
from .groups import Group, curve_label, hypothesis_variant

N_BOOTSTRAP, BOOTSTRAP_SEED = 1000, 12345  # sacreBLEU's defaults (SACREBLEU_SEED)


def _sentence_stats(tokenize: str, rows: list[dict], order: int = 4):
    """Per-sentence BLEU sufficient statistics (sys_len, ref_len, `order` matches, `order` totals), as sacreBLEU
    counts them for a corpus, through its public sentence_score (effective_order changes only a sentence's own
    score, not these counts)."""
    import numpy as np
    from sacrebleu.metrics import BLEU

    counter = BLEU(tokenize=tokenize, effective_order=True, max_ngram_order=order)
    out = []
    for r in rows:
        s = counter.sentence_score(str(r.get("hypothesis", "")), [str(r.get("reference", ""))])
        out.append([s.sys_len, s.ref_len, *s.counts, *s.totals])
    return np.array(out, dtype=np.int64).reshape(len(rows), 2 + 2 * order)


def _bleu_of(metric, stats) -> float:
    n = metric.max_ngram_order
    t = [int(v) for v in stats]
    return metric.compute_bleu(t[2:2 + n], t[2 + n:], t[0], t[1], smooth_method=metric.smooth_method,
                               smooth_value=metric.smooth_value, effective_order=metric.effective_order,
                               max_ngram_order=n).score


def bucket_bleu_ci(runs: list[list[dict]], buckets, tokenize: str = "13a", n_bootstrap: int = N_BOOTSTRAP,
                   seed: int = BOOTSTRAP_SEED) -> dict[str, dict]:
    """{bucket: {"bleu": mean over runs of the bucket's corpus BLEU, "low", "high": 95 % bootstrap CI, "n":
    sentences, "seeds": runs}} for the hypotheses.jsonl rows of one configuration's seeds (one variant each, the
    same test sentences: matched by "id" when every row has one, else by position). Each resample draws the
    bucket's sentences once for all seeds (default_rng(seed), as sacreBLEU does); the CI bounds are the sorted
    resampled scores' n//40-th from each end, sacreBLEU's own rule."""
    import numpy as np
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize=tokenize)
    if all("id" in r for rows in runs for r in rows):
        common = set.intersection(*({r["id"] for r in rows} for rows in runs))
        runs = [sorted((r for r in rows if r["id"] in common), key=lambda r: r["id"]) for rows in runs]
    else:
        n = min(map(len, runs))
        runs = [rows[:n] for rows in runs]
    stats = [_sentence_stats(tokenize, rows, metric.max_ngram_order) for rows in runs]
    words = [len(str(r.get("source", "")).split()) for r in runs[0]]
    out = {}
    for lo, hi in buckets:
        idx = np.array([i for i, w in enumerate(words) if lo <= w and (hi is None or w < hi)], dtype=np.int64)
        if not len(idx):
            continue
        point = statistics.fmean(_bleu_of(metric, s[idx].sum(0)) for s in stats)
        draws = np.random.default_rng(seed).choice(len(idx), size=(n_bootstrap, len(idx)), replace=True)
        scores = sorted(statistics.fmean(_bleu_of(metric, s[idx[d]].sum(0)) for s in stats) for d in draws)
        cut = n_bootstrap // 40
        out[bucket_label((lo, hi))] = {"bleu": point, "low": scores[cut], "high": scores[n_bootstrap - cut - 1],
                                       "n": len(idx), "seeds": len(runs)}
    return out


def bleu_series(groups: list[Group], buckets) -> dict[str, tuple[Group, str, dict]]:
    """label -> (group, variant, bucket_bleu_ci) for every configuration and decoding variant with hypotheses."""
    out = {}
    for g in groups:
        with_hyps = [m for m in g.members if m.hypotheses]
        per_variant = defaultdict(list)
        for m in with_hyps:
            rows = defaultdict(list)
            for h in m.hypotheses:
                rows[hypothesis_variant(h.get("variant", ""))].append(h)
            for v, rs in rows.items():
                per_variant[v].append(rs)
        for v, runs in per_variant.items():
            label = curve_label(g.label, v)
            out[label] = (g, v, bucket_bleu_ci(runs, buckets, tokenize_of(with_hyps[0].record)))
    return out
