"""Every figure: attention heatmaps (target × source, like the "I love you" → "我爱你" matrix) and the sweep report's
plots (their data: src/report/figures.py).

Chinese, Japanese and Korean labels get a CJK font through src/fonts.py.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .fonts import use_cjk_fallback  # noqa: E402
def attention_heatmaps(examples: list[tuple[list[str], list[str], "object"]], path: Path,
                       titles: list[str] | None = None) -> Path:
    """examples: (source tokens, target tokens, weights (T, S) array) per sentence -> one PNG with a panel each
    (at most 4 a row), each titled by `titles` if given."""
    labels = [t for src, tgt, _ in examples for t in (*src, *tgt)] + list(titles or [])
    have_font = use_cjk_fallback(labels)
    cols = min(4, len(examples))
    rows = math.ceil(len(examples) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.4 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(examples):
            ax.axis("off")
            continue
        src, tgt, w = examples[k]
        ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(src)), src, rotation=60, fontsize=8)
        ax.set_yticks(range(len(tgt)), tgt, fontsize=8)
        ax.set_xlabel("source")
        ax.set_ylabel("target")
        if titles:
            ax.set_title(titles[k] if len(titles[k]) <= 60 else titles[k][:57] + "…", fontsize=9)
    fig.suptitle("attention weights: target × source, each row sums to 1", fontsize=10 if cols == 1 else 12)
    with warnings.catch_warnings():
        if not have_font:  # already said once above
            warnings.filterwarnings("ignore", message=r"Glyph .* missing from")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# The sweep report's figures (src/report/figures.py prepares their data): one fixed size each, so a reader can
# compare reports side by side; one colour per arch in every figure (ARCH_COLOURS); each returns a Plot whose
# `series` is read back from the drawn artists (what the figure shows, for the report's tests and readers).
REPORT_SIZE, REPORT_DPI = (7.0, 4.5), 100  # -> 700 x 450 pixels
# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
ARCH_COLOURS = {"encdec": "#0072b2", "nar": "#d55e00", "rnn_attn": "#009e73", "decoder": "#cc79a7",
                "encoder": "#e69f00", "rnn_seq2seq": "#56b4e9"}
OTHER_COLOURS = ("#000000", "#7f7f7f", "#8c564b", "#bcbd22", "#17becf", "#9467bd", "#e377c2", "#1f77b4")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def arch_colour(arch: str) -> str:
    """The colour of `arch` in every report figure; "nar(iterations=4)" is nar's. An arch without a fixed colour
    gets one from its name's CRC-32 (the same in every report)."""
    import zlib

    base = str(arch).split("(")[0].strip()
    return ARCH_COLOURS.get(base) or OTHER_COLOURS[zlib.crc32(base.encode()) % len(OTHER_COLOURS)]


@dataclass
class Series:
    """One thing a report figure draws: a line (x, y lists; optional low/high band or error bars), or a point
    (one-element lists). `marker` tells apart configurations of one arch (its colour); dashed: a decoding variant."""

    label: str
    arch: str
    x: list
    y: list
    low: list | None = None     # band / error-bar bounds (absolute values, not offsets)
    high: list | None = None
    xerr: list | None = None    # symmetric x error (points only)
    marker: str = "o"
    dashed: bool = False
    front: bool = False         # on the Pareto front (quality vs latency)


class Plot(NamedTuple):
    path: Path
    series: dict[str, list[dict]]  # label -> [{"panel", "x", "y", "color"}] read back from the figure's artists


def _short(label: str, n: int = 48) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def read_back(fig) -> dict[str, list[dict]]:
    """label -> what each labelled artist of `fig` draws: {"panel": axes title, "x", "y", "color"} (lines, error
    bars, bars, scatter points), from matplotlib's own objects, so a test can check the drawn data."""
    from matplotlib.colors import to_hex
    from matplotlib.container import BarContainer, ErrorbarContainer

    out: dict[str, list[dict]] = {}

    def add(label, ax, x, y, color):
        if label and not label.startswith("_"):
            out.setdefault(label, []).append({"panel": ax.get_title(), "x": [float(v) for v in x],
                                              "y": [float(v) for v in y], "color": to_hex(color)})

    for ax in fig.axes:
        taken = set()
        for c in ax.containers:
            if isinstance(c, ErrorbarContainer):
                line = c.lines[0]
                if line is None:  # a bar chart's error bars: the bars say it
                    continue
                taken.add(id(line))
                add(c.get_label(), ax, line.get_xdata(), line.get_ydata(), line.get_color())
            elif isinstance(c, BarContainer):
                add(c.get_label(), ax, [p.get_x() + p.get_width() / 2 for p in c.patches],
                    [p.get_height() for p in c.patches], c.patches[0].get_facecolor() if c.patches else "k")
        for line in ax.get_lines():
            if id(line) not in taken:
                add(line.get_label(), ax, line.get_xdata(), line.get_ydata(), line.get_color())
        for coll in ax.collections:
            offsets, colours = coll.get_offsets(), [*coll.get_facecolor(), *coll.get_edgecolor()]
            if len(offsets) and colours:  # scatter points (a ring: edge colour only)
                add(coll.get_label(), ax, offsets[:, 0], offsets[:, 1], colours[0])
    return out


