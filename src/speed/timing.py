"""Timing primitives: one timing loop for every benchmark (a trained run's inference, ours vs the peers).

`warmup` untimed runs, then `repeats` timed ones (CUDA events on GPU, perf_counter on CPU); callers report the
median and spread = (max - min) / median. `machine()` is recorded beside every timing: threads, load, allocator.
"""
from __future__ import annotations

import os
import statistics
import time

import torch

from .runtime import allocator_name


def seconds(fn, device: torch.device) -> tuple[float, object]:
    """Seconds of one call of `fn()` (CUDA events on GPU, perf_counter on CPU), and what it returned."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0, out
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def timed_runs(fns: dict, device, warmup: int, repeats: int) -> tuple[dict[str, list[float]], dict[str, object]]:
    """The timing loop: `warmup` untimed rounds, then `repeats` timed rounds (at least one), every fn once per
    round in order, so machine load hits them alike. Returns each fn's seconds per round and its last output."""
    device = torch.device(device)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times, last = {name: [] for name in fns}, {}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            t, last[name] = seconds(fn, device)
            times[name].append(t)
    return times, last


def measure(fn, device, warmup: int, repeats: int) -> tuple[list[float], object]:
    """Wall seconds of each of `repeats` runs of `fn()` after `warmup` untimed runs; also fn's last return value."""
    times, last = timed_runs({"fn": fn}, device, warmup, repeats)
    return times["fn"], last["fn"]


def interleaved(fns: dict, device, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of each repeat of every fn, the fns alternating within each repeat (ours vs a peer)."""
    return timed_runs(fns, device, warmup, repeats)[0]


def spread_of(times: list[float]) -> float:
    """(max - min) / median of the repeats: 0 for perfectly steady timings."""
    med = statistics.median(times)
    return (max(times) - min(times)) / med if med > 0 else 0.0


def machine() -> dict:
    """Threads, load and allocator: a timing taken on a busy machine, or on glibc's malloc, says so."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_avg_1min": load,
            "allocator": allocator_name()}
