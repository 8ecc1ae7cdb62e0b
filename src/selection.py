"""Model selection: the test stage tests the checkpoint best on the validation metric, not the last one.

`task.val_metric` / `task.val_mode` (conf/task/: translation val/bleu max, classification val/accuracy max, LM val/loss
min) is the task's headline on validation data, the same quantity for every arch (never NAR's val/loss, which adds
a length loss). `callbacks.best_checkpoint` (a Lightning ModelCheckpoint, save_top_k=1, monitor=${task.val_metric})
keeps checkpoints/best.ckpt at the best validation so far, written through the run's AtomicCheckpointIO; its state
(best score, path) is in every last.ckpt, so a resumed run keeps comparing against the same best. With
`select_best=true` (default) the test stage loads best.ckpt's weights before testing (Lightning's
trainer.test(ckpt_path=…) would also restore the callbacks' and the module's states from it: the history, the
train clock and the token count would go back to the best step); without a best checkpoint (no validation ran,
fast_dev_run, select_best=false) the model as trained (the last step) is tested.

results.json "validation": {"metric", "mode", "best", "best_step", "checkpoint": "best"|"last", "tested_step"}.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

BEST_CALLBACK = "best_checkpoint"  # conf/callbacks/default.yaml: the node select_best=false leaves out


def best_callback(trainer, metric: str) -> ModelCheckpoint | None:
    """The trainer's ModelCheckpoint that keeps the best checkpoint by `metric`, if any."""
    return next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor == metric
                 and c.save_top_k != 0), None)


def load_best(trainer, module, metric: str, mode: str) -> dict | None:
    """Load the best checkpoint's weights into `module` (every rank: the file is written before fit returns).
    Returns {"best", "best_step", "path"} read from the file itself (its step and the score it was saved for), or
    None when there is no best checkpoint to test."""
    callback = best_callback(trainer, metric)
    path = Path(callback.best_model_path) if callback is not None and callback.best_model_path else None
    if path is None or not path.is_file():
        return None
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    module.load_state_dict(checkpoint["state_dict"])
    state = (checkpoint.get("callbacks") or {}).get(callback.state_key, {})  # as saved with these weights
    score = state.get("best_model_score", callback.best_model_score)
    return {"best": _number(score), "best_step": int(checkpoint["global_step"]), "path": path}


def best_in_history(history: dict, metric: str, mode: str) -> tuple[float | None, int | None]:
    """(best value, its first step) of `metric` in results.json's history, as ModelCheckpoint picks it (a later
    equal value does not replace it); (None, None) if it was never logged."""
    points = [(step, value) for step, value in history.get(metric) or [] if math.isfinite(value)]
    if not points:
        return None, None
    best_step, best = points[0]
    for step, value in points[1:]:
        if (value > best) if mode == "max" else (value < best):
            best_step, best = step, value
    return best, int(best_step)


def validation_record(metric: str, mode: str, selected: dict | None, history: dict, last_step: int) -> dict:
    """results.json "validation": the metric, its best value and step, and which checkpoint was tested."""
    if selected is not None:
        return {"metric": metric, "mode": mode, "best": selected["best"], "best_step": selected["best_step"],
                "checkpoint": "best", "tested_step": selected["best_step"]}
    best, step = best_in_history(history, metric, mode)
    return {"metric": metric, "mode": mode, "best": best, "best_step": step, "checkpoint": "last",
            "tested_step": last_step}


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value.item() if hasattr(value, "item") else value)
    return value if math.isfinite(value) else None
