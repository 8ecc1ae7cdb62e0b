"""One run, as a list of stages: data → model → train (resuming from the run dir's checkpoint) → test → inference
speed → attention heatmap → results.json (+ W&B, summary). Each stage is a call into the module that owns it; the
run directory's status.json says how far it got and how it ended (src/run_dir.py)."""
from __future__ import annotations

import json
import logging
import os
import platform
import secrets
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from .callbacks import (AtomicCheckpointIO, DivergenceGuard, Diverged, GracefulStop, Interrupted, MetricHistory,
                        ProgressLog, ResumedHistory, StageMarker, TrainClock)
from .cluster import cluster_info
from .config import ConfigError, RunConfig
from .results import SCHEMA_VERSION, git_commit, run_key, write_results
from .run_dir import LAST_CHECKPOINT, RunDir
from .speed.inference import inference_report
from .speed.runtime import compile_model, set_threads, warn_if_slow_bf16
from .trained import build_run_datamodule

log = logging.getLogger("archbench")


def build_logger(spec: RunConfig, run_dir: Path, config: dict, wandb_id: str):
    lg = spec.logger
    if lg.name == "none":
        return False
    if lg.name == "csv":
        return AppendingCSVLogger(run_dir, name="csv", version="")
    from lightning.pytorch.loggers import WandbLogger

    os.environ.setdefault("WANDB_SILENT", "true")  # our own lines say where the run is and how to sync it
    offline = "WANDB_MODE" not in os.environ and not _wandb_logged_in()
    return WandbLogger(project=lg.project, group=lg.group, job_type=lg.job_type, tags=list(lg.tags),
                       name=run_dir.name, save_dir=str(run_dir), offline=offline, config=config,
                       id=wandb_id, resume="allow")


class AppendingCSVLogger(L.pytorch.loggers.CSVLogger):
    """Lightning's CSVLogger deletes an existing metrics.csv; a resumed run appends to its earlier segments' rows."""

    @property
    def experiment(self):
        if self._experiment is None:
            from lightning.pytorch.loggers.csv_logs import ExperimentWriter

            class Writer(ExperimentWriter):
                def _check_log_dir_exists(self):
                    if os.path.isfile(self.metrics_file_path):  # keep its rows and its header's columns
                        with open(self.metrics_file_path) as f:
                            self.metrics_keys = f.readline().strip().split(",")

            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = Writer(log_dir=self.log_dir)
        return self._experiment

    def drop_rows_from(self, step: int) -> None:
        """Resuming from a checkpoint at `step`: forget the earlier segments' rows at or past it (logged again)."""
        import csv

        path = Path(self.log_dir) / "metrics.csv"
        if not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], list(reader)
        kept = [r for r in rows if r.get("step") not in (None, "") and int(float(r["step"])) < step]
        if len(kept) == len(rows):
            return
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, path)
        log.info(f"resumed at step {step}: dropped {len(rows) - len(kept)} row(s) past it from {path.name}")


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def run(cfg: DictConfig, spec: RunConfig, run_dir: Path) -> dict:
    started = time.perf_counter()
    rd = RunDir(run_dir, spec.results_file)
    _quiet_libraries()
    set_threads(spec.threads)
    L.seed_everything(spec.seed, workers=True, verbose=False)
    config = OmegaConf.to_container(cfg, resolve=True)
    key = run_key(config)
    resume = _check_resume(rd, key)
    log.info(f"archbench · arch={spec.arch.name} task={spec.task.name} data={spec.data.name} size={spec.size.name} "
             f"seed={spec.seed} · run dir {rd.path}" + (f" · resuming from {resume}" if resume else ""))

    dm = build_run_datamodule(cfg, spec, rd.path)  # + tokenizer.json, data.json in the run dir (src/trained.py)
    model, module = build_module(cfg, spec, dm)
    wandb_id = rd.status().get("wandb_id") or f"{key}-{secrets.token_hex(3)}"  # one W&B run over all segments
    rd.set_status("running", run_key=key, wandb_id=wandb_id, stage="setup")
    logger = build_logger(spec, rd.path, {**config, "run_key": key}, wandb_id)
    stop = GracefulStop(rd.checkpoints / LAST_CHECKPOINT)
    clock, history = TrainClock(), MetricHistory()
    trainer = build_trainer(cfg, spec, rd, logger, [stop, clock, history, ResumedHistory(logger), StageMarker(rd)])
    warn_if_slow_bf16(trainer.precision, trainer.strategy.root_device)
    setup_s = time.perf_counter() - started
    stop.install()
    try:
        t = time.perf_counter()
        trainer.fit(module, datamodule=dm, ckpt_path=resume)
        fit_s = time.perf_counter() - t
        stop.check()
        _stage(rd, trainer, "test")
        t = time.perf_counter()
        metrics = {k: float(v) for k, v in trainer.test(module, datamodule=dm, verbose=False)[0].items()}
        test_s = time.perf_counter() - t
        stop.check()
        device = trainer.strategy.root_device
        module.to(device)  # Lightning hands the module back on the CPU after fit/test; time it where it trained
        _stage(rd, trainer, "inference")
        t = time.perf_counter()
        inference = inference_report(module, spec.bench)
        bench_s = time.perf_counter() - t
        stop.check()
        _stage(rd, trainer, "results")
        heatmap = save_heatmap(module, spec, rd.path) if trainer.is_global_zero else None  # DDP: rank 0 writes
        record = make_record(cfg, spec, config, key, module, model, trainer, clock, history, metrics, inference,
                             heatmap, device, {"setup": setup_s, "fit": fit_s, "test": test_s, "bench": bench_s})
        record["wall_seconds"]["total"] = time.perf_counter() - started
        if not trainer.is_global_zero:
            return record
        rd.set_status("finished", step=trainer.global_step)  # before results.json: a reader that sees it sees both
        write_results(rd.results, record)
    except BaseException as e:
        _record_failure(e, rd, trainer, logger, stop)
        if e.__class__.__name__ == "SIGTERMException":  # Lightning's, a SystemExit: would exit 0, with no line
            raise Interrupted(stop.signum or 15) from None
        raise
    finally:
        stop.uninstall()
    _finish_logger(logger, record, heatmap)
    print_summary(record, rd.results, logger)
    return record


