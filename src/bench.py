"""Entry point of the speed benchmark: `python -m src.bench [overrides]` (Hydra, conf/bench.yaml; `--multirun`
works). Composes arch / size / decode / trainer into a spec for `src.bench_core.benchmark` (plain Python, also
usable without Hydra), writes bench.json + bench.md into the run directory, logs to W&B (offline by default) and
prints the markdown table with the ours / HF ratios. A bad value (config.validate_bench) is one `error:` line on
stderr and exit 2, before Hydra writes anything (BenchGuard).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .allocator import use_tcmalloc
from .config import ConfigError, validate_bench
from .run_dir import refuse, task_config

TASK_PREFERENCE = ("lm", "translation", "classification")  # the workload a given arch is timed on
_task_started = False  # Hydra exits 1 on a bad override before the task starts: that is bad input too (2)


def spec_of(cfg: DictConfig) -> dict:
    """The plain-Python spec of `bench_core.benchmark`; raises ConfigError (one line) on a bad value."""
    b, size, _ = validate_bench(cfg)
    task = next(t for t in TASK_PREFERENCE if t in cfg.arch.models)
    decode = OmegaConf.to_container(cfg.decode)
    return dict(arch=cfg.arch.name, model=cfg.arch.models[task]._target_,
                arch_params=OmegaConf.to_container(cfg.arch.params), vocab=b.vocab, d_model=size.d_model,
                n_heads=size.n_heads, n_layers=size.n_layers, d_ff=size.d_ff, dropout=b.dropout,
                src_len=b.src_len, new_tokens=b.new_tokens, methods=list(b.methods), batch_sizes=list(b.batch_sizes),
                beam_batch_sizes=list(b.beam_batch_sizes) if b.beam_batch_sizes else None,
                modes=list(b.modes), beam_size=decode.get("beam_size", 4), passes=decode.get("passes", 4),
                decode={k: v for k, v in decode.items() if k not in ("method", "beam_size", "passes")},
                train=b.train, train_batch=b.train_batch, warmup=b.warmup, repeats=b.repeats, device=b.device,
                precision=str(cfg.trainer.get("precision", "32-true")), compile=b.compile, peers=b.peers, seed=b.seed)


def _wandb(result: dict, run_dir: Path, mode: str) -> None:
    if mode == "disabled":
        return
    import wandb

    run = wandb.init(project="archbench", job_type="bench", dir=str(run_dir), name=run_dir.name,
                     mode=os.environ.get("WANDB_MODE", mode), config=result["spec"])
    rows = result["inference"]
    cols = ["method", "batch_size", "mode", "ours_tokens_per_s", "hf_tokens_per_s", "ratio"]
    run.log({"inference": wandb.Table(columns=cols, data=[
        [r["method"], r["batch_size"], r["mode"], r["ours"]["tokens_per_s"], (r.get("hf") or {}).get("tokens_per_s"),
         r.get("ratio")] for r in rows])})
    if result["train"]:
        run.summary.update({"train/tokens_per_s": result["train"]["ours"]["tokens_per_s"],
                            "train/mfu": result["train"]["ours"]["mfu"]})
    run.finish()


class BenchGuard(Callback):
    """Validate the bench config before Hydra creates the run directory (single runs): a refused bench writes nothing."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        try:
            validate_bench(task_config(config))
        except ConfigError as e:
            refuse(str(e))


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parent.parent / "conf"), config_name="bench")
def main(cfg: DictConfig) -> None:
    global _task_started
    _task_started = True
    try:
        spec = spec_of(cfg)  # multirun members (BenchGuard checks single runs earlier)
    except ConfigError as e:
        refuse(str(e))
    import torch

    from .bench_core import benchmark, markdown

    if cfg.bench.threads:
        torch.set_num_threads(cfg.bench.threads)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    result = benchmark(spec)
    (run_dir / "bench.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (run_dir / "bench.md").write_text(table)
    _wandb(result, run_dir, cfg.bench.wandb)
    print(table)
    print(f"results: {run_dir / 'bench.json'}")


if __name__ == "__main__":
    use_tcmalloc()  # ARCHBENCH_MALLOC=tcmalloc: re-executes on tcmalloc (src/allocator.py)
    try:
        main()
    except SystemExit as e:
        if e.code == 1 and not _task_started:
            sys.exit(2)
        raise
