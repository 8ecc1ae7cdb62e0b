"""Attention heatmaps: target tokens (rows) × source tokens (columns), like the "I love you" → "我爱你" matrix."""
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