def _stage(rd: RunDir, trainer, stage: str) -> None:
    if trainer.is_global_zero:
        rd.set_status("running", stage=stage)  # status.json says which stage a running (or killed) run was in


def _quiet_libraries() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    import datasets

    datasets.disable_progress_bars()


def _check_resume(rd: RunDir, key: str) -> Path | None:
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
    size = {k: v for k, v in OmegaConf.to_container(cfg.size).items() if k != "name"}
    model = instantiate(cfg.arch.models[spec.task.name])(
        vocab_size=dm.vocab_size, n_classes=dm.n_classes, **size, **spec.arch.params
    )
    if spec.train.compile:
        compile_model(model)
    module = instantiate(cfg.task.module)(model=model, datamodule=dm, optim=spec.optim, decode=spec.decode,
                                          samples=spec.samples)
    return model, module


def build_trainer(cfg: DictConfig, spec: RunConfig, rd: RunDir, logger, callbacks: list) -> L.Trainer:
    """Lightning Trainer with the run's callbacks: periodic checkpoints (last.ckpt, the one before kept as prev.ckpt),
    divergence guard, and progress: rich bar on a terminal, one-line progress logs always."""
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    interactive = sys.stdout.isatty()
    kwargs.setdefault("enable_progress_bar", interactive)
    callbacks = [*callbacks, DivergenceGuard(spec.optim.divergence_patience), ProgressLog(spec.progress_every_s),
                 L.pytorch.callbacks.ModelCheckpoint(dirpath=rd.checkpoints, save_top_k=0, save_last=True,
                                                     every_n_train_steps=spec.checkpoint_every_n_steps or None,
                                                     enable_version_counter=False)]
    if kwargs["enable_progress_bar"]:
        callbacks.append(L.pytorch.callbacks.RichProgressBar())
    plugins = [AtomicCheckpointIO()]  # every save: temp file in checkpoints/, fsync, rename; prev.ckpt kept
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if SLURMEnvironment.detect():  # our GracefulStop checkpoints and requeues; no hpc_ckpt_N files
        plugins.append(SLURMEnvironment(auto_requeue=False))
    try:
        return L.Trainer(**kwargs, logger=logger, callbacks=callbacks, plugins=plugins, default_root_dir=rd.path)
    except (TypeError, ValueError, MisconfigurationException) as e:  # a bad trainer.* value
        raise ConfigError(f"trainer: {str(e).splitlines()[0]}") from None


