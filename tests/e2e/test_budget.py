"""Fair budgets end to end (src/budget.py, src/sizing.py): two archs under one FLOPs budget stop at the same
training FLOPs (within one step), with the budget, FLOPs and history in results.json; a size target is recorded."""
import pytest

from tests.conftest import run_main

# one worker runs the module: its module-scoped fixture (trained once, minutes on 2 cores) is built once
pytestmark = pytest.mark.xdist_group("budget_runs")

FAST = ("debug=fast", "logger=none", "size=tiny", "attention.examples=0")
BUDGET = 6e7


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory):
    return {arch: run_main(tmp_path_factory.mktemp(arch), f"arch={arch}", *FAST, f"budget.flops={BUDGET}")
            for arch in ("encdec", "rnn_attn")}


def test_two_archs_stop_at_the_same_flops_within_one_step(budgeted):
    steps = set()
    for arch, r in budgeted.items():
        train, budget = r["train"], r["budget"]
        assert budget["kind"] == "flops" and budget["value"] == BUDGET
        assert budget["stopped_at_step"] == train["steps"] == budget["max_steps"]  # the plan and the stop agree
        assert train["flops"] == pytest.approx(train["flops_per_token"] * train["tokens"])
        per_step = train["flops"] / train["steps"]
        assert BUDGET <= train["flops"] < BUDGET + 3 * per_step, arch  # a step's tokens vary: 3 × the mean step
        steps.add(train["steps"])
        assert r["history"]["flops"][-1] == [train["steps"], train["flops"]]  # a validation at the stopping step
    assert len(steps) == 2  # different costs per token: different step counts for the same compute


def test_history_keeps_step_wall_tokens_and_flops_at_each_validation(budgeted):
    h = budgeted["encdec"]["history"]
    points = [s for s, _ in h["val/loss"]]
    assert points == [s for s, _ in h["wall_s"]] == [s for s, _ in h["tokens"]] == [s for s, _ in h["flops"]]
    tokens = [t for _, t in h["tokens"]]
    assert tokens == sorted(tokens) and tokens[0] > 0


def test_a_size_target_is_recorded(tmp_path):
    r = run_main(tmp_path, "arch=rnn_attn", *FAST, "size.target_params=3e4", "trainer.max_steps=2")
    match = r["size_match"]
    assert match["params"] == r["params"] and abs(match["rel_error"]) <= 0.05
    assert r["config"]["size"]["target_params"] == 3e4 and r["budget"]["kind"] == "steps"
