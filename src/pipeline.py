"""One run: data → model → train → test → inference speed → attention heatmap → results.json (+ W&B, summary)."""
from __future__ import annotations

import json
import logging
import os
import platform
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from .benchmark import inference_report
from .cluster import cluster_info
from .config import ConfigError, RunConfig
from .data.datamodule import FIELDS, TextDataModule
from .data.tokenizer import train_tokenizer
from .results import SCHEMA_VERSION, git_commit, run_key, write_results

log = logging.getLogger("archbench")


class TrainClock(L.Callback):
    """Wall seconds spent inside training steps (forward, backward, optimizer), for tokens/s."""

    def __init__(self):
        self.seconds = 0.0

    def _sync(self, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, *_):
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, *_):
        self._sync(pl_module)
        self.seconds += time.perf_counter() - self._start


def build_datamodule(cfg: DictConfig, spec: RunConfig) -> TextDataModule:
    task = spec.task.name
    raw = instantiate(cfg.data.tasks[task])()
    texts = (text for field in FIELDS[task] for text in raw["train"][field])
    tokenizer = train_tokenizer(spec.data.tokenizer, texts, spec.data.vocab_size)
    return TextDataModule(task, raw, tokenizer, spec.data.batch_size, spec.data.eval_batch_size,
                          spec.data.max_length, spec.seed)


def build_logger(spec: RunConfig, run_dir: Path, config: dict):
    lg = spec.logger
    if lg.name == "none":
        return False
    if lg.name == "csv":
        return L.pytorch.loggers.CSVLogger(run_dir, name="csv", version="")
    from lightning.pytorch.loggers import WandbLogger

    offline = "WANDB_MODE" not in os.environ and not _wandb_logged_in()
    return WandbLogger(project=lg.project, group=lg.group, job_type=lg.job_type, tags=list(lg.tags),
                       name=run_dir.name, save_dir=str(run_dir), offline=offline, config=config)


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
    run_dir = Path(run_dir)
    results_path = run_dir / spec.results_file
    run_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    import datasets

    datasets.disable_progress_bars()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    L.seed_everything(spec.seed, workers=True, verbose=False)

    dm = build_datamodule(cfg, spec)
    size = {k: v for k, v in OmegaConf.to_container(cfg.size).items() if k != "name"}
    model = instantiate(cfg.arch.models[spec.task.name])(
        vocab_size=dm.vocab_size, n_classes=dm.n_classes, **size, **spec.arch.params
    )
    module = instantiate(cfg.task.module)(model=model, datamodule=dm, optim=spec.optim, decode=spec.decode,
                                          samples=spec.samples)
    config = OmegaConf.to_container(cfg, resolve=True)
    key = run_key(config)
    logger = build_logger(spec, run_dir, {**config, "run_key": key})
    clock = TrainClock()
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True)
    try:
        trainer = L.Trainer(**cfg.trainer, logger=logger, callbacks=[clock, checkpoints], default_root_dir=run_dir)
    except (TypeError, ValueError, MisconfigurationException) as e:  # a bad trainer.* value
        raise ConfigError(f"trainer: {str(e).splitlines()[0]}") from None
    setup_s = time.perf_counter() - started

    t = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    metrics = {k: float(v) for k, v in trainer.test(module, datamodule=dm, verbose=False)[0].items()}
    test_s = time.perf_counter() - t
    device = trainer.strategy.root_device
    module.to(device)  # Lightning hands the module back on the CPU after fit/test; time it where it trained
    t = time.perf_counter()
    inference = inference_report(module, spec.bench)
    bench_s = time.perf_counter() - t

    heatmap = None
    if spec.task.name == "translation" and trainer.is_global_zero:  # issue 10 (DDP): rank 0 writes files
        from .plots import attention_heatmaps
        from .tasks.translation import attention_examples

        examples = attention_examples(module)
        if examples:
            heatmap = attention_heatmaps(examples, run_dir / "attention.png")

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
                  "tokens_per_s": module.train_tokens / clock.seconds if clock.seconds else None},
        "inference": inference,
        "inference_tokens_per_s": inference["decode"]["throughput_tokens_per_s"],
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "wall_seconds": {"setup": setup_s, "fit": fit_s, "test": test_s, "bench": bench_s},
        "samples": module.samples,
        "artifacts": {"attention_heatmap": heatmap.name if heatmap else None},
        "config": config,
    }
    record["cluster"] = cluster_info(cfg, trainer.world_size)  # issue 10: SLURM job, node, requested GPU type
    # issue 10 (DDP): tokens over all ranks; only rank 0 writes results / summary (checkpoints and loggers already are)
    record["train"]["tokens"] = int(trainer.strategy.reduce(torch.tensor(float(module.train_tokens)), reduce_op="sum"))
    record["train"]["tokens_per_s"] = record["train"]["tokens"] / clock.seconds if clock.seconds else None
    if not trainer.is_global_zero:
        return record
    if spec.task.name == "lm":
        from .data.synthetic import lm_perplexity_floor

        if spec.data.name == "synthetic":
            record["perplexity_floor"] = lm_perplexity_floor(**OmegaConf.to_container(cfg.data.tasks.lm))
    record["wall_seconds"]["total"] = time.perf_counter() - started
    write_results(results_path, record)
    _finish_logger(logger, record, heatmap)
    print_summary(record, results_path, logger)
    return record


def _finish_logger(logger, record: dict, heatmap: Path | None) -> None:
    if not logger or logger.__class__.__name__ != "WandbLogger":
        return
    flat = {f"inference/{name}/{k}": v for name, d in record["inference"].items() for k, v in d.items()}
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
    Console().print(table)
    for s in record["samples"][:3]:
        print("  " + json.dumps(s, ensure_ascii=False))
    print(f"results: {results_path}")
    if logger and logger.__class__.__name__ == "WandbLogger":
        run_dir = Path(logger.experiment.dir).parent
        logger.experiment.finish()
        if "offline" in run_dir.name:
            print(f"W&B offline run: wandb sync {run_dir}")