def _record_failure(e: BaseException, rd: RunDir, trainer, logger, stop: GracefulStop) -> None:
    """status.json says how the run ended; W&B is closed with a non-zero exit code (never marked finished)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

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
    if logger and logger.__class__.__name__ == "WandbLogger" and logger._experiment is not None:
        logger.experiment.finish(exit_code=code)
    elif logger:
        logger.save()  # CSV: the rows of this segment; a resumed segment appends to them
    if isinstance(e, Interrupted):
        stop.hand_over()


def save_heatmap(module, spec: RunConfig, run_dir: Path) -> Path | None:
    if spec.task.name != "translation":
        return None
    from .plots import attention_heatmaps
    from .tasks.translation import attention_examples, attention_for_sentences, write_hypotheses

    write_hypotheses(module, run_dir / "hypotheses.jsonl")
    if spec.attention.sentences:  # issue 20: exactly the sentences asked for, recorded under artifacts
        drawn = attention_for_sentences(module, spec.attention.sentences, run_dir / "attention_sentences.png")
        module.attention_record = {"attention_sentences": {"file": "attention_sentences.png" if drawn else None,
                                                           "sentences": drawn}}
    examples = attention_examples(module, spec.attention.examples) if spec.attention.examples else []
    return attention_heatmaps(examples, run_dir / "attention.png") if examples else None


def make_record(cfg, spec, config, key, module, model, trainer, clock, history, metrics, inference, heatmap, device,
                wall) -> dict:
    record = {
        "schema": SCHEMA_VERSION,
        "run_key": key,
        "arch": spec.arch.name, "task": spec.task.name, "data": spec.data.name, "size": spec.size.name,
        "seed": spec.seed,
        "decode": {"method": spec.decode.method, **({"passes": spec.decode.passes} if spec.arch.family == "nar" else {}),
                   **({"beam_size": spec.decode.beam_size, "length_penalty": spec.decode.length_penalty}
                      if spec.decode.method == "beam" else {})},
        "headline_metric": spec.task.metric,
        "metrics": metrics,
        "params": sum(p.numel() for p in model.parameters()),
        "train": {"steps": trainer.global_step, "tokens": module.train_tokens, "step_seconds": clock.seconds,
                  "tokens_per_s": module.train_tokens / clock.seconds if clock.seconds else None,
                  "segments": clock.segments},
        "history": history.history,
        "inference": inference,
        "inference_tokens_per_s": inference["decode"]["throughput_tokens_per_s"],
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "wall_seconds": wall,
        "samples": module.samples,
        "data_identity": module.dm.identity,
        "artifacts": {"attention_heatmap": heatmap.name if heatmap else None,
                      **getattr(module, "attention_record", {})},  # attention.sentences: what was drawn
        **({"metrics_signature": module.metrics_signature} if hasattr(module, "metrics_signature") else {}),
        "config": config,
    }
    record["cluster"] = cluster_info(cfg, trainer.world_size)  # issue 10: SLURM job, node, requested GPU type
    # issue 10 (DDP): tokens over all ranks; only rank 0 writes results / summary (checkpoints and loggers already are)
    record["train"]["tokens"] = int(trainer.strategy.reduce(torch.tensor(float(module.train_tokens)), reduce_op="sum"))
    record["train"]["tokens_per_s"] = record["train"]["tokens"] / clock.seconds if clock.seconds else None
    if not trainer.is_global_zero:
        return record
    if spec.task.name == "lm" and spec.data.name == "synthetic":
        from .data.synthetic import lm_perplexity_floor

        record["perplexity_floor"] = lm_perplexity_floor(**OmegaConf.to_container(cfg.data.tasks.lm))
    return record


def _finish_logger(logger, record: dict, heatmap: Path | None) -> None:
    if not logger or logger.__class__.__name__ != "WandbLogger":
        return
    flat = {f"inference/{name}/{k}": v for name, d in record["inference"].items() for k, v in d.items()
            if isinstance(v, (int, float))}
    logger.experiment.summary.update({**record["metrics"], **flat, "params": record["params"],
                                      "train/tokens_per_s": record["train"]["tokens_per_s"],
                                      "run_key": record["run_key"]})
    logger.log_metrics(flat, step=record["train"]["steps"])
    if heatmap:
        logger.log_image(key="attention", images=[str(heatmap)], step=record["train"]["steps"])
    if record["samples"]:
        cols = list(record["samples"][0])
        logger.log_text(key="samples", columns=cols, data=[[str(s[c]) for c in cols] for s in record["samples"]])


def print_summary(record: dict, results_path: Path, logger) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"archbench · arch={record['arch']} task={record['task']} size={record['size']} "
                        f"seed={record['seed']} · {record['device']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in record["metrics"].items():
        table.add_row(k, f"{v:.4g}")
    if "perplexity_floor" in record:
        table.add_row("perplexity floor (data)", f"{record['perplexity_floor']:.4g}")
    table.add_row("parameters", f"{record['params']:,}")
    table.add_row("train tokens/s", f"{record['train']['tokens_per_s'] or 0:,.0f}")
    for name, d in record["inference"].items():
        table.add_row(f"{name}: latency ms/sentence (batch 1)", f"{d['latency_ms_batch1']:.2f}")
        table.add_row(f"{name}: tokens/s (batch {d['throughput_batch']})", f"{d['throughput_tokens_per_s']:,.0f}")
    table.add_row("wall seconds (total)", f"{record['wall_seconds']['total']:.1f}")
    console = Console(record=True)
    console.print(table)
    _to_run_log(console.export_text())
    for s in record["samples"][:3]:
        log.info("  " + json.dumps(s, ensure_ascii=False))
    log.info(f"results: {results_path}")
    if logger and logger.__class__.__name__ == "WandbLogger":
        run_dir = Path(logger.experiment.dir).parent
        logger.experiment.finish()
        if "offline" in run_dir.name:
            log.info(f"W&B offline run: wandb sync {run_dir}")


def _to_run_log(text: str) -> None:
    """Text already shown on the terminal (the rich table), written to run.log as well."""
    record = logging.makeLogRecord({"name": log.name, "msg": text, "levelno": logging.INFO, "levelname": "INFO"})
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
