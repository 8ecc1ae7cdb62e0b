"""Hugging Face Hub datasets by name, through `datasets.load_dataset` (Lhoest et al. 2021), as raw-text splits.

Before anything else the hub is probed with a short TCP connect (`PROBE_SECONDS`); when it is unreachable (or
HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is already set) the HF offline flags are set, so `load_dataset` answers from
the local HF cache at once instead of retrying for minutes, and a dataset that is not cached is a one-line
ConfigError pointing at the local-file configs (data=parallel | tsv | text with data.root).
"""
from __future__ import annotations

import os
import socket

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from ..config import ConfigError
from .files import SPLITS

HUB_HOST, PROBE_SECONDS = "huggingface.co", 3.0
OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_reachable(host: str = HUB_HOST, port: int = 443, timeout: float = PROBE_SECONDS) -> bool:
    if any(os.environ.get(flag, "").lower() in ("1", "true", "yes", "on") for flag in OFFLINE_FLAGS):
        return False
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def go_offline() -> None:
    """Set the HF offline flags here and in the already imported libraries (they read them at import)."""
    import datasets
    import huggingface_hub

    for flag in OFFLINE_FLAGS:
        os.environ[flag] = "1"
    datasets.config.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def load(root=None, seed: int = 0, path: str = "", name: str | None = None, splits: dict | None = None,
         src_lang: str | None = None, tgt_lang: str | None = None, text_column: str = "sentence",
         label_column: str = "label") -> DatasetDict:
    """`load_dataset(path, name)`; `splits` maps our split -> the hub's (e.g. test: validation for GLUE, whose
    test labels are hidden). Translation datasets (a `translation` column of {lang: text}) need src_lang and
    tgt_lang; others are classification with `text_column` and `label_column`. `root` and `seed` are unused."""
    from datasets import load_dataset

    online = hub_reachable()
    if not online:
        go_offline()
    hub_id = f"{path}/{name}" if name else path
    try:
        loaded = load_dataset(path, name)
    except Exception as e:  # noqa: BLE001 - any failure of the look-up is the same one line for the user
        where = "the hub is unreachable and it is not in the local HF cache" if not online else str(e).splitlines()[0]
        raise ConfigError(f"data: hub dataset {hub_id} could not be loaded ({where}); use local files instead: "
                          f"data=parallel|tsv|text data.root=<dir> (see README, Data)") from None
    splits = {**{s: s for s in SPLITS}, **(splits or {})}
    missing = sorted(set(splits.values()) - set(loaded))
    if missing:
        raise ConfigError(f"data: hub dataset {hub_id} has no split {', '.join(missing)}; it has {', '.join(loaded)}")
    out = DatasetDict({ours: _raw(loaded[theirs], src_lang, tgt_lang, text_column, label_column)
                       for ours, theirs in splits.items()})
    out.source = f"hf:{hub_id}"
    return out


def _raw(ds: Dataset, src_lang, tgt_lang, text_column, label_column) -> Dataset:
    if "translation" in ds.column_names:
        if not (src_lang and tgt_lang):
            raise ConfigError("data: a translation dataset needs data.src_lang and data.tgt_lang")
        pairs = ds["translation"]
        return Dataset.from_dict({"src": [p[src_lang] for p in pairs], "tgt": [p[tgt_lang] for p in pairs]})
    for col in (text_column, label_column):
        if col not in ds.column_names:
            raise ConfigError(f"data: column {col!r} is not among {ds.column_names}")
    label = ds.features[label_column]
    names = label.names if isinstance(label, ClassLabel) else sorted(set(ds[label_column]))
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"text": [t.strip() for t in ds[text_column]], "label": list(ds[label_column])},
                             features=features)
