"""Inference speed, measured honestly: warm-up runs first, CUDA synchronised around each timed region, the median
of several repeats. Latency is per sentence at batch 1; throughput is tokens/s on one larger batch."""
from __future__ import annotations

import statistics
import time

import torch

from .config import BenchConfig


def _timed(fn, device: torch.device) -> tuple[float, int]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def median_time(fn, device, warmup: int, repeats: int) -> tuple[float, int]:
    """Median wall seconds of `fn()` over `repeats` runs after `warmup` runs; also fn's last return value."""
    for _ in range(warmup):
        fn()
    runs = [_timed(fn, device) for _ in range(repeats)]
    return statistics.median(t for t, _ in runs), runs[-1][1]


@torch.no_grad()
def inference_speed(module, bench: BenchConfig, decode=None) -> dict[str, float]:
    """Times `module.infer` (the task's inference on one batch) with `decode` (default: the module's own)."""
    saved = module.decode_cfg
    module.decode_cfg = decode or saved
    module.eval()
    try:
        singles = module.bench_batches(bench.latency_sentences, 1)
        per_sentence, _ = median_time(lambda: sum(module.infer(b) for b in singles), module.device, bench.warmup, bench.repeats)
        big = module.bench_batches(0, bench.batch_size)[0]
        seconds, tokens = median_time(lambda: module.infer(big), module.device, bench.warmup, bench.repeats)
    finally:
        module.decode_cfg = saved
    batch = len(next(iter(big.values())))
    return {
        "latency_ms_batch1": 1000.0 * per_sentence / len(singles),
        "throughput_batch": batch,
        "throughput_tokens_per_s": tokens / seconds,
        "throughput_sentences_per_s": batch / seconds,
    }


def inference_report(module, bench: BenchConfig) -> dict[str, dict[str, float]]:
    """Speed of each decoding the task scores (`module.decode_variants`): "decode" is the configured one;
    a multi-pass NAR model also gets "decode_pass1"."""
    return {"decode" + (f"_{name.rstrip('/')}" if name else ""): inference_speed(module, bench, decode)
            for name, decode in module.decode_variants.items()}
