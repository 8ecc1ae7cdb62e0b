"""The report's statistics: per-run bootstrap CIs over test examples, t-intervals over seeds, paired tests between
configurations, and the sentences that state them.

A run's test set is read as per-example *sufficient statistics* (`Examples`): a metric over any subset of the test
examples is `score(stats[subset].sum(0))`. Translation uses sacreBLEU's own statistics (BLEU's matched/total n-gram
counts and lengths, chrF's character/word n-gram counts: `Metric._extract_corpus_statistics`, what
`sacrebleu.significance` resamples), so a resampled BLEU is a corpus BLEU, never an average of sentence BLEUs;
exact match is the mean of 0/100 per sentence; classification accuracy the mean of 0/1 correctness; LM perplexity
`exp(sum nll / sum tokens)` over sequences (per-example files: COMMON.md's contract; hypotheses.jsonl rows of the
headline decoding, variant "decode" or "" before it was named).

- Per run: the 95 % percentile bootstrap CI (Efron & Tibshirani 1993) over `N_RESAMPLES` = 1000 resamples of the
  test examples, with sacreBLEU's fixed seed (`SACREBLEU_SEED`, default 12345): reruns give the same interval.
- Across seeds: mean ± t(0.975, n-1)·s/√n (scipy.stats.t); no interval below n = 2.
- Between two configurations, paired on the same test examples (matched by test id; references / labels / token
  counts must agree, else the pair is "not comparable"): the paired bootstrap of Koehn (2004) exactly as sacreBLEU
  implements it (same indices from the same seed, p = (1 + #{|d*| − mean|d*| > |d|}) / (R + 1)), for every task,
  with the 95 % percentile CI of the difference on the same resamples. For translation the p-values reported against
  the baseline are sacreBLEU's own `PairedTest` results, paired bootstrap ("bs") and approximate randomization ("ar",
  Riezler & Maxwell 2005, 10,000 trials); the unit test checks that our bootstrap equals sacreBLEU's. For
  classification McNemar's exact test (scipy.stats.binomtest on the discordant pairs) is given beside it.
- Several seeds: each configuration's examples are *pooled* over its seeds (the test set repeated once per seed,
  paired as (seed, id) with the other configuration's run of the same seed; with no seed in common, in sorted seed
  order). The test then asks "is A better than B on this test set, over these training seeds"; its interval
  resamples test examples, not seeds: the t-interval over seeds is the one that shows seed variance.
- p-values are per comparison, not corrected for multiple comparisons; "significant" means p < `ALPHA` = 0.05.
  Two runs with identical per-example scores get p = 1 (the bootstrap/AR formula's floor 1/(R+1) would call a
  zero difference significant).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .collect import jsonl_file, read_jsonl

N_RESAMPLES = 1000
ALPHA = 0.05
LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "nll", "ter")
UNITS = {"bleu": "BLEU", "bleu_lc": "BLEU (lowercased)", "chrf": "chrF", "exact_match": "exact match",
         "accuracy": "accuracy", "perplexity": "perplexity"}


def seed() -> int | None:
    """sacreBLEU's bootstrap seed (env SACREBLEU_SEED, default 12345; 'none': unseeded), so ours resample alike."""
    value = os.environ.get("SACREBLEU_SEED", "12345")
    return None if value.lower() == "none" else int(value)


def higher_is_better(metric: str) -> bool:
    return not metric.rsplit("/", 1)[-1].endswith(LOWER_IS_BETTER)


def unit(metric: str) -> str:
    name = metric.rsplit("/", 1)[-1]
    return UNITS.get(name, name)


@dataclass
class Examples:
    """A run's test examples as sufficient statistics: `score(stats[i].sum(0))` is the metric on examples i.
    `keys` pair examples across runs ((seed, id)), `checks` must agree on paired examples (reference, label...)."""

    metric: str
    stats: np.ndarray
    score: Callable[[np.ndarray], float]
    keys: list
    checks: list
    hypotheses: list | None = None  # translation: what sacreBLEU's PairedTest needs
    references: list | None = None
    sacrebleu_metric: object = field(default=None, repr=False)

    def value(self) -> float:
        return self.score(self.stats.sum(0))

    def take(self, index) -> "Examples":
        pick = lambda xs: None if xs is None else [xs[i] for i in index]  # noqa: E731
        return replace(self, stats=self.stats[index], keys=pick(self.keys), checks=pick(self.checks),
                       hypotheses=pick(self.hypotheses), references=pick(self.references))


