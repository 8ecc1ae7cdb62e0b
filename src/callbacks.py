"""Lightning callbacks of a run: train clock, metric history, progress lines, divergence guard, stop on a signal,
the stage in status.json; and the checkpoint writer every save goes through (atomic, in the run dir).

Each one whose numbers must survive a restart keeps them in the checkpoint (`state_dict`), so a resumed run's
train tokens, step seconds, history and segment count add up over all segments.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .errors import Diverged, Interrupted
from .run_dir import RunDir, save_checkpoint

log = logging.getLogger("archbench")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class TrainClock(L.Callback):
    """Wall seconds inside training steps (forward, backward, optimizer) for tokens/s, and the number of segments
    (1 + the number of resumes)."""

    def __init__(self):
        self.seconds, self.segments = 0.0, 0

    def _sync(self, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_fit_start(self, trainer, pl_module):
        self.segments += 1

    def on_train_batch_start(self, trainer, pl_module, *_):
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, *_):
        self._sync(pl_module)
        self.seconds += time.perf_counter() - self._start

    def state_dict(self):
        return {"seconds": self.seconds, "segments": self.segments}

    def load_state_dict(self, state):
        self.seconds, self.segments = state["seconds"], state["segments"]


def trained_tokens(trainer, pl_module) -> int:
    """Tokens trained on so far, summed over the ranks (a collective: every rank calls it)."""
    return int(trainer.strategy.reduce(torch.tensor(float(pl_module.train_tokens)), reduce_op="sum"))


class MetricHistory(L.Callback):
    """(step, value) of train/loss every `trainer.log_every_n_steps`; at each validation, (step, value) of every val/
    metric (val/loss, val/bleu, ...), of the wall seconds since the fit started ("wall_s"), of the tokens trained on
    ("tokens") and of the training FLOPs spent ("flops" = tokens × `flops_per_token`, src/speed/flops.py). Tokens
    come from the task module's count, which the checkpoint keeps: a resumed run's points are an uninterrupted
    run's."""

    def __init__(self, flops_per_token: float = 0.0):
        self.flops_per_token = flops_per_token
        self.history: dict[str, list[list[float]]] = {"train/loss": [], "val/loss": []}
        self._fit_start = time.perf_counter()
        self._wall_before = 0.0  # seconds of the segments before a resume

    def _add(self, name, trainer, value=None):
        value = trainer.callback_metrics.get(name) if value is None else value
        if value is not None:
            self.history.setdefault(name, []).append([trainer.global_step, float(value)])

    def on_fit_start(self, trainer, *_):
        self._fit_start = time.perf_counter()
        self._wall_before = self.history["wall_s"][-1][1] if self.history.get("wall_s") else 0.0

    def on_train_batch_end(self, trainer, *_):
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self._add("train/loss", trainer)

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            for name in sorted(k for k in trainer.callback_metrics if k.startswith("val/")):
                self._add(name, trainer)
            self._add("wall_s", trainer, self._wall_before + time.perf_counter() - self._fit_start)
            if trainer.state.fn == "fit":
                tokens = trained_tokens(trainer, pl_module)
                self._add("tokens", trainer, tokens)
                self._add("flops", trainer, tokens * self.flops_per_token)

    def state_dict(self):
        return {"history": self.history}

    def load_state_dict(self, state):
        self.history = state["history"]


class BudgetStop(L.Callback):
    """Stop training at the first step whose trained tokens (summed over the ranks) reach `tokens`: a token budget,
    or a FLOPs budget divided by the arch's training FLOPs per token (src/budget.py). Lightning then validates once
    more, at the stopping step. `trainer.max_steps` is planned to be that same step (the LR schedule's length)."""

    def __init__(self, tokens: float):
        self.tokens = tokens

    def on_train_batch_end(self, trainer, pl_module, *_):
        if trained_tokens(trainer, pl_module) >= self.tokens:
            trainer.should_stop = True


