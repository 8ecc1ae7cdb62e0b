"""Config -> data module: load the raw splits, apply `data.limit`, train (or reuse) the tokenizer, encode (or reuse).

The loader of `data.tasks.<task>` is called as `loader(root=data.root, seed=data.seed)` on top of its own config
node. `data.seed` (default 0) fixes the data, independent of the run's `seed`, so runs with different seeds differ
only in the model's initialisation and data order; set `data.seed=${seed}` to vary the data too.
`data.limit: {train: N, validation: N, test: N}` keeps the first N examples of a split, for every loader
(`debug=fast` uses it). The tokenizer and the encoded splits are cached under `data.cache_dir`
(default ~/.cache/archbench, env ARCHBENCH_CACHE_DIR; `null` turns caching off), keyed by the data identity's
content hash and the tokenizer settings, so a second run on the same data starts training within seconds.

Evaluating a finished run (src/eval.py) builds a data module of the *run's* tokenizer and label set on a data set
that may hold a test split only: `build_datamodule(cfg, spec, tokenizer=…, labels=…, splits=("test",))`.
Knowledge distillation gets its teacher as a callable (`teacher(run_dir, sources) -> targets`, src/trained.py), so
nothing here imports the code that rebuilds a finished run.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from pathlib import Path

from datasets import DatasetDict, load_from_disk
from hydra.utils import instantiate
from tokenizers import Tokenizer

from ..atomic import save_dir_atomically
from ..config import ConfigError
from .datamodule import FIELDS, TextDataModule
from .files import SPLITS, data_identity
from .tokenizer import train_tokenizer

log = logging.getLogger("archbench")
CACHE_VERSION = 2  # bump when tokenizer training or encoding changes (2: CJK isolated in bpe/unigram)


def load_raw(cfg, spec, splits: tuple[str, ...] = SPLITS, teacher=None) -> DatasetDict:
    """The raw `splits` of `data.tasks[task]`, limited by `data.limit`. A loader that takes `splits` (the local
    file loaders) reads only those files; of any other loader's output only those splits are kept."""
    data = spec.data
    loader = instantiate(cfg.data.tasks[spec.task.name])
    kwargs = {"splits": list(splits)} if splits != SPLITS and "splits" in inspect.signature(loader.func).parameters else {}
    raw = loader(root=os.path.expanduser(data.root), seed=data.seed, **kwargs)
    if not getattr(raw, "source", None):  # generated data: the generator and its arguments are the source
        raw.source = f"{loader.func.__module__}.{loader.func.__name__}(seed={data.seed}, " + ", ".join(
            f"{k}={v}" for k, v in loader.keywords.items()) + ")"
    missing = [s for s in splits if s not in raw]
    if missing:
        raise ConfigError(f"data={data.name}: the loader returned no {', '.join(missing)} split")
    if set(raw) != set(splits):
        raw = _keep(raw, splits)
    raw = apply_limit(raw, {k: v for k, v in dict(data.limit or {}).items() if k in splits or k not in SPLITS})
    if data.distill_from and "train" in splits:
        from .distill import distill

        raw = distill(raw, data.distill_from, data.cache_dir, translate=teacher)
    return raw


def _keep(raw: DatasetDict, splits) -> DatasetDict:
    out = DatasetDict({s: raw[s] for s in splits})
    for attr in ("source", "blocks"):
        if hasattr(raw, attr):
            setattr(out, attr, getattr(raw, attr))
    return out


def apply_limit(raw: DatasetDict, limit: dict) -> DatasetDict:
    """Keep the first `limit[split]` examples of each split named in `limit` (None: all)."""
    bad = sorted(set(limit) - set(SPLITS))
    if bad:
        raise ConfigError(f"data.limit has unknown split(s) {', '.join(bad)}; choose among {', '.join(SPLITS)}")
    out = DatasetDict({s: d.select(range(min(len(d), limit[s]))) if limit.get(s) is not None else d
                       for s, d in raw.items()})
    for attr in ("source", "blocks"):
        if hasattr(raw, attr):
            setattr(out, attr, getattr(raw, attr))
    return out


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def build_datamodule(cfg, spec, tokenizer: Tokenizer | None = None, labels: list[str] | None = None,
                     splits: tuple[str, ...] = SPLITS, teacher=None) -> TextDataModule:
    """The data module of `cfg`. With `tokenizer` (a finished run's), nothing is trained or cached: the splits are
    encoded with it and `labels` (the run's label set) names the classes; `teacher`: see load_raw / distill."""
    task, data = spec.task.name, spec.data
    raw = load_raw(cfg, spec, splits, teacher)
    identity = data_identity(data.name, raw)
    bos_eos = not getattr(raw, "blocks", False)  # fixed-length blocks of running text: no sentence boundaries
    if tokenizer is not None:
        dm = TextDataModule(task, raw, tokenizer, data.batch_size, data.eval_batch_size, data.max_length, spec.seed,
                            bos_eos=bos_eos, labels=labels)
        dm.identity = identity
        return dm
    tok_key = _key(CACHE_VERSION, identity["hash"], task, data.tokenizer, data.vocab_size)
    enc_key = _key(tok_key, data.max_length, bos_eos)
    cache = Path(os.path.expanduser(data.cache_dir)) if data.cache_dir else None

    tok_path = cache / f"tokenizer-{tok_key}" / "tokenizer.json" if cache else None
    if tok_path and tok_path.is_file():
        tokenizer = Tokenizer.from_file(str(tok_path))
        log.info("tokenizer: cached %s", tok_path)
    else:
        texts = (text for field in FIELDS[task] for text in raw["train"][field])
        tokenizer = train_tokenizer(data.tokenizer, texts, data.vocab_size)
        if tok_path:
            save_dir_atomically(tok_path.parent, lambda d: tokenizer.save(str(d / "tokenizer.json")))

    enc_path = cache / f"encoded-{enc_key}" if cache else None
    splits = None
    if enc_path and enc_path.is_dir():
        splits = load_from_disk(str(enc_path))
        log.info("encoded splits: cached %s", enc_path)
    dm = TextDataModule(task, raw, tokenizer, data.batch_size, data.eval_batch_size, data.max_length, spec.seed,
                        bos_eos=bos_eos, splits=splits)
    if enc_path and splits is None:
        save_dir_atomically(enc_path, lambda d: DatasetDict(dm.splits).save_to_disk(str(d)))
    dm.identity = identity
    return dm
