"""Compute budgets (src/budget.py): the planned max_steps is the step at which the training loader's own batches
reach the budget; a FLOPs budget trains a costlier arch on fewer tokens; validation points; one-line errors."""
import pytest

from src.budget import make_plan
from src.config import ConfigError, validate
from src.data.build import build_datamodule
from src.models.vocab import PAD
from src.sizing import build
from tests.conftest import compose

DATA = ("size=tiny", "data.limit={train: 200, validation: 16, test: 16}", "data.batch_size=16")


def planned(*overrides, arch="encdec"):
    cfg = compose(f"arch={arch}", *DATA, *overrides)
    spec = validate(cfg.copy())
    dm = build_datamodule(cfg, spec)
    _, shape, _ = build(cfg, spec, dm.vocab_size, dm.n_classes)
    trainer = {"max_steps": 1000, "val_check_interval": None, "check_val_every_n_epoch": None}
    return make_plan(spec, dm, shape, trainer), dm


def test_the_planned_max_steps_is_the_step_whose_batches_reach_the_token_budget():
    plan, dm = planned("budget.tokens=5000")
    loader, seen, step = dm.train_dataloader(), 0, 0
    while seen < 5000:  # as the task module counts them: non-pad source + target tokens of each batch
        for batch in loader:  # one epoch (the sampler draws the next epoch's order on the next pass)
            step += 1
            seen += int((batch["src"] != PAD).sum() + (batch["tgt"] != PAD).sum())
            if seen >= 5000:
                break
    assert step > len(loader)  # more than one epoch: the skipped epochs are counted too
    assert plan.max_steps == step and plan.tokens == 5000 and plan.kind == "tokens"
    assert plan.val_check_interval == step // 8


def test_a_flops_budget_gives_a_costlier_arch_fewer_tokens():
    enc, _ = planned("budget.flops=5e8")
    rnn, _ = planned("budget.flops=5e8", arch="rnn_attn")
    assert enc.tokens * enc.flops_per_token == pytest.approx(5e8) == rnn.tokens * rnn.flops_per_token
    assert (enc.flops_per_token > rnn.flops_per_token) == (enc.max_steps < rnn.max_steps)


def test_without_a_budget_max_steps_is_kept_and_validation_comes_at_8_points():
    plan, _ = planned()
    assert (plan.kind, plan.max_steps, plan.tokens, plan.val_check_interval) == ("steps", 1000, None, 125)
    assert plan.trainer_overrides() == {"max_steps": 1000, "val_check_interval": 125}


def test_both_budgets_at_once_is_one_line():
    with pytest.raises(ConfigError, match="budget.tokens=1e\\+06 and budget.flops=1e\\+09 are both set") as e:
        validate(compose("budget.tokens=1e6", "budget.flops=1e9"))
    assert "\n" not in str(e.value)