class ProgressLog(L.Callback):
    """One line every `every_s` seconds (and at each validation): step, %, train/loss and every val/ metric, steps/s,
    ETA. For logs that are not a terminal (SLURM, nohup); it goes through logging, so it is also in run.log."""

    def __init__(self, every_s: float = 15.0):
        self.every_s = every_s

    def on_train_start(self, trainer, pl_module):
        self._t0, self._step0 = time.perf_counter(), trainer.global_step
        self._last = self._t0

    def _line(self, trainer, what="step"):
        now = time.perf_counter()
        step, total = trainer.global_step, trainer.max_steps
        rate = (step - self._step0) / max(now - self._t0, 1e-9)
        eta = (total - step) / rate if rate > 0 and total > 0 else float("nan")
        parts = [f"{what} {step}/{total}" + (f" ({100 * step / total:.0f}%)" if total > 0 else "")]
        metrics = trainer.callback_metrics
        for name in ["train/loss", *sorted(k for k in metrics if k.startswith("val/"))]:  # as MetricHistory keeps
            if name in metrics:
                parts.append(f"{name} {float(metrics[name]):.4f}")
        parts.append(f"{rate:.1f} steps/s" + (f", ETA {eta:.0f} s" if math.isfinite(eta) else ""))
        log.info(" · ".join(parts))
        self._last = now

    def on_train_batch_end(self, trainer, *_):
        if time.perf_counter() - self._last >= self.every_s:
            self._line(trainer)

    def on_validation_end(self, trainer, *_):
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._line(trainer, "validation at step")


class DivergenceGuard(L.Callback):
    """Stop training when the loss is non-finite for more than `patience` consecutive steps (0: at the first)."""

    def __init__(self, patience: int = 0):
        self.patience, self.bad = patience, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, *_):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or torch.isfinite(loss).all():
            self.bad = 0
            return
        self.bad += 1
        if self.bad > self.patience:
            raise Diverged(trainer.global_step, float(loss.detach().float().mean()))


def _validation_follows(trainer) -> bool:
    """Whether Lightning runs a validation right after the current training step."""
    loop = trainer.fit_loop
    try:
        return bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher))
    except (AttributeError, TypeError):  # another Lightning: stop at once (a resumed run may skip one validation)
        return False


class ResumedHistory(L.Callback):
    """A resumed run's logged rows continue its earlier segments' rows exactly as one uninterrupted run's would.

    - On loading the checkpoint (global step G), the CSV rows of earlier segments at step >= G are dropped: the
      resumed segment logs them again (a kill without warning leaves rows written after the last checkpoint).
    - Resuming from a checkpoint taken at the last step (max_steps): Lightning saves its logger step counter
      (`_batches_that_stepped`) before incrementing it and only corrects it when the training loop runs again, which
      it does not when training is already done; the test row would be logged at G-1 instead of G.
    """

    def __init__(self, logger):
        self.logger = logger

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        if trainer.is_global_zero and hasattr(self.logger, "drop_rows_from"):
            self.logger.drop_rows_from(int(checkpoint.get("global_step", 0)))

    def on_fit_end(self, trainer, pl_module):
        loop = trainer.fit_loop.epoch_loop
        if pl_module.automatic_optimization and getattr(loop, "_batches_that_stepped", trainer.global_step) < trainer.global_step:
            loop._batches_that_stepped = trainer.global_step


