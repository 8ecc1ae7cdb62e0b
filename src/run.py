"""Entry point: `python -m src.run arch=encdec task=translation` (Hydra; `--cfg job` prints the config)."""
from __future__ import annotations

import sys

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .config import ConfigError, register, validate

register()


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parent.parent / "conf"), config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        spec = validate(cfg)  # before any heavy import or model build
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        if (run_dir / spec.results_file).exists():
            raise FileExistsError(f"{run_dir / spec.results_file} already holds finished results; "
                                  "choose another hydra.run.dir")
        from .pipeline import run

        record = run(cfg, spec, run_dir)
    except (ConfigError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return record["metrics"].get(spec.task.metric)  # the value a Hydra sweeper optimises


if __name__ == "__main__":
    main()
