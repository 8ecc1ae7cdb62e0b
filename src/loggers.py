"""The run's experiment loggers, from `logger=wandb|csv|none` (conf/logger/): build, close on failure, publish the
finished record, and the summary table printed at the end of a run.

- W&B is online when `wandb.login(prompt=False, verify=False)` finds credentials (WANDB_API_KEY or `wandb login`),
  offline otherwise (then `wandb sync <dir>` is printed); WANDB_MODE, when set, decides. One W&B run id spans all
  segments of a resumed run. Every Hydra multirun member is in the W&B group of its sweep (`sweep_group`: the sweep
  dir's name and a hash of its path) unless `logger.group` is set, so the dashboard can average seeds; the step
  (`trainer/global_step`) and the best value of the task's validation metric (`task.val_metric`, summary
  max/min per `task.val_mode`; val/loss min without one) are declared with `define_metric`.
- CSV: `<run_dir>/csv/metrics.csv`; a resumed run appends to its earlier segments' rows (`AppendingCSVLogger`).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from rich.console import Console
from rich.table import Table

from .atomic import write_atomic

log = logging.getLogger("archbench")


def wandb_logged_in() -> bool:
    """Whether W&B credentials are configured, by wandb's own check (no prompt, no network, its lines hidden)."""
    import wandb  # deferred: ~1.5 s to import, needed only by W&B runs and the report's --wandb

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return bool(wandb.login(prompt=False, verify=False))
        finally:
            wandb.teardown()  # login() leaves a session behind in which an offline init then asks for a key


STEP_METRIC = "trainer/global_step"  # Lightning's WandbLogger logs the step under this key


def sweep_group(sweep_dir: Path) -> str:
    """The W&B group of a sweep's members: the sweep dir's last two names (multirun/<date>/<time> ->
    "<date>_<time>") and the first 6 hex digits of the SHA-1 of its absolute path, so two sweeps started in the
    same second elsewhere stay apart, and a re-run (resumed) sweep keeps its group."""
    path = Path(sweep_dir).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:6]
    return f"{path.parent.name}_{path.name}-{digest}" if path.parent.name else f"{path.name}-{digest}"


def multirun_sweep_dir() -> Path | None:
    """The sweep dir of the Hydra multirun this process runs a member of (`hydra.runtime.output_dir` less
    `hydra.sweep.subdir`), or None outside a multirun (a single run, no Hydra)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    out = Path(hc.runtime.output_dir).resolve()
    depth = len(Path(str(hc.sweep.subdir)).parts)
    return out.parents[depth - 1] if 0 < depth <= len(out.parents) else Path(str(hc.sweep.dir)).resolve()


def val_metric_of(config: dict) -> tuple[str, str]:
    """(the task's validation metric, "max" | "min"): task.val_metric / task.val_mode; without a mode, "min" for a
    loss or perplexity, else "max"; without a metric, ("val/loss", "min")."""
    task = config.get("task") or {}
    metric = task.get("val_metric") or "val/loss"
    mode = task.get("val_mode") or ("min" if any(w in metric for w in ("loss", "perplexity")) else "max")
    return metric, mode


class ArchbenchWandbLogger(WandbLogger):
    """Lightning's WandbLogger, declaring (define_metric) the step axis and the best validation metric on the run
    it creates: summary[<val metric>] holds the best value ("max" or "min") beside the last ("last")."""

    def __init__(self, *args, val_metric: tuple[str, str] = ("val/loss", "min"), **kwargs):
        super().__init__(*args, **kwargs)
        self._val_metric = val_metric

    @property
    def experiment(self):
        fresh = self._experiment is None
        run = super().experiment
        if fresh and callable(getattr(run, "define_metric", None)):
            name, mode = self._val_metric
            run.define_metric(STEP_METRIC)
            run.define_metric(name, step_metric=STEP_METRIC, step_sync=True, summary=f"{mode},last")
        return run


def build_logger(lg, run_dir: Path, config: dict, wandb_id: str):
    """The Lightning logger of `lg` (a LoggerConfig), or False (logger=none). W&B: a multirun member's group is
    its sweep's (sweep_group) unless `lg.group` is set."""
    if lg.name == "none":
        return False
    if lg.name == "csv":
        return AppendingCSVLogger(run_dir, name="csv", version="")
    os.environ.setdefault("WANDB_SILENT", "true")  # our own lines say where the run is and how to sync it
    offline = "WANDB_MODE" not in os.environ and not wandb_logged_in()
    sweep_dir = None if lg.group else multirun_sweep_dir()
    group = lg.group or (sweep_group(sweep_dir) if sweep_dir else None)
    if group != lg.group:  # the W&B config says which group the run is in
        config = {**config, "logger": {**(config.get("logger") or {}), "group": group}}
    return ArchbenchWandbLogger(project=lg.project, group=group, job_type=lg.job_type, tags=list(lg.tags),
                                name=run_dir.name, save_dir=str(run_dir), offline=offline, config=config,
                                id=wandb_id, resume="allow", val_metric=val_metric_of(config))


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self):
        if os.path.isfile(self.metrics_file_path):  # keep its rows and its header's columns
            with open(self.metrics_file_path) as f:
                self.metrics_keys = f.readline().strip().split(",")


class AppendingCSVLogger(CSVLogger):
    """Lightning's CSVLogger deletes an existing metrics.csv; a resumed run appends to its earlier segments' rows."""

    @property
    def experiment(self):
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def drop_rows_from(self, step: int) -> None:
        """Resuming from a checkpoint at `step`: forget the earlier segments' rows at or past it (logged again)."""
        path = Path(self.log_dir) / "metrics.csv"
        if not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], list(reader)
        kept = [r for r in rows if r.get("step") not in (None, "") and int(float(r["step"])) < step]
        if len(kept) == len(rows):
            return

        def write(f):
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)

        write_atomic(path, write)
        log.info(f"resumed at step {step}: dropped {len(rows) - len(kept)} row(s) past it from {path.name}")


def close_failed(logger, exit_code: int) -> None:
    """A run that did not finish: W&B closed with a non-zero exit code (never marked finished); CSV: the rows of this
    segment saved (a resumed segment appends to them)."""
    if isinstance(logger, WandbLogger):
        if logger._experiment is not None:  # Lightning's own attribute: a W&B run was started
            logger.experiment.finish(exit_code=exit_code)
    elif logger:
        logger.save()


def publish(logger, record: dict, heatmap: Path | None) -> None:
    """W&B: the finished record's metrics and inference figures in the run summary, the heatmap and the samples."""
    if not isinstance(logger, WandbLogger):
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


def finish(logger) -> None:
    """Close a W&B run; offline: the line that syncs it."""
    if isinstance(logger, WandbLogger):
        run_dir = Path(logger.experiment.dir).parent
        logger.experiment.finish()
        if "offline" in run_dir.name:
            log.info(f"W&B offline run: wandb sync {run_dir}")


def summary_table(record: dict) -> Table:
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
    return table


def print_summary(record: dict, results_path: Path) -> None:
    """The summary table on the terminal and in run.log, the first samples, where the results are."""
    console = Console(record=True)
    console.print(summary_table(record))
    _to_run_log(console.export_text())
    for s in record["samples"][:3]:
        log.info("  " + json.dumps(s, ensure_ascii=False))
    log.info(f"results: {results_path}")


def _to_run_log(text: str) -> None:
    """Text already shown on the terminal (the rich table), written to run.log as well."""
    record = logging.makeLogRecord({"name": log.name, "msg": text, "levelno": logging.INFO, "levelname": "INFO"})
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