def _sacrebleu(name: str, tokenize: str):
    from sacrebleu.metrics import BLEU, CHRF

    return {"bleu": lambda: BLEU(tokenize=tokenize), "bleu_lc": lambda: BLEU(tokenize=tokenize, lowercase=True),
            "chrf": CHRF}.get(name, lambda: None)()


def translation_examples(rows: list[dict], metric: str, tokenize: str, run_seed=None) -> Examples | None:
    """The headline decoding's rows of hypotheses.jsonl (variant "decode", or "" in files before it was named)."""
    rows = [r for r in rows if r.get("variant", "") in ("decode", "")]
    name = metric.rsplit("/", 1)[-1]
    if not rows or name not in ("bleu", "bleu_lc", "chrf", "exact_match"):
        return None
    hyps, refs = [str(r.get("hypothesis", "")) for r in rows], [str(r.get("reference", "")) for r in rows]
    keys = [(run_seed, r.get("id", i)) for i, r in enumerate(rows)]
    if name == "exact_match":
        stats = np.array([[100.0 * (h == r), 1.0] for h, r in zip(hyps, refs)])
        return Examples(metric, stats, lambda s: float(s[0] / s[1]), keys, refs, hyps, refs)
    m = _sacrebleu(name, tokenize)
    stats = np.array(m._extract_corpus_statistics(hyps, [refs]), dtype="float32")  # as sacrebleu.significance
    return Examples(metric, stats, lambda s, m=m: m._compute_score_from_stats(s).score, keys, refs, hyps, refs, m)


def classification_examples(rows: list[dict], metric: str, run_seed=None) -> Examples | None:
    if metric.rsplit("/", 1)[-1] != "accuracy" or not rows:
        return None
    labels = [r.get("label") for r in rows]
    stats = np.array([[float(r.get("prediction") == r.get("label")), 1.0] for r in rows])
    return Examples(metric, stats, lambda s: float(s[0] / s[1]), [(run_seed, r.get("id", i)) for i, r in
                                                                  enumerate(rows)], labels)


def lm_examples(rows: list[dict], metric: str, run_seed=None) -> Examples | None:
    name = metric.rsplit("/", 1)[-1]
    if name not in ("perplexity", "loss") or not rows:
        return None
    stats = np.array([[float(r["nll"]), float(r["tokens"])] for r in rows])
    score = (lambda s: math.exp(s[0] / s[1])) if name == "perplexity" else (lambda s: float(s[0] / s[1]))
    return Examples(metric, stats, score, [(run_seed, r.get("id", i)) for i, r in enumerate(rows)],
                    [int(r["tokens"]) for r in rows])


def load_examples(run_dir: Path | None, record: dict, metric: str | None) -> Examples | None:
    """The run's per-example test statistics for `metric` (default its headline), or None: no per-example file,
    or a metric that has no per-example form (e.g. test/loss of a translation run)."""
    from ..tasks.scoring import tokenize_of

    metric = metric or record.get("headline_metric")
    if run_dir is None or not metric or not Path(run_dir).is_dir():
        return None
    seed_ = record.get("seed")
    hyps, preds = Path(run_dir) / "hypotheses.jsonl", Path(run_dir) / "predictions.jsonl"
    try:
        if record.get("task") == "translation" and jsonl_file(hyps):
            return translation_examples(read_jsonl(hyps), metric, tokenize_of(record), seed_)
        if jsonl_file(preds):
            rows = read_jsonl(preds)
            if record.get("task") == "classification":
                return classification_examples(rows, metric, seed_)
            if record.get("task") == "lm":
                return lm_examples(rows, metric, seed_)
    except (KeyError, TypeError, ValueError):  # a malformed file: no CI rather than a crash
        return None
    return None


def pool(runs: list[Examples]) -> Examples:
    """Several runs' examples as one test set repeated per run (module docstring)."""
    first = runs[0]
    cat = lambda name: None if getattr(first, name) is None else [x for r in runs for x in getattr(r, name)]  # noqa
    return replace(first, stats=np.concatenate([r.stats for r in runs]), keys=cat("keys"), checks=cat("checks"),
                   hypotheses=cat("hypotheses"), references=cat("references"))