class GracefulStop(L.Callback):
    """SIGINT, SIGTERM, SIGUSR1, SIGUSR2: finish the current training step, save `checkpoint`, raise Interrupted.

    The handlers are installed for the whole run (`install()`), so a signal during test or benchmark stops the run
    at the next stage (`check()`). A second Ctrl-C interrupts at once. After the checkpoint, a handler that was
    installed before ours (submitit's USR2: requeue) is called; in a plain SLURM batch job USR1/USR2 requeue the
    job (`scontrol requeue`), like Lightning's auto-requeue, which this replaces.
    """

    def __init__(self, checkpoint: Path):
        self.checkpoint, self.signum, self._previous = Path(checkpoint), None, {}
        self._validated_at = None  # the global step of the fit's last validation

    def install(self) -> None:
        for s in STOP_SIGNALS:
            self._previous[s] = signal.getsignal(s)
            signal.signal(s, self._handle)

    def uninstall(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning(f"received {signal.Signals(signum).name}: stopping after the current step")

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    def on_train_batch_end(self, trainer, *_):
        if self.signum is not None and _validation_follows(trainer):
            # stop after the next step: a run resumed from here would skip this validation (Lightning), and
            # Lightning's own SIGTERM stop after it saves a checkpoint whose resumed rows are one step off
            trainer._signal_connector.received_sigterm = False
            return
        self.check()

    def on_validation_end(self, trainer, *_):
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._validated_at = trainer.global_step

    def on_validation_batch_end(self, trainer, *_):
        if self.signum is not None and trainer.state.fn == "fit":
            # finish this validation (Lightning would stop in its middle and lose its row); stop after the next step
            trainer._signal_connector.received_sigterm = False

    def on_exception(self, trainer, pl_module, exception):
        """Inside fit, with the trainer state intact: save the checkpoint that the resumed run starts from. The
        step's train row is logged first (Lightning logs it after on_train_batch_end, where we stopped; the resumed
        run starts at the next step), so the rows of the two segments join without a gap."""
        if isinstance(exception, Interrupted) and trainer.state.fn == "fit":
            if trainer.training and isinstance(trainer._logger_connector._first_loop_iter, bool):
                # inside a train step (its row not logged yet); at an epoch's end Lightning has logged it already
                trainer._logger_connector.update_train_step_metrics()
            trainer.save_checkpoint(self.checkpoint)
        elif isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            # Lightning's own stop, the signal having come after our on_train_batch_end. Between two steps with a
            # validation just run (the signal came after its last batch): the step's logger step is counted, which
            # a restarted loop counts once more, so the checkpoint gets the count from before it. Between two steps
            # with no validation, or inside a validation, the restarted loop counts nothing again: saved as it is
            counted = int(not trainer.validating and self._validated_at == trainer.global_step)
            loop = trainer.fit_loop.epoch_loop
            loop._batches_that_stepped -= counted
            try:
                trainer.save_checkpoint(self.checkpoint)
            finally:
                loop._batches_that_stepped += counted

    def hand_over(self) -> None:
        """After the checkpoint: let a scheduler-side handler requeue the job."""
        if self.signum not in (signal.SIGUSR1, signal.SIGUSR2):  # SIGTERM / Ctrl-C: just stop
            return
        previous = self._previous.get(self.signum)
        if callable(previous):
            previous(self.signum, None)
        elif os.environ.get("SLURM_JOB_ID"):
            job = os.environ["SLURM_JOB_ID"]
            if os.environ.get("SLURM_ARRAY_JOB_ID"):
                job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            log.info(f"requeue of SLURM job {job}: " + ("done" if done.returncode == 0 else done.stderr.strip()))


class FinalCheckpoint(L.Callback):
    """At the end of training, save `checkpoint` (last.ckpt) from the final weights: the periodic save
    (`checkpoint_every_n_steps`) may be steps older, and eval, translate, export and a distillation teacher load the
    run's checkpoint, not the weights the run itself tested with `select_best=false`."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = Path(checkpoint)

    def on_train_end(self, trainer, *_):
        saved = {getattr(c, "_last_global_step_saved", None) for c in trainer.checkpoint_callbacks
                 if getattr(c, "save_last", False)}
        if trainer.global_step not in saved:
            trainer.save_checkpoint(self.checkpoint)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Every checkpoint write (periodic, on a signal, `trainer.save_checkpoint`) through `run_dir.save_checkpoint`:
    a temp file in the checkpoint's own directory, fsynced, renamed; the previous last.ckpt kept as prev.ckpt.
    Lightning's own writes it to $TMPDIR and moves it, a copy when that is another filesystem (a cluster's node-local
    disk), which a kill or a full disk cuts short."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_checkpoint(checkpoint, Path(path))


class StageMarker(L.Callback):
    """status.json's `stage` is "validation" while the fit validates, "train" otherwise (rank 0 writes)."""

    def __init__(self, run_dir: RunDir):
        self.run_dir = run_dir

    def _mark(self, trainer, stage: str) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking and trainer.state.fn == "fit":
            self.run_dir.set_status("running", stage=stage)

    def on_train_start(self, trainer, *_):
        self._mark(trainer, "train")

    def on_validation_start(self, trainer, *_):
        self._mark(trainer, "validation")

    def on_validation_end(self, trainer, *_):
        self._mark(trainer, "train")
