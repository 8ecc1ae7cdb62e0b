"""A run's training length: `trainer.max_steps` (the default), or a compute budget, `budget.tokens=3e6` trained
tokens or `budget.flops=2e13` training FLOPs, so archs are compared at equal compute on any device (the
compute-matched comparisons of Kaplan et al. 2020 and Hoffmann et al. 2022).

FLOPs are the analytic training FLOPs of src/speed/flops.py (3 × forward, per trained token, averaged over the
training split at each example's own length): a FLOPs budget is a token budget of flops / flops_per_token, so a
costlier arch trains on fewer tokens.

The design keeps the cosine schedule meaningful: the training batches are a pure function of (data seed, epoch)
(BucketBatchSampler), so the plan replays the sampler's batch order and finds the exact step at which the trained
tokens reach the budget; that step becomes `trainer.max_steps`, so warm-up and cosine decay span exactly the run.
BudgetStop (src/callbacks.py) stops at the first step whose tokens reach the budget, a guard that agrees with the
plan on one process (under DDP it stops on the tokens summed over the ranks, before the planned max_steps).

Validation points: with `trainer.val_check_interval=null` (the default) a run validates every
max_steps // budget.val_points steps (8 points a run), plus once at the step a budget stops it (Lightning validates
on a requested stop), so the history has the validation metric against steps, wall time, tokens and FLOPs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .speed.flops import example_shapes, flops_per_token


@dataclass(frozen=True)
class Plan:
    kind: str                    # steps | tokens | flops
    value: float                 # max_steps, or the budget in tokens / FLOPs
    max_steps: int               # trainer.max_steps of the run
    tokens: float | None         # the token budget BudgetStop stops at (None: steps)
    flops_per_token: float       # training FLOPs per trained token
    val_check_interval: int | None  # set when the config leaves it null

    def trainer_overrides(self) -> dict:
        out = {"max_steps": self.max_steps}
        if self.val_check_interval is not None:
            out["val_check_interval"] = self.val_check_interval
        return out

    def record(self, steps: int, tokens: int) -> dict:
        """results.json's "budget": what bounded the run and where it stopped."""
        return {"kind": self.kind, "value": self.value, "stopped_at_step": steps, "max_steps": self.max_steps,
                "tokens": tokens, "flops": self.flops_per_token * tokens}


def train_lengths(dm) -> dict:
    """Token counts of each training example, per field (translation src / tgt, else text)."""
    ds = dm.splits["train"].with_format(None)
    fields = ("src", "tgt") if dm.task == "translation" else ("text",)
    return {f: np.array([len(x) for x in ds[f"{f}_ids"]], dtype=np.int64) for f in fields}


def steps_for_tokens(dm, row_tokens: np.ndarray, budget: float) -> int:
    """The first training step (1-based) whose cumulative trained tokens reach `budget`, replaying the training
    loader's BucketBatchSampler: whole epochs (each covers every example once) are skipped arithmetically, the last
    one is replayed batch by batch."""
    from .data.datamodule import BucketBatchSampler

    ds = dm.splits["train"].with_format(None)
    key = "src_ids" if dm.task == "translation" else "text_ids"
    sampler = BucketBatchSampler([len(x) for x in ds[key]], dm.batch_size, True, dm.seed)
    per_epoch = float(row_tokens.sum())
    if per_epoch <= 0:
        raise ValueError("the training split has no tokens")
    epochs = max(0, int(np.ceil(budget / per_epoch)) - 1)
    sampler.epoch = epochs  # the epoch the budget is reached in: Random(seed + epoch), as the loader draws it
    done = epochs * per_epoch
    for i, batch in enumerate(sampler._batches()):
        done += float(row_tokens[batch].sum())
        if done >= budget:
            return epochs * len(sampler) + i + 1
    return (epochs + 1) * len(sampler)  # rounding at the epoch's edge: its last step


def make_plan(spec, dm, shape: dict, trainer_cfg: dict) -> Plan:
    """The run's Plan from its budget config, its model shape (the solved one under size.target_params) and its
    data. trainer_cfg: the composed trainer node (max_steps, val_check_interval, check_val_every_n_epoch)."""
    arch, task, b = spec.arch.name, spec.task.name, spec.budget
    lengths = train_lengths(dm)
    fpt = flops_per_token(arch, task, shape, spec.arch.params, dm.vocab_size, dm.n_classes, lengths)
    if b.tokens is None and b.flops is None:
        max_steps = trainer_cfg.get("max_steps", -1)
        kind, value, tokens = "steps", max_steps, None
    else:
        kind, value = ("tokens", b.tokens) if b.tokens is not None else ("flops", b.flops)
        tokens = value if kind == "tokens" else value / fpt
        max_steps = steps_for_tokens(dm, example_shapes(arch, task, lengths)[2], tokens)
    interval = None
    if trainer_cfg.get("val_check_interval") is None and trainer_cfg.get("check_val_every_n_epoch") is None \
            and max_steps and max_steps > 0:
        interval = max(1, max_steps // b.val_points)
    return Plan(kind, float(value), int(max_steps), tokens, fpt, interval)
