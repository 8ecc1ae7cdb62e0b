"""One LightningDataModule for every task: raw-text `datasets.DatasetDict` + any tokenizer -> padded batches.

Batches (token ids, right-padded with PAD, long tensors):
  translation     {"src": (B, S), "tgt": (B, T)}   target without <bos>/<eos>; the task adds them
  classification  {"tokens": (B, S), "label": (B,)}
  lm              {"tokens": (B, T)}                <bos> w₁ … w_n <eos> (blocks of running text: w₁ … w_n)
Every batch also has "index": (B,) the examples' row numbers in the raw split (e.g. for the raw references).
Sequences longer than `max_length` tokens are truncated, and the number truncated per split is logged.
Batches are bucketed: examples of similar length are batched together, so little compute goes to padding.
"""
from __future__ import annotations

import logging
import random

import lightning as L
import torch
from datasets import DatasetDict
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Sampler

from ..models.vocab import BOS, EOS, PAD

log = logging.getLogger("archbench")
FIELDS = {"translation": ("src", "tgt"), "classification": ("text",), "lm": ("text",)}


class BucketBatchSampler(Sampler[list[int]]):
    """Shuffle, cut into pools of `pool` batches, sort each pool by length, batch, shuffle the batches.
    The order depends only on (seed, epoch); `start` batches are skipped, so a run resumed at step `start`
    sees exactly the batches an uninterrupted run would."""

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool, seed: int = 0, pool: int = 50,
                 start: int = 0):
        self.lengths, self.batch_size, self.shuffle, self.seed, self.pool = lengths, batch_size, shuffle, seed, pool
        self.epoch, self.skip = divmod(start, len(self)) if shuffle else (0, 0)

    def __iter__(self):
        skip, self.skip = self.skip, 0
        yield from self._batches()[skip:]

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        order = list(range(len(self.lengths)))
        if not self.shuffle:  # evaluation: sorted by length, deterministic
            order.sort(key=self.lengths.__getitem__)
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rng.shuffle(order)
        step = self.batch_size * self.pool
        batches = []
        for i in range(0, len(order), step):
            chunk = sorted(order[i : i + step], key=self.lengths.__getitem__)
            batches += [chunk[j : j + self.batch_size] for j in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        rank, world = _rank_and_world()  # DDP (trainer=ddp): each rank takes every world-th batch, same count on all
        return batches[rank : len(batches) // world * world : world]

    def __len__(self):
        n = -(-len(self.lengths) // self.batch_size)
        return n // _rank_and_world()[1] if self.shuffle else n


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def pad(seqs: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(seqs), max(1, max(map(len, seqs)))), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


class TextDataModule(L.LightningDataModule):
    def __init__(self, task: str, raw: DatasetDict, tokenizer: Tokenizer, batch_size: int = 64,
                 eval_batch_size: int = 128, max_length: int = 256, seed: int = 0, bos_eos: bool = True,
                 splits: DatasetDict | None = None, labels: list[str] | None = None):
        """`splits`: already encoded splits (from the cache) instead of encoding `raw` here. `labels`: the class
        names in index order (a finished run's label set), else read from the training split."""
        super().__init__()
        self.task, self.raw, self.tokenizer, self.bos_eos = task, raw, tokenizer, bos_eos
        self._labels = list(labels) if labels is not None else None
        self.batch_size, self.eval_batch_size, self.max_length, self.seed = batch_size, eval_batch_size, max_length, seed
        self._check_splits(raw)
        self.splits = dict(splits) if splits is not None else {name: self._encode(ds) for name, ds in raw.items()}
        for name, ds in self.splits.items():
            for field in FIELDS[task]:
                n = sum(ds[f"{field}_truncated"])
                if n:
                    log.warning("%s: %d %s sequences truncated to data.max_length=%d tokens%s", name, n, field,
                                max_length, " (references stay raw)" if task == "translation" else "")
        self._check_splits(self.splits)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def n_classes(self) -> int:
        if self.task != "classification":
            return 0
        return len(self.label_names)

    @property
    def label_names(self) -> list[str]:
        """Class names in index order: the given label set, else the training split's (ClassLabel names, or the
        class indices 0..max as strings for integer labels)."""
        if self._labels is not None or self.task != "classification":
            return self._labels or []
        label = self.raw["train"].features["label"]
        names = getattr(label, "names", None)
        return list(names) if names else [str(i) for i in range(max(self.raw["train"]["label"]) + 1)]

    def _encode(self, ds):
        def encode(batch, index):
            out = {"index": index}
            for f in FIELDS[self.task]:
                ids = [e.ids for e in self.tokenizer.encode_batch(batch[f])]
                out[f + "_truncated"] = [len(x) > self.max_length for x in ids]
                ids = [x[: self.max_length] for x in ids]
                out[f + "_ids"] = [[BOS, *x, EOS] for x in ids] if self.task == "lm" and self.bos_eos else ids
            return out

        return ds.map(encode, batched=True, with_indices=True, remove_columns=[f for f in FIELDS[self.task]])

    def _check_splits(self, splits) -> None:
        """An empty split, or one whose examples are all empty after tokenisation, is bad data: stop before training."""
        from ..config import ConfigError

        for name, ds in splits.items():
            if len(ds) == 0:
                raise ConfigError(f"data split {name!r} is empty; every task needs train, validation and test examples")
            key = "src_ids" if self.task == "translation" else "text_ids"
            if self.task != "lm" and key in ds.column_names and not any(len(x) for x in ds[key]):
                raise ConfigError(f"data split {name!r}: all {len(ds)} examples are empty after tokenisation")

    def collate(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if self.task == "translation":
            batch = {"src": pad([r["src_ids"] for r in rows]), "tgt": pad([r["tgt_ids"] for r in rows])}
        else:
            batch = {"tokens": pad([r["text_ids"] for r in rows])}
        if self.task == "classification":
            batch["label"] = torch.tensor([r["label"] for r in rows], dtype=torch.long)
        batch["index"] = torch.tensor([r["index"] for r in rows], dtype=torch.long)
        return batch

    def loader(self, split: str, shuffle: bool = False, batch_size: int | None = None) -> DataLoader:
        ds = self.splits[split].with_format(None)
        key = "src_ids" if self.task == "translation" else "text_ids"
        lengths = [len(x) for x in ds[key]]
        size = batch_size or (self.batch_size if shuffle else self.eval_batch_size)
        start = self.trainer.global_step if shuffle and self.trainer is not None else 0  # resume: continue the order
        sampler = BucketBatchSampler(lengths, size, shuffle, self.seed, start=start)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=self.collate)

    def train_dataloader(self):
        return self.loader("train", shuffle=True)

    def val_dataloader(self):
        return self.loader("validation")

    def test_dataloader(self):
        return self.loader("test")

    def decode(self, ids) -> str:
        """Token ids -> detokenized text, stopping at <eos> and skipping special tokens."""
        ids = list(ids)
        if EOS in ids:
            ids = ids[: ids.index(EOS)]
        return self.tokenizer.decode([i for i in ids if i != PAD], skip_special_tokens=True)
