"""The value a Hydra sweeper optimises: the run's best *validation* metric, never a test one.

Tuning on test numbers and then reporting them is selection on the test set; a tuned study picks each arch's
settings on validation data only (issue 17). The validation metric is the task's headline on validation data:
translation `val/bleu` (max), classification `val/accuracy` (max), LM `val/loss` (min) — `task.val_metric` /
`task.val_mode` where the config sets them, else these defaults. The value is results.json's
`validation.best` when the run recorded one (test-on-best-checkpoint runs), else the best point of that metric in
the run's `history` (lists of [step, value] at each validation). Nothing heavy is imported here.
"""
from __future__ import annotations

import math

VAL_DEFAULTS = {"translation": ("val/bleu", "max"), "classification": ("val/accuracy", "max"), "lm": ("val/loss", "min")}
MODES = {"max": "maximize", "min": "minimize"}  # task.val_mode -> optuna's study direction


def val_metric(cfg) -> tuple[str, str]:
    """(metric, mode) the config validates on: task.val_metric / task.val_mode, else the task's default."""
    from omegaconf import OmegaConf

    task = OmegaConf.select(cfg, "task.name")
    metric, mode = VAL_DEFAULTS.get(task, ("val/loss", "min"))
    metric = OmegaConf.select(cfg, "task.val_metric", default=None) or metric
    mode = OmegaConf.select(cfg, "task.val_mode", default=None) or ("min" if metric.endswith("loss") else mode)
    return metric, mode


def best_of(points, mode: str) -> float | None:
    """The best finite value of [[step, value], ...] (max or min); None when there is none."""
    values = [float(v) for _, v in points or [] if v is not None and math.isfinite(float(v))]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def objective(record: dict, cfg) -> float | None:
    """The run's best validation value: record["validation"]["best"] if recorded, else the best of its history."""
    validation = record.get("validation")
    if isinstance(validation, dict) and "best" in validation:
        return validation["best"]
    metric, mode = val_metric(cfg)
    return best_of((record.get("history") or {}).get(metric), mode)
