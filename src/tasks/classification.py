"""Sequence classification: cross-entropy; accuracy and macro-F1 (torchmetrics). Every test example's label,
prediction and class probabilities go to <run_dir>/predictions.jsonl: {"id", "label", "prediction", "probs"}
(class indices; results.json's data.json / "labels" name them), so test/accuracy = mean(label == prediction)."""
from __future__ import annotations

import torch.nn.functional as F
import torchmetrics

from ..models.vocab import PAD
from .base import TaskModule, spread_over_lengths


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
            rows, predicted = batch["index"].tolist(), logits.argmax(-1).tolist()
            self._predictions.update(zip(rows, predicted))
            probs = logits.detach().float().softmax(-1).tolist()
            self._rows.update((i, {"id": i, "label": y, "prediction": p, "probs": q})
                              for i, y, p, q in zip(rows, batch["label"].tolist(), predicted, probs))

    def on_test_epoch_start(self):
        self._predictions: dict[int, int] = {}  # raw test row -> predicted class
        self._rows: dict[int, dict] = {}  # raw test row -> predictions.jsonl row

    def prediction_rows(self) -> list[dict]:
        return [self._rows[i] for i in sorted(getattr(self, "_rows", {}))]

    @property
    def predictions(self) -> dict[int, int]:
        """Raw test row -> predicted class index, from the last test epoch."""
        return self._predictions

    def on_test_epoch_end(self):
        """Samples: raw test texts drawn across lengths (seeded), with their label and the prediction."""
        text, label = list(self.dm.raw["test"]["text"]), list(self.dm.raw["test"]["label"])
        rows = sorted(self._predictions)
        picks = [rows[p] for p in spread_over_lengths([len(text[i]) for i in rows], self.n_samples, self.dm.seed)]
        self.samples = [{"input": text[i], "label": label[i], "prediction": self._predictions[i]} for i in picks]

    def validation_step(self, batch, _):
        self._eval(batch, self.val_metrics, "val")

    def test_step(self, batch, _):
        self._eval(batch, self.test_metrics, "test")

    generative = False  # one forward pass: timed in natural mode only

    def infer(self, batch, new_tokens=None):
        self.model(batch["tokens"]).argmax(-1)
        return int((batch["tokens"] != PAD).sum())
