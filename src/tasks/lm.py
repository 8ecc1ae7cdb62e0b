"""Language modeling: next-token cross-entropy; perplexity (torchmetrics); continuations from test prompts.
Every test sequence's predicted-token count and summed NLL (nats) go to <run_dir>/predictions.jsonl:
{"id", "tokens", "nll"}, so test/perplexity = exp(Σ nll / Σ tokens) (per-sequence losses for paired tests)."""
from __future__ import annotations

import torch.nn.functional as F
import torchmetrics

from ..config import LM_PROMPT_TOKENS
from ..models.vocab import EOS, PAD
from .base import TaskModule

PROMPT_TOKENS, NEW_TOKENS = LM_PROMPT_TOKENS, 32  # <bos> + 3 words as the prompt, 32 tokens generated


class LMModule(TaskModule):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.val_ppl = torchmetrics.text.Perplexity(ignore_index=PAD)
        self.test_ppl = torchmetrics.text.Perplexity(ignore_index=PAD)

    def _loss(self, tokens):
        logits = self.model(tokens[:, :-1])
        return logits, self.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=PAD)

    def training_step(self, batch, _):
        _, loss = self._loss(batch["tokens"])
        self.count_tokens(batch["tokens"][:, 1:])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _eval(self, batch, ppl, stage):
        tokens = batch["tokens"]
        logits, loss = self._loss(tokens)
        n = int((tokens[:, 1:] != PAD).sum())
        self.log(f"{stage}/loss", loss, batch_size=n)
        ppl.update(logits, tokens[:, 1:])
        self.log(f"{stage}/perplexity", ppl, batch_size=n)
        if stage == "test":
            targets = tokens[:, 1:]
            nll = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=PAD, reduction="none").sum(1)
            counts = (targets != PAD).sum(1)
            self._rows.update((i, {"id": i, "tokens": int(n_tok), "nll": float(v)})
                              for i, n_tok, v in zip(batch["index"].tolist(), counts.tolist(), nll.tolist()))
        if stage == "test" and len(self.samples) < self.n_samples:
            prompts = tokens[: self.n_samples - len(self.samples), :PROMPT_TOKENS]
            for p, out in zip(prompts, self.generate_tokens(prompts, NEW_TOKENS)):
                self.samples.append({"prompt": self.dm.decode(p), "continuation": self.dm.decode(out)})

    def on_test_epoch_start(self):
        self._rows: dict[int, dict] = {}  # raw test row -> predictions.jsonl row

    def prediction_rows(self) -> list[dict]:
        return [self._rows[i] for i in sorted(getattr(self, "_rows", {}))]

    def validation_step(self, batch, _):
        self._eval(batch, self.val_ppl, "val")

    def test_step(self, batch, _):
        self._eval(batch, self.test_ppl, "test")

    def infer(self, batch, new_tokens=None):
        prompt = batch["tokens"][:, :PROMPT_TOKENS]
        out = self.generate_tokens(prompt, new_tokens or NEW_TOKENS, fixed_length=new_tokens is not None)
        return int(((out != PAD) & (out != EOS)).sum())
