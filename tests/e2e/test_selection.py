"""Model selection (src/selection.py) and per-example predictions, end to end on tiny runs: the test stage tests the
checkpoint best on the task's validation metric, results.json says which, and predictions.jsonl recomputes the test
metrics."""
import json
import math

import lightning as L
import pytest
import torch

from src.eval import eval_datamodule, evaluate
from src.trained import load_run

from tests.conftest import run_main

TINY = ("debug=fast", "size=tiny", "logger=csv")


class ScrambleAfterFirstValidation(L.Callback):
    """Adds N(0, scale²) noise (seeded) to every weight once, at the first training step after the first
    validation: the validation metric peaks at that validation and the later ones are far worse. Before the step,
    not at the validation's end, so the best checkpoint of that validation still holds the trained weights."""

    def __init__(self, scale: float = 10.0):
        self.scale, self.done = scale, False

    def on_train_batch_start(self, trainer, pl_module, *_):
        if not self.done and trainer.global_step >= trainer.val_check_interval:
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for p in pl_module.model.parameters():
                    p.add_(self.scale * torch.randn(p.shape, generator=g).to(p))
            self.done = True


SCRAMBLE = f"+callbacks.scramble._target_={__name__}.ScrambleAfterFirstValidation"


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_a_run_whose_validation_metric_peaks_early_tests_the_early_checkpoint(tmp_path):
    """LM (val/loss, min), validations at steps 2, 4, 6, weights scrambled after step 2: step 2's checkpoint is
    tested, and its test perplexity is what best.ckpt scores when evaluated on its own (src.eval); with
    select_best=false the last step is tested and is worse."""
    run = tmp_path / "best"
    r = run_main(run, "arch=decoder", "task=lm", *TINY, "trainer.max_steps=6", SCRAMBLE)
    losses = dict(r["history"]["val/loss"])
    assert sorted(losses) == [2, 4, 6] and losses[2] < min(losses[4], losses[6])
    assert r["validation"] == {"metric": "val/loss", "mode": "min", "best": pytest.approx(losses[2]), "best_step": 2,
                               "checkpoint": "best", "tested_step": 2}
    assert r["train"]["steps"] == 6
    trained = load_run(run)
    assert trained.checkpoint.name == "best.ckpt"
    again = evaluate(trained, eval_datamodule(trained), run / "eval" / "own", [], "own")
    assert again["metrics"]["test/perplexity"] == pytest.approx(r["metrics"]["test/perplexity"], rel=1e-5)
    # the same run tested on its last step instead: no best.ckpt, the scrambled weights, a far worse test loss
    last = run_main(tmp_path / "last", "arch=decoder", "task=lm", *TINY, "trainer.max_steps=6", SCRAMBLE,
                    "select_best=false")
    assert last["validation"] == {"metric": "val/loss", "mode": "min", "best": pytest.approx(losses[2]),
                                  "best_step": 2, "checkpoint": "last", "tested_step": 6}
    assert not (tmp_path / "last" / "checkpoints" / "best.ckpt").exists()
    assert last["metrics"]["test/loss"] > r["metrics"]["test/loss"] + 1.0


def test_lm_predictions_recompute_test_perplexity(tmp_path):
    r = run_main(tmp_path, "arch=decoder", "task=lm", *TINY)
    preds = rows(tmp_path / "predictions.jsonl")
    assert [p["id"] for p in preds] == list(range(r["data_identity"]["sizes"]["test"]))  # test-set order
    assert all(set(p) == {"id", "tokens", "nll"} and p["tokens"] > 0 for p in preds)
    ppl = math.exp(sum(p["nll"] for p in preds) / sum(p["tokens"] for p in preds))
    assert ppl == pytest.approx(r["metrics"]["test/perplexity"], rel=1e-4)
    assert r["validation"]["metric"] == "val/loss" and r["validation"]["checkpoint"] == "best"


def test_classification_predictions_recompute_test_accuracy(tmp_path):
    r = run_main(tmp_path, "arch=encoder", "task=classification", *TINY, "trainer.max_steps=6", "optim.lr=0.01")
    preds = rows(tmp_path / "predictions.jsonl")
    assert [p["id"] for p in preds] == list(range(r["data_identity"]["sizes"]["test"]))
    accuracy = sum(p["label"] == p["prediction"] for p in preds) / len(preds)
    assert accuracy == pytest.approx(r["metrics"]["test/accuracy"], abs=1e-6)
    assert len(r["labels"]) == len(preds[0]["probs"])  # the class indices, named in results.json
    for p in preds:
        assert sum(p["probs"]) == pytest.approx(1.0, abs=1e-5)
        assert max(range(len(p["probs"])), key=p["probs"].__getitem__) == p["prediction"]
    v, history = r["validation"], dict(r["history"]["val/accuracy"])
    assert (v["metric"], v["mode"], v["checkpoint"]) == ("val/accuracy", "max", "best")
    assert v["best"] == pytest.approx(max(history.values())) == pytest.approx(history[v["tested_step"]])
    # ModelCheckpoint keeps the first of equal values: the tested step is the first validation at the best value
    assert v["tested_step"] == min(s for s, a in history.items() if a == pytest.approx(v["best"]))


def test_nar_translation_selects_on_validation_bleu_not_its_length_loss(tmp_path):
    r = run_main(tmp_path, "arch=nar", "task=translation", *TINY, "trainer.max_steps=6")
    v, bleu = r["validation"], dict(r["history"]["val/bleu"])
    assert (v["metric"], v["mode"], v["checkpoint"]) == ("val/bleu", "max", "best")
    assert sorted(bleu) == [2, 4, 6] and v["best"] == pytest.approx(max(bleu.values()))
    assert bleu[v["tested_step"]] == pytest.approx(v["best"]) and v["best_step"] == v["tested_step"]
    hyps = rows(tmp_path / "hypotheses.jsonl")
    n = r["data_identity"]["sizes"]["test"]
    assert [h["variant"] for h in hyps] == ["decode"] * n + ["decode_pass1"] * n  # as results.json's inference
    assert [h["id"] for h in hyps] == list(range(n)) * 2