def _finish(fig, path: Path, labels=(), legend_axes=None) -> Plot:
    """A shared legend under the panels (when there are labels), the CJK fallback, saved at the report size."""
    have_font = use_cjk_fallback([*labels, *(t.get_text() for ax in fig.axes for t in ax.get_xticklabels())])
    series = read_back(fig)
    handles, names = [], []
    for ax in legend_axes or fig.axes:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    bottom = 0.0
    if handles:
        longest = max(len(_short(n)) for n in names)
        ncol = max(1, min(len(names), 3 if longest <= 28 else 2 if longest <= 44 else 1))
        fig.legend(handles, [_short(n) for n in names], loc="lower center", ncol=ncol, fontsize=7, frameon=False)
        bottom = min(0.45, 0.05 + 0.045 * math.ceil(len(names) / ncol))
    with warnings.catch_warnings():
        if not have_font:  # already said once
            warnings.filterwarnings("ignore", message=r"Glyph .* missing from")
        warnings.filterwarnings("ignore", message=r"Tight layout not applied")
        fig.tight_layout(rect=(0, bottom, 1, 1))
        fig.savefig(path, dpi=REPORT_DPI)
    plt.close(fig)
    return Plot(Path(path), series)


def _plain_log_ticks(axis) -> None:
    """Ticks of a log axis at 1, 2, 5 × 10^k, labelled as plain numbers (20, 5, 0.5), not 2×10^1."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _style(s: Series) -> dict:
    return {"color": arch_colour(s.arch), "marker": s.marker, "linestyle": "--" if s.dashed else "-"}


def quality_vs_throughput(points: list[Series], metric: str, path: Path) -> Plot:
    """One point per configuration: headline test metric (mean ± std over seeds) vs training tokens/s (± std)."""
    fig, ax = plt.subplots(figsize=REPORT_SIZE)
    for s in points:
        yerr = None if s.low is None else [[s.y[0] - s.low[0]], [s.high[0] - s.y[0]]]
        ax.errorbar(s.x, s.y, xerr=s.xerr, yerr=yerr, fmt=s.marker, color=arch_colour(s.arch), capsize=4,
                    label=s.label)
    ax.set_xlabel("training throughput (tokens/s, mean ± std over seeds)")
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.set_title("quality vs training throughput")
    ax.grid(alpha=0.3)
    return _finish(fig, path, [s.label for s in points])


def quality_vs_latency(panels: dict[str, list[Series]], metric: str, higher_is_better: bool, path: Path) -> Plot:
    """Per panel (batch 1, the largest batch): test metric (mean ± std over seeds) vs decoding latency (ms per
    sentence, fixed-length rows where measured), the Pareto front (no point both faster and better) as a black
    step line through the ringed points."""
    fig, axes = plt.subplots(1, len(panels), figsize=REPORT_SIZE, squeeze=False)
    for ax, (title, points) in zip(axes.flat, panels.items()):
        for s in points:
            yerr = None if s.low is None else [[s.y[0] - s.low[0]], [s.high[0] - s.y[0]]]
            ax.errorbar(s.x, s.y, yerr=yerr, fmt=s.marker, color=arch_colour(s.arch), capsize=3, label=s.label,
                        markerfacecolor="white" if s.dashed else arch_colour(s.arch))
        front = sorted((s for s in points if s.front), key=lambda s: s.x[0])
        if front:
            ax.plot([s.x[0] for s in front], [s.y[0] for s in front], "-", color="black", lw=0.8,
                    drawstyle="steps-post", label="_front")
            ax.scatter([s.x[0] for s in front], [s.y[0] for s in front], s=140, facecolors="none",
                       edgecolors="black", linewidths=1.0, label="Pareto front")
        xs = [s.x[0] for s in points if s.x[0] and s.x[0] > 0]
        if xs and max(xs) / min(xs) > 10:
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("decoding latency (ms / sentence)")
        ax.grid(alpha=0.3, which="both")
    axes.flat[0].set_ylabel(f"{metric} ({'higher' if higher_is_better else 'lower'} is better)")
    fig.suptitle("quality vs decoding latency", fontsize=11)
    return _finish(fig, path, [s.label for ps in panels.values() for s in ps])


def latency_vs_batch(latency: list[Series], throughput: list[Series], crossings: dict[str, dict], path: Path) -> Plot:
    """Left: ms per sentence vs batch size; right: tokens/s vs batch size (log-log); the AR/NAR crossover batch
    size (where NAR stops beating AR on latency) as a dashed vertical line."""
    fig, (lat, thr) = plt.subplots(1, 2, figsize=REPORT_SIZE)
    for ax, series in ((lat, latency), (thr, throughput)):
        for s in series:
            ax.plot(s.x, s.y, label=s.label, **_style(s))
    for i, (label, x) in enumerate((k, v) for k, v in crossings.items() if v.get("batch_size")):
        for ax in (lat, thr):
            ax.axvline(x["batch_size"], ls=":", color=OTHER_COLOURS[(1 + i) % len(OTHER_COLOURS)],
                       label=f"NAR stops winning ≈ {x['batch_size']:.0f}: {label.split(' vs ')[0]}" if ax is lat else None)
    sizes = sorted({b for s in latency for b in s.x})
    for ax, name in ((lat, "latency (ms / sentence)"), (thr, "throughput (tokens/s)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.set_xlabel("batch size")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("AR vs NAR over batch sizes (mean over seeds)", fontsize=11)
    return _finish(fig, path, [s.label for s in latency], legend_axes=[lat])


def throughput_by_device(bars: list[Series], path: Path) -> Plot:
    """Grouped bars: training tokens/s (mean ± std over seeds), one group per device / GPU type, one bar per
    configuration in its arch's colour. Each Series: x = device names, y = means, high = means + std."""
    import numpy as np

    devices = list(dict.fromkeys(d for s in bars for d in s.x))
    fig, ax = plt.subplots(figsize=REPORT_SIZE)
    width = 0.8 / max(1, len(bars))
    for j, s in enumerate(bars):
        pos = [devices.index(d) + j * width for d in s.x]
        err = [h - y for h, y in zip(s.high, s.y)] if s.high else None
        hatch = None if j == 0 or s.arch != bars[j - 1].arch else "//"
        ax.bar(pos, s.y, width, yerr=err, capsize=3, color=arch_colour(s.arch), hatch=hatch, label=s.label)
    ax.set_xticks(np.arange(len(devices)) + width * (len(bars) - 1) / 2, [_short(d, 40) for d in devices],
                  fontsize=8)
    ax.set_ylabel("training tokens/s (mean ± std over seeds)")
    ax.set_title("training throughput per device")
    ax.grid(alpha=0.3, axis="y")
    return _finish(fig, path, [s.label for s in bars])


