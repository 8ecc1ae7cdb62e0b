"""Sequence classification: cross-entropy; accuracy and macro-F1 (torchmetrics)."""
from __future__ import annotations

import torch.nn.functional as F
import torchmetrics

from ..models.vocab import PAD
from .base import TaskModule


class ClassificationModule(TaskModule):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        n = self.dm.n_classes
        metrics = torchmetrics.MetricCollection(
            {"accuracy": torchmetrics.Accuracy("multiclass", num_classes=n),
             "macro_f1": torchmetrics.F1Score("multiclass", num_classes=n, average="macro")}
        )
        self.val_metrics, self.test_metrics = metrics.clone("val/"), metrics.clone("test/")

    def training_step(self, batch, _):
        loss = F.cross_entropy(self.model(batch["tokens"]), batch["label"])
        self.count_tokens(batch["tokens"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _eval(self, batch, metrics, stage):
        logits = self.model(batch["tokens"])
        self.log(f"{stage}/loss", F.cross_entropy(logits, batch["label"]), batch_size=len(logits))
        metrics.update(logits, batch["label"])
        self.log_dict(metrics, batch_size=len(logits))
        if stage == "test":
            rows = zip(batch["tokens"], batch["label"], logits.argmax(-1))
            for tokens, label, pred in list(rows)[: self.n_samples - len(self.samples)]:
                self.samples.append({"input": self.dm.decode(tokens), "label": int(label), "prediction": int(pred)})

    def validation_step(self, batch, _):
        self._eval(batch, self.val_metrics, "val")

    def test_step(self, batch, _):
        self._eval(batch, self.test_metrics, "test")

    generative = False  # one forward pass: timed in natural mode only

    def infer(self, batch, new_tokens=None):
        self.model(batch["tokens"]).argmax(-1)
        return int((batch["tokens"] != PAD).sum())
