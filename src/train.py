"""One run, its stages read top to bottom (lightning-hydra-template's `train()`): data → model → trainer → fit
(resuming from the run dir's checkpoint) → model selection (the best checkpoint on validation, src/selection.py) →
test → inference speed → artifacts (per-example predictions) → results.json (+ W&B, summary).
Each stage is a call into the module that owns it; the run directory's status.json says how far it got and how it
ended (src/run_dir.py)."""
from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import sys
import time
import warnings
from pathlib import Path

import datasets
import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from . import loggers
from .budget import make_plan
from .callbacks import (AtomicCheckpointIO, BudgetStop, FinalCheckpoint, GracefulStop, MetricHistory, ResumedHistory,
                        StageMarker, TrainClock)
from .config import RunConfig
from .errors import ConfigError, Diverged, Interrupted
from .record import Configured, Produced, make_record
from .results import write_results
from .run_dir import LAST_CHECKPOINT, RunDir
from .selection import BEST_CALLBACK, load_best, validation_record
from .sizing import build as build_model
from .speed.deploy import run_ct2
from .speed.inference import inference_report
from .speed.runtime import compile_loss, compile_model, set_threads, warn_if_slow_bf16
from .tasks.base import write_predictions
from .tasks.translation import attention_examples, attention_for_sentences, write_hypotheses
from .trained import build_run_datamodule

log = logging.getLogger("archbench")


def train(cfg: DictConfig, spec: RunConfig, run_dir: Path) -> dict:
    started, wall = time.perf_counter(), {}
    run, rd = Configured.of(cfg, spec), RunDir(run_dir)
    _quiet_libraries()
    set_threads(spec.threads)
    L.seed_everything(spec.seed, workers=True, verbose=False)
    resume = check_resume(rd, run.key)
    log.info(f"archbench · arch={spec.arch.name} task={spec.task.name} data={spec.data.name} size={spec.size.name} "
             f"seed={spec.seed} · run dir {rd.path}" + (f" · resuming from {resume}" if resume else ""))

    dm = build_run_datamodule(cfg, spec, rd.path)  # + tokenizer.json, data.json in the run dir (src/trained.py)
    model, module, shape, size_match = build_module(cfg, spec, dm)
    plan = make_plan(spec, dm, shape, OmegaConf.to_container(cfg.trainer, resolve=True))  # budget -> max_steps
    wandb_id = rd.status().get("wandb_id") or f"{run.key}-{secrets.token_hex(3)}"  # one W&B run over all segments
    rd.set_status("running", run_key=run.key, wandb_id=wandb_id, stage="setup")
    logger = loggers.build_logger(spec.logger, rd.path, {**run.config, "run_key": run.key}, wandb_id)
    stop, clock = GracefulStop(rd.checkpoints / LAST_CHECKPOINT), TrainClock()
    history = MetricHistory(plan.flops_per_token)
    own = [stop, clock, history, ResumedHistory(logger), StageMarker(rd),
           FinalCheckpoint(rd.checkpoints / LAST_CHECKPOINT)]
    own += [BudgetStop(plan.tokens)] if plan.tokens is not None else []
    trainer = build_trainer(cfg, rd, logger, own, plan.trainer_overrides())
    warn_if_slow_bf16(trainer.precision, trainer.strategy.root_device)
    wall["setup"] = time.perf_counter() - started
    stop.install()
    try:
        with timed(wall, "fit"):
            trainer.fit(module, datamodule=dm, ckpt_path=resume)
        stop.check()
        mark(rd, trainer, "test")
        with timed(wall, "test"):
            validation = select_model(trainer, module, spec, history)
            metrics = {k: float(v) for k, v in trainer.test(module, datamodule=dm, verbose=False)[0].items()}
        stop.check()
        device = trainer.strategy.root_device
        module.to(device)  # Lightning hands the module back on the CPU after fit/test; time it where it trained
        mark(rd, trainer, "inference")
        with timed(wall, "bench"):
            inference = inference_report(module, spec.bench)
            if spec.bench.ct2:  # the model exported to CTranslate2, timed beside ours (src/speed/deploy.py)
                inference["decode"].update(run_ct2(module, spec.bench, inference["decode"]))
        stop.check()
        mark(rd, trainer, "results")
        heatmap = save_artifacts(module, spec, rd.path) if trainer.is_global_zero else None  # DDP: rank 0 writes
        wall["total"] = time.perf_counter() - started
        record = make_record(run, Produced(model, module, trainer, clock, history, metrics, inference, heatmap,
                                           device, wall, validation=validation, plan=plan, size_match=size_match))
        if not trainer.is_global_zero:  # DDP: only rank 0 writes results and the summary
            return record
        rd.set_status("finished", step=trainer.global_step)  # before results.json: a reader that sees it sees both
        write_results(rd.results, record)
    except BaseException as e:
        record_failure(e, rd, trainer, logger, stop)
        if isinstance(e, SIGTERMException):  # Lightning's, a SystemExit: would exit 0, with no line
            raise Interrupted(stop.signum or 15) from None
        raise
    finally:
        stop.uninstall()
    loggers.publish(logger, record, heatmap)
    loggers.print_summary(record, rd.results)
    loggers.finish(logger)
    return record


