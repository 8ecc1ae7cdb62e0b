"""Timing primitives: one timing loop for every benchmark (a trained run's inference, ours vs the peers).

`warmup` untimed runs, then `repeats` timed ones (CUDA events on GPU, perf_counter on CPU); callers report the
median and spread = (max - min) / median. `machine()` is recorded beside every timing: threads, load, allocator,
and the CPU (`cpu()`: model, the ISA flags that decide which kernels run, L3, cores), since speed ratios move with
all of them (a decoder whose weights fit in L3 is bound by per-op overhead, one whose weights do not by bandwidth;
bf16/int8 pay off only with avx512_bf16 / AMX / VNNI).
"""
from __future__ import annotations

import os
import re
import platform
import statistics
from pathlib import Path
import time

import torch

from .runtime import allocator_name, physical_cores

# the x86 / ARM flags that decide which matmul kernels oneDNN, MKL, inductor and CTranslate2 pick
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8",
             "amx_tile", "asimd", "sve", "bf16", "i8mm")


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


def _l3_mib(cache_dir: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> float | None:
    """The largest cache level's size seen by cpu0 (sysfs `index*/size`, e.g. "307200K"), in MiB; None if unknown."""
    best = None
    for index in sorted(cache_dir.glob("index*")):
        try:
            level, size = int((index / "level").read_text()), (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}.get(size[-1:].upper())
        if level >= 3 and scale and size[:-1].isdigit():
            best = max(best or 0.0, int(size[:-1]) * scale)
    return best


def cpu(cpuinfo: str | None = None) -> dict:
    """The CPU's model name, which of ISA_FLAGS it has, its L3 in MiB and its physical / logical cores (Linux:
    /proc/cpuinfo and sysfs; elsewhere the model from `platform` and no flags)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields = dict(re.findall(r"^([^:\n]+?)\s*:\s*(.*)$", cpuinfo.split("\n\n")[0], re.M))
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {"model": fields.get("model name") or platform.processor() or platform.machine(),
            "isa": [f for f in ISA_FLAGS if f in flags], "l3_mib": _l3_mib(), "cores": physical_cores(),
            "logical_cpus": os.cpu_count()}


def cpu_line(c: dict) -> str:
    """`cpu()` in one line for the tables: model · ISA flags · L3 · cores."""
    l3 = f"{c['l3_mib']:g} MiB L3" if c.get("l3_mib") else "L3 ?"
    return f"{c['model']} · {' '.join(c['isa']) or 'no listed ISA flags'} · {l3} · {c['cores']} cores"


def machine() -> dict:
    """Threads, load, allocator and the CPU: a timing taken on a busy machine, or on glibc's malloc, says so."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_avg_1min": load,
            "allocator": allocator_name(), "cpu": cpu()}
