"""Model selection's pieces (src/selection.py) and the fixed val/bleu subset (src/tasks/translation.py)."""
from types import SimpleNamespace

import pytest
from datasets import Dataset

from src.config import ConfigError, validate
from src.selection import best_in_history, validation_record
from src.tasks.translation import TranslationModule

from tests.conftest import compose


def test_best_in_history_is_the_first_best_value_by_mode():
    h = {"val/bleu": [[2, 1.0], [4, 3.0], [6, 3.0], [8, 2.0]], "val/loss": [[2, 5.0], [4, float("nan")], [6, 4.0]]}
    assert best_in_history(h, "val/bleu", "max") == (3.0, 4)  # a later equal value does not replace it
    assert best_in_history(h, "val/loss", "min") == (4.0, 6)  # a non-finite validation is never the best
    assert best_in_history(h, "val/accuracy", "max") == (None, None)


def test_validation_record_says_which_checkpoint_was_tested():
    h = {"val/loss": [[2, 5.0], [4, 4.0]]}
    assert validation_record("val/loss", "min", None, h, 4) == {
        "metric": "val/loss", "mode": "min", "best": 4.0, "best_step": 4, "checkpoint": "last", "tested_step": 4}
    picked = {"best": 5.0, "best_step": 2, "path": None}
    assert validation_record("val/loss", "min", picked, h, 4) == {
        "metric": "val/loss", "mode": "min", "best": 5.0, "best_step": 2, "checkpoint": "best", "tested_step": 2}


def val_rows(lengths: list[int], n, seed: int = 0) -> list[int]:
    """TranslationModule.val_bleu_rows on a validation split of these source lengths."""
    split = Dataset.from_dict({"src_ids": [[7] * k for k in lengths]})
    owner = SimpleNamespace(dm=SimpleNamespace(splits={"validation": split}, seed=seed), val_bleu_sentences=n)
    return TranslationModule.val_bleu_rows.func(owner)


def test_val_bleu_subset_is_fixed_and_spread_over_source_lengths():
    lengths = [(i * 37) % 100 + 1 for i in range(100)]  # 1..100 tokens, shuffled
    picks = val_rows(lengths, 10)
    assert picks == val_rows(lengths, 10)  # the same sentences every validation and every run of this data
    assert len(set(picks)) == 10
    assert sorted((lengths[i] - 1) // 10 for i in picks) == list(range(10))  # one per tenth of the length distribution
    assert [lengths[i] for i in picks] == sorted(lengths[i] for i in picks)  # decoded in length order
    assert val_rows(lengths, 10, seed=1) != picks  # drawn by the data's seed
    assert sorted(val_rows(lengths, None)) == sorted(val_rows(lengths, 0)) == list(range(100))  # the whole set
    assert sorted(val_rows(lengths, 500)) == list(range(100))


def test_task_validation_metrics_and_their_checks():
    metrics = {t: (validate(compose(f"task={t}", *a)).task.val_metric, validate(compose(f"task={t}", *a)).task.val_mode)
               for t, a in (("translation", ()), ("classification", ("arch=encoder",)), ("lm", ("arch=decoder",)))}
    assert metrics == {"translation": ("val/bleu", "max"), "classification": ("val/accuracy", "max"),
                       "lm": ("val/loss", "min")}
    assert validate(compose("arch=nar")).task.val_metric == "val/bleu"  # never NAR's val/loss (+ length loss)
    with pytest.raises(ConfigError, match="task.val_metric=val/bleu needs task.module.val_bleu=true"):
        validate(compose("task.module.val_bleu=false"))
    validate(compose("task.module.val_bleu=false", "select_best=false"))
    with pytest.raises(ConfigError, match="task.val_mode=up is not valid; choose one of: max, min"):
        validate(compose("task.val_mode=up"))
    with pytest.raises(ConfigError, match="task.val_metric=test/bleu is not a validation metric"):
        validate(compose("task.val_metric=test/bleu"))