@contextlib.contextmanager
def timed(wall: dict, stage: str):
    t = time.perf_counter()
    yield
    wall[stage] = time.perf_counter() - t


def mark(rd: RunDir, trainer, stage: str) -> None:
    if trainer.is_global_zero:
        rd.set_status("running", stage=stage)  # status.json says which stage a running (or killed) run was in


def _quiet_libraries() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    datasets.disable_progress_bars()


def check_resume(rd: RunDir, key: str) -> Path | None:
    """The checkpoint to resume from, if the run dir holds an unfinished run of this same config: the newest
    readable one (an unreadable last.ckpt falls back to prev.ckpt with one line; none readable: exit 2)."""
    if rd.state != "unfinished":
        return None
    other = rd.status().get("run_key")
    if other and other != key:
        raise ConfigError(f"{rd.path} holds an unfinished run of another config (run_key {other}, this one {key}); "
                          "resume it with its own overrides or choose another hydra.run.dir")
    return rd.resume_checkpoint()


def build_module(cfg: DictConfig, spec: RunConfig, dm):
    """(model, task module, the model's shape, "size_match"): at the configured size, or solved for
    size.target_params with the real vocabulary (src/sizing.py)."""
    model, shape, size_match = build_model(cfg, spec, dm.vocab_size, dm.n_classes)
    module = instantiate(cfg.task.module)(model=model, datamodule=dm, optim=spec.optim, decode=spec.decode,
                                          samples=spec.samples)
    if spec.train.compile:
        compile_model(model)
        module.cross_entropy = compile_loss()
    return model, module, shape, size_match


def select_model(trainer, module, spec: RunConfig, history: MetricHistory) -> dict:
    """Model selection (src/selection.py): the best checkpoint's weights loaded for the test stage when there is one
    (select_best), else the model as trained; results.json's "validation" record."""
    metric, mode = spec.task.val_metric, spec.task.val_mode
    selected = load_best(trainer, module, metric, mode) if spec.select_best else None
    if selected is not None:
        log.info(f"testing the best checkpoint by {metric} ({mode}): step {selected['best_step']} of "
                 f"{trainer.global_step}, {metric} {selected['best']:.4g}")
    return validation_record(metric, mode, selected, history.history, trainer.global_step)


