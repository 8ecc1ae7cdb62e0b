"""Translation: teacher forcing (AR: <bos> y → y <eos>; NAR: the model's own CMLM loss), then decoding with the
configured method. Scored with sacreBLEU (Post 2018: BLEU 13a cased, lowercased BLEU, chrF) and exact match of the
detokenized hypotheses against the *raw* test references from the dataset, never references rebuilt from token
ids (those lose every out-of-vocabulary word). Every hypothesis goes to <run_dir>/hypotheses.jsonl."""
from __future__ import annotations

import dataclasses
import json

import sacrebleu
import torch
import torch.nn.functional as F

from ..models.vocab import BOS, EOS, PAD
from .base import TaskModule, spread_over_lengths


def teacher_forcing_pair(tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded target (B, T) -> decoder input <bos> y₁…y_n and labels y₁…y_n <eos>, both (B, T+1)."""
    b = tgt.size(0)
    tgt_in = torch.cat([torch.full((b, 1), BOS, dtype=tgt.dtype, device=tgt.device), tgt], 1)
    tgt_out = torch.cat([tgt, torch.full((b, 1), PAD, dtype=tgt.dtype, device=tgt.device)], 1)
    tgt_out[torch.arange(b, device=tgt.device), (tgt != PAD).sum(1)] = EOS
    return tgt_in, tgt_out


class TranslationModule(TaskModule):
    """val_bleu=True (task.module.val_bleu): each validation also decodes its batches and logs val/bleu against the
    raw validation references (as fairseq's --eval-bleu), so BLEU can be followed against steps and wall time."""

    def __init__(self, *args, val_bleu: bool = False, **kw):
        super().__init__(*args, **kw)
        self.nar = getattr(self.model, "non_autoregressive", False)
        self.val_bleu, self._val_hyps = val_bleu, {}
        self.hypotheses: dict[str, dict[int, str]] = {}  # variant -> raw test row -> detokenized hypothesis

    @property
    def decode_variants(self):
        """The configured decoding, and for a multi-pass NAR model also a single pass ("pass1/")."""
        variants = super().decode_variants
        if self.nar and self.decode_cfg.passes > 1:
            variants["pass1/"] = dataclasses.replace(self.decode_cfg, passes=1)
        return variants

    def loss(self, batch) -> tuple[torch.Tensor, int]:
        src, tgt = batch["src"], batch["tgt"]
        if self.nar:
            return self.model.loss(src, tgt)
        tgt_in, tgt_out = teacher_forcing_pair(tgt)
        logits = self.model(src, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD,
                               label_smoothing=self.optim.label_smoothing)
        return loss, int((tgt_out != PAD).sum())

    def training_step(self, batch, _):
        loss, _ = self.loss(batch)
        self.count_tokens(batch["src"], batch["tgt"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, _):
        loss, n = self.loss(batch)
        self.log("val/loss", loss, batch_size=n)
        if self.val_bleu and not self.trainer.sanity_checking:
            self._val_hyps.update(self.hypotheses_of(batch))

    def on_validation_epoch_end(self):
        if self._val_hyps:
            refs, rows = self.dm.raw["validation"]["tgt"], sorted(self._val_hyps)
            self.log("val/bleu", sacrebleu.corpus_bleu([self._val_hyps[i] for i in rows], [[refs[i] for i in rows]]).score)
        self._val_hyps = {}

    def translate(self, src: torch.Tensor, decode=None) -> torch.Tensor:
        d = decode or self.decode_cfg
        return self.generate_tokens(src, int(d.max_len_a * src.size(1) + d.max_len_b), d)

    def hypotheses_of(self, batch, decode=None) -> dict[int, str]:
        """Raw split row -> detokenized hypothesis, for each sentence of the batch."""
        return dict(zip(batch["index"].tolist(), map(self.dm.decode, self.translate(batch["src"], decode))))

    def on_test_epoch_start(self):
        self.hypotheses = {name: {} for name in self.decode_variants}

    def test_step(self, batch, _):
        loss, n = self.loss(batch)
        self.log("test/loss", loss, batch_size=n)
        for name, decode in self.decode_variants.items():
            self.hypotheses[name].update(self.hypotheses_of(batch, decode))

    def on_test_epoch_end(self):
        src, tgt = list(self.dm.raw["test"]["src"]), list(self.dm.raw["test"]["tgt"])
        rows = sorted(self.hypotheses[""])
        refs = [tgt[i] for i in rows]
        for name, hyps in self.hypotheses.items():
            self.log_dict(translation_metrics([hyps[i] for i in rows], refs, prefix=f"test/{name}"))
        picks = [rows[p] for p in spread_over_lengths([len(src[i]) for i in rows], self.n_samples, self.dm.seed)]
        self.samples = [{"source": src[i], "reference": tgt[i], "hypothesis": self.hypotheses[""][i]} for i in picks]

    def infer(self, batch, new_tokens=None):
        out = (self.translate(batch["src"]) if new_tokens is None
               else self.generate_tokens(batch["src"], new_tokens, fixed_length=True))
        return int(((out != PAD) & (out != EOS)).sum())


def write_hypotheses(module: TranslationModule, path) -> None:
    """One JSON line per test sentence per decode variant: {"variant", "source", "reference", "hypothesis"}."""
    src, tgt = list(module.dm.raw["test"]["src"]), list(module.dm.raw["test"]["tgt"])
    with open(path, "w", encoding="utf-8") as f:
        for name, hyps in module.hypotheses.items():
            for i in sorted(hyps):
                row = {"variant": name, "source": src[i], "reference": tgt[i], "hypothesis": hyps[i]}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def translation_metrics(hyps: list[str], refs: list[str], prefix: str = "") -> dict[str, float]:
    """sacreBLEU corpus BLEU (13a tokenizer, cased), lowercased BLEU, chrF, and exact match, against raw refs."""
    return {
        f"{prefix}bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
        f"{prefix}bleu_lc": sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score,
        f"{prefix}chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
        f"{prefix}exact_match": 100.0 * sum(h == r for h, r in zip(hyps, refs)) / max(1, len(refs)),
    }


@torch.no_grad()
def attention_examples(module: TranslationModule, n: int = 3, min_len: int = 5) -> list[tuple[list[str], list[str], object]]:
    """(source tokens, output tokens, cross-attention (T, S)) for n test sentences, on the model's own output.
    Empty for models without cross-attention (the decoder-only prefix-LM)."""
    model, dm = module.model, module.dm
    if not hasattr(model, "cross_attention") or not getattr(model, "attends", True):
        return []
    rows = [r for r in dm.splits["test"] if len(r["src_ids"]) >= min_len][:n]
    if not rows:
        return []
    src = dm.collate(rows)["src"].to(module.device)
    model.eval()
    out = module.translate(src)
    tok = dm.tokenizer.id_to_token
    examples = []
    for i in range(len(rows)):
        hyp = [t for t in out[i].tolist() if t != PAD]
        s = [t for t in src[i].tolist() if t != PAD]
        # NAR: row j attends for target position j; AR: row j while predicting y_j, fed <bos> y₁ … y_{j-1}
        tgt = hyp if module.nar else [BOS, *hyp[:-1]]
        weights = model.cross_attention(src[i : i + 1, : len(s)], torch.tensor([tgt], device=src.device))[0]
        examples.append(([tok(t) for t in s], [tok(t) for t in hyp], weights.float().cpu().numpy()))
    return examples
