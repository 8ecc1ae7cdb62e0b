"""Entry point: `python -m src.run arch=encdec task=translation` (Hydra; `--cfg job` prints the config)."""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from .config import ConfigError, register, validate

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        spec = validate(cfg)  # before any heavy import or model build
        from hydra.core.hydra_config import HydraConfig

        from .pipeline import run

        record = run(cfg, spec, HydraConfig.get().runtime.output_dir)
    except (ConfigError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return record["metrics"].get(spec.task.metric)  # the value a Hydra sweeper optimises


if __name__ == "__main__":
    main()