def configured_callbacks(cfg: DictConfig, rd: RunDir) -> list[L.Callback]:
    """conf/callbacks/: each node with a `_target_`, instantiated (`callbacks.<name>=null` drops one;
    select_best=false drops `best_checkpoint`). A ModelCheckpoint without a dirpath writes into the run dir's
    checkpoints/."""
    built = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None or (name == BEST_CALLBACK and not cfg.get("select_best", True)):
            continue
        try:
            make = instantiate(node, _partial_=True)
            if isinstance(make.func, type) and issubclass(make.func, ModelCheckpoint):
                kw = make.keywords
                make = functools.partial(make, dirpath=kw.get("dirpath") or rd.checkpoints,
                                         every_n_train_steps=kw.get("every_n_train_steps") or None)
            built.append(make())
        except (InstantiationException, TypeError, ValueError, MisconfigurationException) as e:
            line = (str(e).strip().splitlines() or [type(e).__name__])[0].split(", set env var HYDRA_FULL_ERROR")[0]
            raise ConfigError(f"callbacks.{name}: {line}") from None
    return built


def build_trainer(cfg: DictConfig, rd: RunDir, logger, callbacks: list, overrides: dict | None = None) -> L.Trainer:
    """Lightning Trainer with the run's own callbacks, the configured ones (conf/callbacks/), and progress: rich bar on
    a terminal; every checkpoint save is atomic (AtomicCheckpointIO). `overrides`: trainer arguments the run planned
    (max_steps from a budget, val_check_interval from budget.val_points: src/budget.py)."""
    kwargs = {**OmegaConf.to_container(cfg.trainer, resolve=True), **(overrides or {})}
    kwargs.setdefault("enable_progress_bar", sys.stdout.isatty())
    callbacks = [*callbacks, *configured_callbacks(cfg, rd)]
    if kwargs["enable_progress_bar"]:
        callbacks.append(RichProgressBar())
    plugins = [AtomicCheckpointIO()]  # every save: temp file in checkpoints/, fsync, rename; prev.ckpt kept
    if SLURMEnvironment.detect():  # our GracefulStop checkpoints and requeues; no hpc_ckpt_N files
        plugins.append(SLURMEnvironment(auto_requeue=False))
    try:
        return L.Trainer(**kwargs, logger=logger, callbacks=callbacks, plugins=plugins, default_root_dir=rd.path)
    except (TypeError, ValueError, MisconfigurationException) as e:  # a bad trainer.* value
        raise ConfigError(f"trainer: {str(e).splitlines()[0]}") from None


def record_failure(e: BaseException, rd: RunDir, trainer, logger, stop: GracefulStop) -> None:
    """status.json says how the run ended; the logger is closed with a non-zero exit code (never marked finished)."""
    step = trainer.global_step
    if isinstance(e, SIGTERMException):
        e = Interrupted(stop.signum or 15)
    if isinstance(e, Diverged):
        rd.set_status("diverged", step=e.step, error=str(e))
        code = 1
    elif isinstance(e, (Interrupted, KeyboardInterrupt)):
        rd.set_status("interrupted", step=step, error=f"interrupted by {e}")
        code = getattr(e, "exit_code", 130)
    else:
        rd.set_status("failed", step=step, error=(str(e).splitlines() or [type(e).__name__])[0])
        code = 1
    loggers.close_failed(logger, code)
    if isinstance(e, Interrupted):
        stop.hand_over()


def save_artifacts(module, spec: RunConfig, run_dir: Path) -> Path | None:
    """Per-example test predictions: classification and LM predictions.jsonl; translation hypotheses.jsonl,
    attention.png (and attention_sentences.png). Returns the heatmap's path."""
    if spec.task.name != "translation":
        write_predictions(module, run_dir / "predictions.jsonl")
        return None
    from .plots import attention_heatmaps  # deferred: matplotlib, which only translation runs draw with

    write_hypotheses(module, run_dir / "hypotheses.jsonl")
    if spec.attention.sentences:  # exactly the sentences asked for, recorded under artifacts
        drawn = attention_for_sentences(module, spec.attention.sentences, run_dir / "attention_sentences.png")
        module.attention_record = {"attention_sentences": {"file": "attention_sentences.png" if drawn else None,
                                                           "sentences": drawn}}
    examples = attention_examples(module, spec.attention.examples) if spec.attention.examples else []
    return attention_heatmaps(examples, run_dir / "attention.png") if examples else None