def pool_pair(base: dict, other: dict) -> tuple[Examples, Examples] | None:
    """Two configurations' runs ({seed: Examples}) pooled and paired: run of seed s with run of seed s on the seeds
    both have; with no seed in common, in sorted seed order. None if they are not the same test set."""
    common = sorted(set(base) & set(other), key=str)
    if common:
        return pair(pool([base[s] for s in common]), pool([other[s] for s in common]))
    b, o = [base[s] for s in sorted(base, key=str)], [other[s] for s in sorted(other, key=str)]
    rekey = lambda runs: [replace(r, keys=[(rank, k[1]) for k in r.keys]) for rank, r in enumerate(runs)]  # noqa
    n = min(len(b), len(o))
    return pair(pool(rekey(b[:n])), pool(rekey(o[:n]))) if n else None


def resample_indices(n: int, n_resamples: int = N_RESAMPLES) -> np.ndarray:
    """sacreBLEU's bootstrap indices: the same (n_resamples, n) draw from the same seed."""
    return np.random.default_rng(seed()).choice(n, size=(n_resamples, n), replace=True)


def _scores(ex: Examples, idx: np.ndarray) -> np.ndarray:
    return np.array([ex.score(ex.stats[i].sum(0)) for i in idx])  # one resample at a time: memory stays O(n)


def bootstrap_ci(ex: Examples, n_resamples: int = N_RESAMPLES) -> tuple[float, float]:
    """95 % percentile bootstrap CI of the run's metric over its test examples."""
    scores = _scores(ex, resample_indices(len(ex.keys), n_resamples))
    low, high = np.percentile(scores, [2.5, 97.5])
    return float(low), float(high)


def t_interval(values, confidence: float = 0.95) -> dict:
    """{"mean", "low", "high", "n"} with mean ± t((1+c)/2, n-1)·s/√n over the seeds' values; low/high None if n < 2."""
    from scipy import stats

    xs = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(np.mean(xs))
    if n < 2:
        return {"mean": mean, "low": None, "high": None, "n": n}
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * np.std(xs, ddof=1) / math.sqrt(n))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def pair(base: Examples, other: Examples) -> tuple[Examples, Examples] | None:
    """The two runs' examples in the same order, on the keys both have; None if they are not the same test set
    (no common key, or a reference / label / token count that differs on a common key)."""
    if base.metric != other.metric:
        return None
    where = {k: i for i, k in enumerate(other.keys)}
    common = [(i, where[k]) for i, k in enumerate(base.keys) if k in where]
    if not common or any(base.checks[i] != other.checks[j] for i, j in common):
        return None
    return base.take([i for i, _ in common]), other.take([j for _, j in common])


def paired_bootstrap(base: Examples, other: Examples, n_resamples: int = N_RESAMPLES) -> dict:
    """Koehn (2004) paired bootstrap of other − base as sacrebleu.significance._paired_bs_test computes it:
    {"delta", "ci": (low, high) percentile CI of the resampled differences, "p"}. Inputs already paired."""
    idx = resample_indices(len(base.keys), n_resamples)
    b, o = _scores(base, idx), _scores(other, idx)
    delta = other.value() - base.value()
    diffs = np.abs(o - b)
    p = (np.sum(diffs - diffs.mean() > abs(delta)) + 1) / (n_resamples + 1)
    if not diffs.any() and delta == 0:  # identical on every resample: the formula's floor 1/(R+1) would say p<0.001
        p = 1.0
    low, high = np.percentile(o - b, [2.5, 97.5])
    return {"delta": float(delta), "ci": (float(low), float(high)), "p": float(p)}


def sacrebleu_tests(base: Examples, other: Examples) -> dict:
    """sacreBLEU's PairedTest p-values of `other` against `base`: {"bs": p, "ar": p, "signature": str}."""
    from sacrebleu.significance import PairedTest

    out = {}
    for test in ("bs", "ar"):
        sigs, scores = PairedTest([("baseline", base.hypotheses), ("system", other.hypotheses)],
                                  {"m": base.sacrebleu_metric}, [base.references], test_type=test)()
        name = next(k for k in scores if k != "System")
        out[test] = scores[name][1].p_value
        out[f"signature_{test}"] = sigs[name].format()
    return out


