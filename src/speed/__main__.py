"""Entry point of the speed benchmark: `python -m src.speed [overrides]` (Hydra, conf/speed.yaml; `--multirun`
works). Composes arch / size / decode / trainer and the typed `speed` node (src/speed/config.py) into a spec for
`src.speed.compare.benchmark` (plain Python, also usable without Hydra), writes bench.json + bench.md into the run
directory, logs to W&B (offline by default) and prints the markdown table with the ours / HF ratios.

What is compiled is the run's own switches: `train.compile` (the training forward) and `decode.compile` (the
static-shape decode step); `speed.compile=true` sets both. `python -m src.bench` is the old name (src/bench.py):
overrides of the old node, `bench.*`, are read as `speed.*` (by both commands), and src.bench's messages name them
`bench.*`.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, refuse
from .config import SpeedConfig, validate
from .runtime import use_tcmalloc

NODE, OLD_NODE = "speed", "bench"
TASK_PREFERENCE = ("lm", "translation", "classification")  # the workload a given arch is timed on
_shown = {"node": NODE}  # the node name messages use: "bench" when run as `python -m src.bench`


def aliased(args: list[str]) -> list[str]:
    """Command-line overrides with the old node's keys (`bench.x=…`, `+bench.x=…`, `~bench.x`) renamed `speed.x`."""
    return [re.sub(rf"^(\+{{0,2}}|~){OLD_NODE}\.", rf"\g<1>{NODE}.", a) for a in args]


def spec_of(cfg: DictConfig, s: SpeedConfig) -> dict:
    """The plain-Python spec of `compare.benchmark` from the composed config and its typed speed node."""
    task = next(t for t in TASK_PREFERENCE if t in cfg.arch.models)
    decode = OmegaConf.to_container(cfg.decode)
    decode_compile = bool(decode.pop("compile", False)) or s.compile
    return dict(arch=cfg.arch.name, model=cfg.arch.models[task]._target_,
                arch_params=OmegaConf.to_container(cfg.arch.params), vocab=s.vocab, d_model=cfg.size.d_model,
                n_heads=cfg.size.n_heads, n_layers=cfg.size.n_layers, d_ff=cfg.size.d_ff, dropout=s.dropout,
                src_len=s.src_len, new_tokens=s.new_tokens, methods=list(s.methods), batch_sizes=list(s.batch_sizes),
                beam_batch_sizes=list(s.beam_batch_sizes) if s.beam_batch_sizes else None,
                modes=list(s.modes), beam_size=decode.get("beam_size", 4), passes=decode.get("passes", 4),
                decode={k: v for k, v in decode.items() if k not in ("method", "beam_size", "passes")},
                train=s.train, train_batch=s.train_batch, warmup=s.warmup, repeats=s.repeats, device=s.device,
                precision=str(cfg.trainer.get("precision", "32-true")), compile=s.compile,
                train_compile=bool(cfg.train.compile) or s.compile, decode_compile=decode_compile, peers=s.peers,
                seed=s.seed, ct2=s.ct2_on, ct2_quantizations=list(s.ct2_quantizations),
                ct2_threads=list(s.ct2_threads) if s.ct2_threads else None)


def refuse_node(e: ConfigError) -> None:
    """The one-line refusal, naming the node the user typed (`speed.` or the alias's `bench.`)."""
    refuse(re.sub(rf"\b{NODE}\.", f"{_shown['node']}.", str(e)))


class SpeedGuard(Callback):
    """Validate the config before Hydra creates the run directory (single runs): a refused bench writes nothing."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        try:
            validate(config)
        except ConfigError as e:
            refuse_node(e)


def _wandb(result: dict, run_dir: Path, mode: str) -> None:
    if mode == "disabled":
        return
    import wandb

    run = wandb.init(project="archbench", job_type="bench", dir=str(run_dir), name=run_dir.name,
                     mode=os.environ.get("WANDB_MODE", mode), config=result["spec"])
    rows = result["inference"]
    qs = list(dict.fromkeys(k[4:] for r in rows for k in r if k.startswith("ct2_")))
    cols = ["method", "batch_size", "mode", "ours_tokens_per_s", "hf_tokens_per_s", "ratio",
            *[c for q in qs for c in (f"ct2_{q}_tokens_per_s", f"ratio_vs_ct2_{q}")]]
    run.log({"inference": wandb.Table(columns=cols, data=[
        [r["method"], r["batch_size"], r["mode"], r["ours"]["tokens_per_s"], (r.get("hf") or {}).get("tokens_per_s"),
         r.get("ratio"), *[v for q in qs for v in ((r.get(f"ct2_{q}") or {}).get("tokens_per_s"),
                                                  r.get(f"ratio_vs_ct2_{q}"))]] for r in rows])})
    if result["train"]:
        run.summary.update({"train/tokens_per_s": result["train"]["ours"]["tokens_per_s"],
                            "train/mfu": result["train"]["ours"]["mfu"]})
    run.finish()


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parents[2] / "conf"), config_name="speed")
def main(cfg: DictConfig) -> None:
    _shown["started"] = True
    try:
        speed = validate(cfg)
        spec = spec_of(cfg, speed)
    except ConfigError as e:
        refuse_node(e)
    import torch

    from .compare import benchmark, markdown

    if speed.threads:
        torch.set_num_threads(speed.threads)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    result = benchmark(spec)
    (run_dir / "bench.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (run_dir / "bench.md").write_text(table)
    _wandb(result, run_dir, speed.wandb)
    print(table)
    print(f"results: {run_dir / 'bench.json'}")


def cli(node: str = NODE) -> None:
    """`python -m src.speed` (node "speed") or its alias `python -m src.bench` (node "bench", for messages)."""
    use_tcmalloc()  # ARCHBENCH_MALLOC=tcmalloc: re-executes on tcmalloc (src/speed/runtime.py)
    _shown["node"] = node
    sys.argv[1:] = aliased(sys.argv[1:])
    try:
        main()
    except SystemExit as e:  # Hydra exits 1 on a bad override before the task starts: bad input too (2)
        if e.code == 1 and not _shown.get("started"):
            sys.exit(2)
        raise


if __name__ == "__main__":
    cli()
