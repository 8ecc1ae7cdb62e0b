"""Every figure: attention heatmaps (target × source, like the "I love you" → "我爱你" matrix) and the sweep report's
plots.

Chinese, Japanese and Korean labels need a CJK font: matplotlib's default DejaVu Sans has none of their glyphs and
draws empty boxes. use_cjk_fallback() finds an installed CJK font (Noto Sans CJK from Debian's `fonts-noto-cjk`,
Source Han Sans, WenQuanYi, Droid Sans Fallback, …; also one installed after matplotlib's font cache was built) and
puts it after DejaVu Sans in `font.family`, matplotlib's per-glyph fallback list (≥ 3.6). With none installed, a
figure whose labels need one logs a single warning instead of one "Glyph … missing" warning per character.
"""
from __future__ import annotations

import logging
import math
import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger("archbench")
# Han (CJK unified ideographs + extensions, compatibility), kana, Hangul, CJK punctuation, full-width forms
CJK = re.compile("[\u2e80-\u2fdf\u3000-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f"
                 "\uac00-\ud7ff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f\u1100-\u11ff]")
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Sans CJK KR", "Source Han Sans SC",
             "Source Han Sans CN", "Source Han Sans", "Noto Serif CJK SC", "Noto Serif CJK JP", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "Droid Sans Fallback", "AR PL UMing CN", "AR PL UKai CN")
FONT_INSTALL = "apt-get install fonts-noto-cjk"
_cjk_font: list = []  # [family or None] once looked up


def cjk_font() -> str | None:
    """The family name of an installed CJK font (registered with matplotlib), or None."""
    if _cjk_font:
        return _cjk_font[0]
    from matplotlib import font_manager as fm

    def known():
        names = {f.name for f in fm.fontManager.ttflist}
        return next((n for n in CJK_FONTS if n in names), None)

    found = known()
    if found is None:  # installed after matplotlib built its font cache: register the files directly
        for path in fm.findSystemFonts():
            if re.search(r"cjk|sourcehan|wqy|wenquanyi|droidsansfallback|uming|ukai", Path(path).name, re.I):
                try:
                    fm.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        found = known()
    _cjk_font.append(found)
    return found


def use_cjk_fallback(labels=()) -> bool:
    """If any label has a CJK character, put a CJK font in matplotlib's fallback list (True) or, with none
    installed, log one warning (False). Labels without CJK characters: nothing changes (True)."""
    if not any(CJK.search(str(t)) for t in labels):
        return True
    font = cjk_font()
    if font is None:
        log.warning("no CJK font installed: Chinese/Japanese/Korean labels are drawn as empty boxes; "
                    f"install one ({FONT_INSTALL}) and re-draw")
        return False
    families = list(plt.rcParams["font.family"])
    if families == ["sans-serif"]:
        families = [plt.rcParams["font.sans-serif"][0]]
    if font not in families:
        plt.rcParams["font.family"] = [*families, font]
    return True


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
