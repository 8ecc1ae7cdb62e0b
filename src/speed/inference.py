"""Inference speed of a trained run (results.json `inference`), measured honestly.

- Inputs: test sentences drawn across the test set's length distribution (seeded, stratified by length: every
  length quantile is represented, the shortest and the longest included), never the first rows of the
  length-sorted test loader.
- Two modes: "natural" (the task's own decoding, stops at <eos>) and "fixed" (<eos> banned: every AR row and every
  NAR row has exactly `bench.fixed_tokens` output tokens, so AR and NAR do the same amount of output work).
- Each row of `by_batch` records the batch size, mode, ms/sentence, ms/token, tokens/s, sentences/s, the mean
  output length in tokens (real output tokens: no <pad>, no <eos>, NAR counts what it emitted) and the spread.
- Timing: `warmup` untimed runs, then `repeats` timed ones (CUDA events on GPU, perf_counter on CPU); the median is
  reported and spread = (max - min) / median. Threads and the 1-minute load average are recorded beside them.
Plain Python (no Hydra); the timing primitives are src/speed/timing.py.
"""
from __future__ import annotations

import random
import statistics

import torch

from .timing import machine, measure, spread_of

MODES = ("natural", "fixed")


def length_stratified(lengths: list[int], n: int, seed: int = 0) -> list[int]:
    """`n` indices spread over the length distribution: the indices sorted by length are cut into n equal strata and
    one index is drawn (seeded) from each; the first and last strata hold the shortest and longest sentences.
    Shuffled (seeded) so batches mix lengths. n is capped at len(lengths)."""
    rng = random.Random(seed)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    n = min(n, len(order))
    picks = []
    for k in range(n):
        lo, hi = k * len(order) // n, max(k * len(order) // n + 1, (k + 1) * len(order) // n)
        picks.append(order[rng.randrange(lo, hi)] if 0 < k < n - 1 else order[lo if k == 0 else hi - 1])
    rng.shuffle(picks)
    return picks


def test_sample(module, n: int, seed: int = 0) -> list[dict]:
    """`n` test rows drawn across the length distribution (src for translation, text otherwise)."""
    ds = module.dm.splits["test"].with_format(None)
    key = "src_ids" if "src_ids" in ds.column_names else "text_ids"
    rows = [ds[i] for i in length_stratified([len(x) for x in ds[key]], n, seed)]
    return rows


def batch_rows(module, batch_size: int, sentences: int, seed: int) -> list[dict]:
    """Batches of `batch_size` covering `sentences` stratified test rows (at least one batch), on the module's device."""
    rows = test_sample(module, max(batch_size, sentences), seed)
    batches = [rows[i : i + batch_size] for i in range(0, len(rows) - batch_size + 1, batch_size)] or [rows]
    return [{k: v.to(module.device) for k, v in module.dm.collate(b).items()} for b in batches]


def row(batch_size: int, mode: str, times: list[float], sentences: int, tokens: int) -> dict:
    sec = statistics.median(times)
    return {"batch_size": batch_size, "mode": mode, "ms_per_sentence": 1000.0 * sec / sentences,
            "ms_per_token": 1000.0 * sec / tokens if tokens else None, "tokens_per_s": tokens / sec,
            "sentences_per_s": sentences / sec, "output_tokens": tokens / sentences, "spread": spread_of(times),
            "repeats": len(times)}


@torch.no_grad()
def inference_speed(module, bench, decode=None) -> dict:
    """Times `module.infer` (the task's inference on a batch) with `decode` (default: the module's own) for each
    batch size in bench.batch_sizes (capped by the test set) and each mode the task supports."""
    saved = module.decode_cfg
    module.decode_cfg = decode or saved
    module.eval()
    n_test = len(module.dm.splits["test"])
    sizes = sorted({1} | {min(b, n_test) for b in bench.batch_sizes})  # batch 1 always: latency_ms_batch1
    modes = MODES if getattr(module, "generative", True) else ("natural",)
    rows = []
    try:
        for b in sizes:
            batches = batch_rows(module, b, bench.latency_sentences if b == 1 else b, bench.seed)
            sentences = sum(len(next(iter(x.values()))) for x in batches)
            for mode in modes:
                new_tokens = bench.fixed_tokens if mode == "fixed" else None
                times, tokens = measure(lambda: sum(module.infer(x, new_tokens) for x in batches), module.device,
                                        bench.warmup, bench.repeats)
                rows.append(row(b, mode, times, sentences, tokens))
    finally:
        module.decode_cfg = saved
    natural = [r for r in rows if r["mode"] == "natural"]
    one, big = natural[0], natural[-1]
    return {
        "latency_ms_batch1": one["ms_per_sentence"],
        "throughput_batch": big["batch_size"],
        "throughput_tokens_per_s": big["tokens_per_s"],
        "throughput_sentences_per_s": big["sentences_per_s"],
        "by_batch": rows,
        **machine(),
    }


def inference_report(module, bench) -> dict[str, dict]:
    """Speed of each decoding the task scores (`module.decode_variants`): "decode" is the configured one;
    a multi-pass NAR model also gets "decode_pass1". (`bench.ct2`: src/speed/deploy.py adds CTranslate2's rows.)"""
    return {"decode" + (f"_{name.rstrip('/')}" if name else ""): inference_speed(module, bench, decode)
            for name, decode in module.decode_variants.items()}
