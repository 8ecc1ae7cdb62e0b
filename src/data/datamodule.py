"""One LightningDataModule for every task: raw-text `datasets.DatasetDict` + any tokenizer -> padded batches.

Batches (token ids, right-padded with PAD, long tensors):
  translation     {"src": (B, S), "tgt": (B, T)}   target without <bos>/<eos>; the task adds them
  classification  {"tokens": (B, S), "label": (B,)}
  lm              {"tokens": (B, T)}                <bos> w₁ … w_n <eos>
Batches are bucketed: examples of similar length are batched together, so little compute goes to padding.
"""
from __future__ import annotations

import random

import lightning as L
import torch
from datasets import DatasetDict
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Sampler

from ..models.vocab import BOS, EOS, PAD

FIELDS = {"translation": ("src", "tgt"), "classification": ("text",), "lm": ("text",)}


class BucketBatchSampler(Sampler[list[int]]):
    """Shuffle, cut into pools of `pool` batches, sort each pool by length, batch, shuffle the batches."""

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool, seed: int = 0, pool: int = 50):
        self.lengths, self.batch_size, self.shuffle, self.seed, self.pool = lengths, batch_size, shuffle, seed, pool
        self.epoch = 0

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        order = list(range(len(self.lengths)))
        if not self.shuffle:  # evaluation: sorted by length, deterministic
            order.sort(key=self.lengths.__getitem__)
            yield from (order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size))
            return
        rng.shuffle(order)
        step = self.batch_size * self.pool
        batches = []
        for i in range(0, len(order), step):
            chunk = sorted(order[i : i + step], key=self.lengths.__getitem__)
            batches += [chunk[j : j + self.batch_size] for j in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        rank, world = _rank_and_world()  # DDP (trainer=ddp): each rank takes every world-th batch, same count on all
        yield from batches[rank : len(batches) // world * world : world]

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
                 eval_batch_size: int = 128, max_length: int = 256, seed: int = 0):
        super().__init__()
        self.task, self.raw, self.tokenizer = task, raw, tokenizer
        self.batch_size, self.eval_batch_size, self.max_length, self.seed = batch_size, eval_batch_size, max_length, seed
        self.splits = {name: self._encode(ds) for name, ds in raw.items()}

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def n_classes(self) -> int:
        return max(self.raw["train"]["label"]) + 1 if self.task == "classification" else 0

    def _encode(self, ds):
        def encode(batch):
            out = {}
            for f in FIELDS[self.task]:
                ids = [e.ids[: self.max_length] for e in self.tokenizer.encode_batch(batch[f])]
                out[f + "_ids"] = [[BOS, *x, EOS] for x in ids] if self.task == "lm" else ids
            return out

        return ds.map(encode, batched=True, remove_columns=[f for f in FIELDS[self.task]])

    def collate(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if self.task == "translation":
            return {"src": pad([r["src_ids"] for r in rows]), "tgt": pad([r["tgt_ids"] for r in rows])}
        batch = {"tokens": pad([r["text_ids"] for r in rows])}
        if self.task == "classification":
            batch["label"] = torch.tensor([r["label"] for r in rows], dtype=torch.long)
        return batch

    def loader(self, split: str, shuffle: bool = False, batch_size: int | None = None) -> DataLoader:
        ds = self.splits[split].with_format(None)
        key = "src_ids" if self.task == "translation" else "text_ids"
        lengths = [len(x) for x in ds[key]]
        size = batch_size or (self.batch_size if shuffle else self.eval_batch_size)
        sampler = BucketBatchSampler(lengths, size, shuffle, self.seed)
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
