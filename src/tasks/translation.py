"""Translation: teacher forcing (AR: <bos> y → y <eos>; NAR: the model's own CMLM loss), then decoding with the
configured method. Scored with sacreBLEU (Post 2018: BLEU cased, lowercased BLEU, chrF; the BLEU tokenizer chosen from
the target language, src/tasks/scoring.py) and exact match of the detokenized hypotheses against the *raw* test
references from the dataset, never references rebuilt from token ids (those lose every out-of-vocabulary word).
Every hypothesis goes to <run_dir>/hypotheses.jsonl. Cross-attention heatmaps: test sentences across lengths
(attention_examples) and any sentences on request (attention_for_sentences, `attention.sentences`)."""
from __future__ import annotations

import dataclasses
import functools
import json
import logging

import torch

from ..models.vocab import BOS, EOS, PAD
from .base import TaskModule, spread_over_lengths
from .scoring import bleu_tokenizer, metric_signatures, translation_metrics  # noqa: F401 (re-exported)

log = logging.getLogger("archbench")


def teacher_forcing_pair(tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded target (B, T) -> decoder input <bos> y₁…y_n and labels y₁…y_n <eos>, both (B, T+1)."""
    b = tgt.size(0)
    tgt_in = torch.cat([torch.full((b, 1), BOS, dtype=tgt.dtype, device=tgt.device), tgt], 1)
    tgt_out = torch.cat([tgt, torch.full((b, 1), PAD, dtype=tgt.dtype, device=tgt.device)], 1)
    tgt_out[torch.arange(b, device=tgt.device), (tgt != PAD).sum(1)] = EOS
    return tgt_in, tgt_out


class TranslationModule(TaskModule):
    """val_bleu (task.module.val_bleu, on by default): each validation also decodes a fixed subset of the validation
    set, `val_bleu_sentences` sentences spread over the source lengths (`spread_over_lengths`, seeded by data.seed:
    the same sentences for every run, seed and arch of one data set; None or 0: the whole set), decoded greedily
    for AR models (`val_decode`: cheap and deterministic, so beam or sampling runs select on the same footing; the
    run's repetition controls kept) and with the run's own mask-predict passes for NAR, and logs val/bleu (corpus sacreBLEU with the run's tokenizer) against
    the raw validation references, as fairseq's --eval-bleu. It is the model-selection metric (task.val_metric):
    never val/loss, which for NAR adds a length loss. The subset is decoded apart from the validation batches, so
    trainer.limit_val_batches does not change which sentences are scored.
    bleu_tokenize (task.bleu_tokenize): the sacreBLEU tokenizer; None: chosen from tgt_lang (data.tgt_lang), as
    sacreBLEU's CLI does (zh, ja-mecab / char, ko-mecab / char, else 13a). `metrics_signature` records the choice."""

    def __init__(self, *args, val_bleu: bool = True, val_bleu_sentences: int | None = 256,
                 bleu_tokenize: str | None = None, tgt_lang: str | None = None, **kw):
        super().__init__(*args, **kw)
        self.bleu_tokenize = bleu_tokenizer(tgt_lang, bleu_tokenize)
        self.metrics_signature = metric_signatures(self.bleu_tokenize)
        self.attention_record: dict = {}  # what the heatmaps drew (results.json -> artifacts)
        self.nar = getattr(self.model, "non_autoregressive", False)
        self.val_bleu, self.val_bleu_sentences = val_bleu, val_bleu_sentences
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
        loss = self.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD,
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

    def on_validation_epoch_end(self):
        if self.val_bleu and not self.trainer.sanity_checking:
            self.log("val/bleu", self.validation_bleu())

    @functools.cached_property
    def val_bleu_rows(self) -> list[int]:
        """The validation rows val/bleu scores, in source-length order: `val_bleu_sentences` spread over the
        lengths (seeded by the data's seed, so fixed for a data set), or all of them."""
        lengths = [len(x) for x in self.dm.splits["validation"].with_format(None)["src_ids"]]
        n = self.val_bleu_sentences
        rows = spread_over_lengths(lengths, n, self.dm.seed) if n and n < len(lengths) else range(len(lengths))
        return sorted(rows, key=lambda i: (lengths[i], i))

    @property
    def val_decode(self):
        """The decoding val/bleu uses: greedy for AR models (the run's other settings kept), the run's for NAR."""
        return self.decode_cfg if self.nar else dataclasses.replace(self.decode_cfg, method="greedy")

    def validation_bleu(self) -> float:
        """Corpus BLEU of `val_decode` on the `val_bleu_rows` against their raw references."""
        ds, rows, size = self.dm.splits["validation"].with_format(None), self.val_bleu_rows, self.dm.eval_batch_size
        hyps = {}
        with self.trainer.precision_plugin.forward_context():  # as the validation steps (bf16-mixed: autocast)
            for start in range(0, len(rows), size):
                batch = self.dm.collate(list(ds.select(rows[start : start + size])))
                hyps.update(self.hypotheses_of({k: v.to(self.device) for k, v in batch.items()}, self.val_decode))
        refs = self.dm.raw["validation"]["tgt"]
        return translation_metrics([hyps[i] for i in rows], [refs[i] for i in rows], tokenize=self.bleu_tokenize)["bleu"]

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
            self.log_dict(translation_metrics([hyps[i] for i in rows], refs, prefix=f"test/{name}",
                                              tokenize=self.bleu_tokenize))
        picks = [rows[p] for p in spread_over_lengths([len(src[i]) for i in rows], self.n_samples, self.dm.seed)]
        self.samples = [{"source": src[i], "reference": tgt[i], "hypothesis": self.hypotheses[""][i]} for i in picks]

    def infer(self, batch, new_tokens=None):
        out = (self.translate(batch["src"]) if new_tokens is None
               else self.generate_tokens(batch["src"], new_tokens, fixed_length=True))
        return int(((out != PAD) & (out != EOS)).sum())


def variant_name(prefix: str) -> str:
    """hypotheses.jsonl's name of a decode variant, as results.json's `inference` keys: "" -> "decode" (the
    headline decoding), "pass1/" -> "decode_pass1"."""
    return "decode" + (f"_{prefix.rstrip('/')}" if prefix else "")


def write_hypotheses(module: TranslationModule, path) -> None:
    """One JSON line per test sentence per decode variant, in test-set order:
    {"id" (raw test row), "variant" ("decode", "decode_pass1"), "source", "reference", "hypothesis"}."""
    src, tgt = list(module.dm.raw["test"]["src"]), list(module.dm.raw["test"]["tgt"])
    with open(path, "w", encoding="utf-8") as f:
        for name, hyps in module.hypotheses.items():
            for i in sorted(hyps):
                row = {"id": i, "variant": variant_name(name), "source": src[i], "reference": tgt[i],
                       "hypothesis": hyps[i]}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


MAX_HEATMAP_TOKENS = 32  # test sentences drawn are at most this long (source tokens), so each label stays legible


def attention_examples(module: TranslationModule, n: int = 3, max_len: int = MAX_HEATMAP_TOKENS) -> list[tuple]:
    """(source tokens, output tokens, cross-attention (T, S)) for n test sentences drawn across the length
    distribution (short ones included, seeded; at most max_len source tokens), on the model's own output.
    Empty for models without cross-attention (the decoder-only prefix-LM)."""
    test = module.dm.splits["test"]["src_ids"]
    return [e[:3] for e in cross_attention_of(module, [test[i] for i in heatmap_rows(list(map(len, test)), n,
                                                                                     module.dm.seed, max_len)])]


def heatmap_rows(lengths: list[int], n: int, seed: int, max_len: int = MAX_HEATMAP_TOKENS) -> list[int]:
    """Indices of n sentences spread over the length distribution of those at most max_len long (all, if none is),
    shortest first: the shortest bin is always drawn, so a 3-token "I love you." can be."""
    rows = [i for i, n_tok in enumerate(lengths) if 0 < n_tok <= max_len] or list(range(len(lengths)))
    picks = spread_over_lengths([lengths[i] for i in rows], n, seed)
    return sorted((rows[p] for p in picks), key=lambda i: (lengths[i], i))


def attention_for_sentences(module: TranslationModule, sentences: list[str], path) -> list[dict]:
    """Draw the cross-attention matrix (output tokens × source tokens) of the model's translation of exactly these
    sentences into one PNG at `path` (a panel each, titled "source → translation"). Returns, per sentence, the source,
    the detokenized translation and both token lists; [] (nothing drawn) for a model without cross-attention.
    Any caller with a trained module can use it (`attention.sentences` in src.run)."""
    from ..plots import attention_heatmaps

    dm = module.dm
    ids = [e.ids[: dm.max_length] for e in dm.tokenizer.encode_batch(list(sentences))]
    examples = cross_attention_of(module, ids)
    if not examples:
        log.warning("attention.sentences: this model has no cross-attention to draw (decoder-only / rnn_seq2seq)")
        return []
    drawn = [{"source": sentence, "translation": dm.decode(hyp), "source_tokens": src_toks, "target_tokens": out_toks}
             for sentence, (src_toks, out_toks, _, hyp) in zip(sentences, examples)]
    attention_heatmaps([e[:3] for e in examples], path, titles=[f"{d['source']} → {d['translation']}" for d in drawn])
    return drawn


@torch.no_grad()
def cross_attention_of(module: TranslationModule, src_ids: list[list[int]]) -> list[tuple]:
    """(source tokens, output tokens, cross-attention (T, S), output ids) for each tokenized source, on the model's
    own output."""
    model, dm = module.model, module.dm
    if not src_ids or not hasattr(model, "cross_attention") or not getattr(model, "attends", True):
        return []
    src = dm.collate([{"src_ids": s, "tgt_ids": [], "index": 0} for s in src_ids])["src"].to(module.device)
    was_training = model.training
    model.eval()
    out = module.translate(src)
    tok = dm.tokenizer.id_to_token
    examples = []
    for i, s in enumerate(src_ids):
        hyp = [t for t in out[i].tolist() if t != PAD]
        # NAR: row j attends for target position j; AR: row j while predicting y_j, fed <bos> y₁ … y_{j-1}
        tgt = hyp if module.nar else [BOS, *hyp[:-1]]
        weights = model.cross_attention(src[i : i + 1, : len(s)], torch.tensor([tgt], device=src.device))[0]
        examples.append(([tok(t) for t in s], [tok(t) for t in hyp], weights.float().cpu().numpy(), hyp))
    model.train(was_training)
    return examples