def curves(panels: dict[str, tuple[str, str, list[Series]]], title: str, path: Path) -> Plot:
    """Lines over training, one panel per (xlabel, ylabel): each Series a line (every point drawn), its band
    (low/high) shaded. For the training loss and the validation metric vs training compute."""
    fig, axes = plt.subplots(1, len(panels), figsize=REPORT_SIZE, squeeze=False)
    for ax, (name, (xlabel, ylabel, series)) in zip(axes.flat, panels.items()):
        for s in series:
            style = _style(s)
            ax.plot(s.x, s.y, markersize=3 if len(s.x) > 12 else 5, lw=1.2, alpha=0.9, label=s.label, **style)
            if s.low is not None:
                ax.fill_between(s.x, s.low, s.high, color=style["color"], alpha=0.18, lw=0)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    return _finish(fig, path, [s.label for _, _, ss in panels.values() for s in ss])


def bleu_by_length_plot(series: list[Series], counts: dict[str, str], path: Path) -> Plot:
    """BLEU per source-length bucket with its 95 % bootstrap interval, one line per configuration (Bahdanau et
    al. 2015, Fig. 2); under each tick the bucket's size, `counts[bucket]` ("120", or "118–120" when runs differ).
    Series: x = bucket labels."""
    buckets = list(dict.fromkeys(b for s in series for b in s.x))
    fig, ax = plt.subplots(figsize=REPORT_SIZE)
    offset = 0.25 / max(1, len(series))
    for j, s in enumerate(series):
        xs = [buckets.index(b) + (j - (len(series) - 1) / 2) * offset for b in s.x]
        err = [[y - lo for y, lo in zip(s.y, s.low)], [hi - y for y, hi in zip(s.y, s.high)]]
        style = _style(s)
        ax.errorbar(xs, s.y, yerr=err, capsize=3, label=s.label, color=style["color"], marker=s.marker,
                    linestyle=style["linestyle"])
    ax.set_xticks(range(len(buckets)), [f"{b}\nn={counts[b]}" if b in counts else b for b in buckets], fontsize=8)
    ax.set_xlabel("source length (words); n = test sentences in the bucket")
    ax.set_ylabel("BLEU (mean over seeds, 95 % CI)")
    ax.set_title("BLEU by source length (95 % bootstrap CI over the bucket's sentences)", fontsize=10)
    ax.grid(alpha=0.3)
    return _finish(fig, path, [s.label for s in series])
