"""A run's results record (results.json, schema `results.SCHEMA_VERSION`): what it was (`Configured`), what its
stages produced (`Produced`), and `make_record`, which joins the two. The fields are documented in the README's
Outputs section; the report reads them back (src/report/)."""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .cluster import cluster_info
from .config import RunConfig
from .data.synthetic import lm_perplexity_floor
from .results import SCHEMA_VERSION, git_commit, run_key


@dataclass(frozen=True)
class Configured:
    """One run's config, in the forms its stages need: composed (`cfg`: instantiate, the config groups), typed
    (`spec`: checked values) and resolved (`config`: recorded in results.json, hashed into `key`)."""
    cfg: DictConfig
    spec: RunConfig
    config: dict
    key: str

    @classmethod
    def of(cls, cfg: DictConfig, spec: RunConfig) -> "Configured":
        config = OmegaConf.to_container(cfg, resolve=True)
        return cls(cfg, spec, config, run_key(config))


@dataclass
class Produced:
    """What the stages of a run produced."""
    model: torch.nn.Module       # the nn.Module (parameter count)
    module: object               # the task's LightningModule (tokens, samples, data identity, metric signature)
    trainer: object              # the Lightning Trainer after fit and test
    clock: object                # TrainClock: step seconds, segments
    history: object              # MetricHistory
    metrics: dict                # test metrics
    inference: dict              # src/speed/inference.py's report
    heatmap: Path | None         # attention.png, when drawn
    device: torch.device         # where it trained and was timed
    wall: dict                   # wall seconds per stage: setup, fit, test, bench, total
    validation: dict = field(default_factory=dict)  # model selection (src/selection.py): which checkpoint was tested
    plan: object = None          # src/budget.py's Plan: what bounded training, FLOPs per token
    size_match: dict | None = None  # src/sizing.py: the solved size under size.target_params


def decode_summary(spec: RunConfig) -> dict:
    d = spec.decode
    return {"method": d.method, **({"passes": d.passes, "length_beam": d.length_beam, "dedup": d.dedup}
                                   if spec.arch.family == "nar" else {}),
            **({"beam_size": d.beam_size, "length_penalty": d.length_penalty} if d.method == "beam" else {})}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def train_summary(out: Produced) -> dict:
    """Steps, tokens over all ranks (DDP: a collective, so every rank calls it), step seconds, tokens/s, segments;
    training FLOPs per trained token (3 × forward, src/speed/flops.py) and in all (× tokens)."""
    trainer, seconds = out.trainer, out.clock.seconds
    tokens = int(trainer.strategy.reduce(torch.tensor(float(out.module.train_tokens)), reduce_op="sum"))
    fpt = out.plan.flops_per_token if out.plan is not None else None
    return {"steps": trainer.global_step, "tokens": tokens, "step_seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds else None, "segments": out.clock.segments,
            "flops_per_token": fpt, "flops": fpt * tokens if fpt is not None else None}


def make_record(run: Configured, out: Produced) -> dict:
    spec, module = run.spec, out.module
    record = {
        "schema": SCHEMA_VERSION,
        "run_key": run.key,
        "arch": spec.arch.name, "task": spec.task.name, "data": spec.data.name, "size": spec.size.name,
        "seed": spec.seed,
        "decode": decode_summary(spec),
        "headline_metric": spec.task.metric,
        "metrics": out.metrics,
        "validation": out.validation,  # {"metric", "mode", "best", "best_step", "checkpoint", "tested_step"}
        "params": sum(p.numel() for p in out.model.parameters()),
        "train": (train := train_summary(out)),
        **({"budget": out.plan.record(train["steps"], train["tokens"])} if out.plan is not None else {}),
        **({"size_match": out.size_match} if out.size_match is not None else {}),
        "history": out.history.history,
        "inference": out.inference,
        "inference_tokens_per_s": out.inference["decode"]["throughput_tokens_per_s"],
        "device": device_name(out.device),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "wall_seconds": out.wall,
        "samples": module.samples,
        "data_identity": module.dm.identity,
        "artifacts": {"attention_heatmap": out.heatmap.name if out.heatmap else None,
                      **getattr(module, "attention_record", {})},  # attention.sentences: what was drawn
        **({"metrics_signature": module.metrics_signature} if hasattr(module, "metrics_signature") else {}),
        "config": run.config,
        "cluster": cluster_info(run.cfg, out.trainer.world_size),  # SLURM job, node, requested GPU type
    }
    if spec.task.name == "classification":  # predictions.jsonl's class indices, named
        record["labels"] = module.dm.label_names
    if spec.task.name == "lm" and spec.data.name == "synthetic":
        record["perplexity_floor"] = lm_perplexity_floor(**OmegaConf.to_container(run.cfg.data.tasks.lm))
    return record