def mcnemar(base: Examples, other: Examples) -> float:
    """McNemar's exact test (binomial on the discordant pairs) of per-example correctness."""
    from scipy.stats import binomtest

    b_only = int(np.sum((base.stats[:, 0] == 1) & (other.stats[:, 0] == 0)))
    o_only = int(np.sum((base.stats[:, 0] == 0) & (other.stats[:, 0] == 1)))
    return 1.0 if b_only + o_only == 0 else float(binomtest(o_only, b_only + o_only, 0.5).pvalue)


def compare(base: dict, other: dict, n_resamples: int = N_RESAMPLES) -> dict | None:
    """`other` configuration vs `base` ({seed: Examples} each, `pool_pair`): {"delta", "ci", "p", "test", "n",
    "p_ar"?, "p_mcnemar"?, "signature"?}; None when not the same test set. Translation BLEU/chrF: p is sacreBLEU's
    PairedTest "bs" (and p_ar its "ar"); classification: p_mcnemar beside the bootstrap."""
    paired = pool_pair(base, other)
    if paired is None:
        return None
    base, other = paired
    out = {**paired_bootstrap(base, other, n_resamples), "test": "paired bootstrap", "n": len(base.keys)}
    if np.array_equal(base.stats, other.stats):  # the same per-example scores: no difference to test (sacreBLEU's
        return {**out, "p": 1.0} | ({"p_ar": 1.0} if base.sacrebleu_metric is not None else {})  # floor, as above
    if base.sacrebleu_metric is not None:
        tests = sacrebleu_tests(base, other)
        out.update(p=tests["bs"], p_ar=tests["ar"], signature=tests["signature_bs"])
    elif base.metric.endswith("accuracy"):
        out["p_mcnemar"] = mcnemar(base, other)
    return out


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def decimals(half_width: float) -> int:
    """Decimals that show one significant digit of an interval's half-width (6.1 ± 0.9 -> 1, 19 ± 5 -> 0)."""
    if not half_width or not math.isfinite(half_width):
        return 2
    return min(6, max(0, -math.floor(math.log10(abs(half_width)))))


def claim(label: str, base_label: str, result: dict, metric: str) -> str:
    """The comparison in words: "encdec > rnn_attn by 6.1 BLEU (95 % CI 5.2–7.0, paired bootstrap p < 0.001)"
    (the better one first; "<" for a lower-is-better metric such as perplexity), or "... not significant"."""
    delta, (low, high), p = result["delta"], result["ci"], result["p"]
    d = decimals((high - low) / 2)
    f = lambda x: f"{x:,.{d}f}".replace("-", "−")  # noqa: E731
    extra = "".join(f"; {name} {p_text(result[key])}" for key, name in
                    (("p_ar", "approximate randomization"), ("p_mcnemar", "McNemar")) if key in result)
    if p >= ALPHA:
        return (f"{label} vs {base_label}: {'+' if delta >= 0 else '−'}{f(abs(delta))} {unit(metric)}, not "
                f"significant (95 % CI {f(low)} to {f(high)}, {result['test']} {p_text(p)}{extra})")
    better = (delta > 0) == higher_is_better(metric)
    first, second = (label, base_label) if better else (base_label, label)
    if delta < 0:  # the interval of first − second
        low, high = -high, -low
    op = ">" if higher_is_better(metric) else "<"
    return (f"{first} {op} {second} by {f(abs(delta))} {unit(metric)} "
            f"(95 % CI {f(low)}{'–' if low >= 0 else ' to '}{f(high)}, {result['test']} {p_text(p)}{extra})")


def quality_wins(runs: dict[str, dict]) -> dict[tuple[str, str], str]:
    """{(row, column): "win" | "loss" | "tie" | "n/a"}: the row configuration significantly better / worse than the
    column one (paired bootstrap on pooled examples, `pool_pair`, p < ALPHA), not significant, or not comparable
    (no per-example file, another test set). `runs`: {label: {seed: Examples}}."""
    labels = list(runs)
    out = {}
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            paired = pool_pair(runs[b], runs[a]) if runs[a] and runs[b] else None
            if paired is None:
                out[a, b] = out[b, a] = "n/a"
                continue
            r = paired_bootstrap(*paired)
            if r["p"] >= ALPHA or r["delta"] == 0:
                out[a, b] = out[b, a] = "tie"
            else:
                a_better = (r["delta"] > 0) == higher_is_better(paired[0].metric)
                out[a, b], out[b, a] = ("win", "loss") if a_better else ("loss", "win")
    return out
