"""The batch-1 latency win matrix of a report: configurations compared by the ranges their runs' timings span
(median ± spread), only between runs timed on one machine."""
from __future__ import annotations

import numpy as np


def latency_range(latencies: list[float], spreads: list[float | None]) -> tuple[float, float] | None:
    """The configuration's batch-1 latency range over its runs: each run's median ± spread·median (spread =
    (max − min) / median of the timed repeats, src/speed/inference.py); None if a run has no recorded spread."""
    if not latencies or any(s is None for s in spreads):
        return None
    return (min(l * (1 - s) for l, s in zip(latencies, spreads)), max(l * (1 + s) for l, s in zip(latencies, spreads)))


def latency_wins(configs: dict[str, tuple[list[float], list, set]]) -> tuple[dict, bool]:
    """{(row, column): "win" | "loss" | "tie" | "n/a"} on batch-1 latency (lower wins), and whether every cell used
    the recorded spread: ranges that do not overlap decide; without a spread, the plain mean decides. Each entry is
    (latencies, spreads, machines): two configurations are compared only when all their runs were timed on one
    machine (the same CPU model or GPU type), else "n/a"."""
    labels = list(configs)
    out, spread_used = {}, True
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            (la, sa, ma), (lb, sb, mb) = configs[a], configs[b]
            if not la or not lb or len(ma | mb) > 1:
                out[a, b] = out[b, a] = "n/a"
                continue
            ra, rb = latency_range(la, sa), latency_range(lb, sb)
            if ra is None or rb is None:
                spread_used = False
                ma, mb = float(np.mean(la)), float(np.mean(lb))
                verdict = "tie" if ma == mb else ("win" if ma < mb else "loss")
            else:
                verdict = "win" if ra[1] < rb[0] else "loss" if rb[1] < ra[0] else "tie"
            out[a, b], out[b, a] = verdict, {"win": "loss", "loss": "win", "tie": "tie"}[verdict]
    return out, spread_used
