"""Every figure: attention heatmaps (target × source, like the "I love you" → "我爱你" matrix) and the sweep report's plots."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def attention_heatmaps(examples: list[tuple[list[str], list[str], "object"]], path: Path) -> Path:
    """examples: (source tokens, target tokens, weights (T, S) array) per sentence -> one PNG with a panel each."""
    fig, axes = plt.subplots(1, len(examples), figsize=(4.2 * len(examples), 4.2), squeeze=False)
    for ax, (src, tgt, w) in zip(axes[0], examples):
        ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(src)), src, rotation=60, fontsize=8)
        ax.set_yticks(range(len(tgt)), tgt, fontsize=8)
        ax.set_xlabel("source")
        ax.set_ylabel("target")
    fig.suptitle("attention weights: target × source, each row sums to 1")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# The sweep report's figures (src/report): one fixed size each, so a reader can compare reports side by side.
REPORT_SIZE, REPORT_DPI = (7.0, 4.5), 100  # -> 700 x 450 pixels


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=REPORT_DPI)
    plt.close(fig)
    return Path(path)


def quality_vs_throughput(rows: list[dict], metric: str, path: Path) -> Path:
    """One point per configuration: headline metric (mean ± std over seeds) vs training tokens/s (± std)."""
    fig, ax = plt.subplots(figsize=REPORT_SIZE)
    for r in rows:
        x, y = r.get("train_tokens_per_s_mean"), r.get("metric_mean")
        if x is None or y is None:
            continue
        ax.errorbar(x, y, xerr=r.get("train_tokens_per_s_std") or 0, yerr=r.get("metric_std") or 0, fmt="o",
                    capsize=4, label=f"{r['arch']} ({r['size']}, n={r['n']})")
    ax.set_xlabel("training throughput (tokens/s, mean ± std over seeds)")
    ax.set_ylabel(f"{metric} (mean ± std)")
    ax.set_title("quality vs training throughput")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def latency_vs_batch(curves: dict[str, dict], crossings: dict[str, dict], path: Path) -> Path:
    """Left: ms per sentence vs batch size; right: tokens/s vs batch size (log-log); the AR/NAR crossover batch
    size (where NAR stops beating AR on latency) as a dashed vertical line."""
    fig, (lat, thr) = plt.subplots(1, 2, figsize=REPORT_SIZE)
    for label, c in curves.items():
        lat.plot(c["batch_size"], c["ms_per_sentence"], "o-", label=label)
        thr.plot(c["batch_size"], c["tokens_per_s"], "o-", label=label)
    for i, (label, x) in enumerate((k, v) for k, v in crossings.items() if v.get("batch_size")):
        for ax in (lat, thr):
            ax.axvline(x["batch_size"], ls="--", color=f"C{7 + i % 3}",
                       label=f"NAR stops winning ≈ {x['batch_size']:.0f}: {label.split(' vs ')[0]}" if ax is lat else None)
    sizes = sorted({b for c in curves.values() for b in c["batch_size"]})
    for ax, name in ((lat, "latency (ms / sentence)"), (thr, "throughput (tokens/s)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.set_xlabel("batch size")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3, which="both")
    handles, labels = lat.get_legend_handles_labels()
    fig.suptitle("AR vs NAR over batch sizes")
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7)
    fig.tight_layout(rect=(0, 0.08 + 0.035 * ((len(labels) + 1) // 2), 1, 1))
    fig.savefig(path, dpi=REPORT_DPI)
    plt.close(fig)
    return Path(path)


def throughput_by_device(rows: list[dict], path: Path) -> Path:
    """Grouped bars: training tokens/s (mean ± std) per arch, one bar per device / GPU type."""
    import numpy as np

    archs = list(dict.fromkeys(r["arch"] for r in rows))
    devices = list(dict.fromkeys(r["device"] for r in rows))
    fig, ax = plt.subplots(figsize=REPORT_SIZE)
    width = 0.8 / max(1, len(devices))
    for j, dev in enumerate(devices):
        ys, es = [], []
        for a in archs:
            match = [r for r in rows if r["arch"] == a and r["device"] == dev]
            ys.append(match[0].get("train_tokens_per_s_mean") or 0 if match else 0)
            es.append(match[0].get("train_tokens_per_s_std") or 0 if match else 0)
        ax.bar(np.arange(len(archs)) + j * width, ys, width, yerr=es, capsize=3, label=dev[:40])
    ax.set_xticks(np.arange(len(archs)) + width * (len(devices) - 1) / 2, archs)
    ax.set_ylabel("training tokens/s (mean ± std)")
    ax.set_title("training throughput per device")
    ax.legend(fontsize=7)
    return _save(fig, path)


def training_curves(histories: dict[str, list[list]], path: Path, key: str = "val/loss") -> Path:
    """`key` vs step, one colour per arch, one line per seed."""
    fig, ax = plt.subplots(figsize=REPORT_SIZE)
    for i, (label, runs) in enumerate(histories.items()):
        for j, points in enumerate(runs):
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, "o-", color=f"C{i}", alpha=0.8, label=label if j == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(f"training curves ({key}, one line per seed)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def bleu_by_length_plot(series: dict[str, dict[str, float]], path: Path) -> Path:
    """BLEU per source-length bucket, one line per arch (Bahdanau et al. 2015, Fig. 2)."""
    fig, ax = plt.subplots(figsize=REPORT_SIZE)
    buckets = list(dict.fromkeys(b for s in series.values() for b in s))
    for label, s in series.items():
        ax.plot([buckets.index(b) for b in s], list(s.values()), "o-", label=label)
    ax.set_xticks(range(len(buckets)), buckets)
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("BLEU (mean over seeds)")
    ax.set_title("BLEU by source length")
    if series:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
