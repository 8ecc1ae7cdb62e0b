"""Entry point: `python -m src.run arch=encdec task=translation` (Hydra; `--cfg job` prints the config).

Returns the run's best validation value to a Hydra sweeper (src/objective.py: `validation.best`, never a test
metric), so a tuning sweep (conf/hparams_search/) selects on validation data.

Exit codes: 0 finished; 2 bad input (config, data, a finished run dir, a run dir another process holds, no readable
checkpoint to resume from; one `error:` line on stderr, nothing left behind); 1 diverged or crashed; 128 + signal
number when interrupted (143 SIGTERM, 130 Ctrl-C), after a checkpoint from which the same command resumes.
A multirun member that diverges prints its `error:` line and fails as a job (Hydra's JobStatus.FAILED) instead of
ending the sweep: a tuning sweeper records the trial as failed and goes on (hydra_plugins/archbench_optuna).
"""
from __future__ import annotations

import logging
import shlex
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .config import register, validate
from .errors import ConfigError, Diverged, Interrupted, print_error, refuse
from .objective import objective
from .run_dir import CREATED, RunDir
from .run_lock import holding
from .speed.runtime import use_tcmalloc

register()
log = logging.getLogger("archbench")
_task_started = False  # Hydra exits 1 on a bad override before the task starts: that is bad input too (2)


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parent.parent / "conf"), config_name="config")
def main(cfg: DictConfig) -> float | None:
    global _task_started
    _task_started = True
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        spec = validate(cfg)  # before any heavy import or model build
        with holding(run_dir):  # the run dir's lock (multirun members; RunGuard took it for single runs)
            rd = RunDir(run_dir)
            if rd.state == "finished":  # multirun members (RunGuard checks single runs earlier)
                raise ConfigError(f"{rd.results} already holds finished results; choose another hydra.run.dir")
            from .train import train  # deferred (torch, Lightning): a bad config is refused in a second

            record = train(cfg, spec, run_dir)
    except ConfigError as e:
        if run_dir.resolve() in CREATED:  # a run that never started leaves nothing behind
            logging.shutdown()
            shutil.rmtree(run_dir, ignore_errors=True)
        refuse(str(e))
    except Diverged as e:
        log.error(f"error: {e}")  # run.log (the console filter keeps it off stdout)
        if HydraConfig.get().mode == RunMode.MULTIRUN:  # a failed job, not the sweep's end (exit 1 after it)
            print_error(str(e))
            raise
        refuse(str(e), 1)
    except Interrupted as e:
        message = (f"interrupted by {e} at step {_step(run_dir)}: checkpoint saved in {run_dir / 'checkpoints'}; "
                   f"resume with: {resume_command(run_dir)}")
        log.error(message)
        print(message, file=sys.stderr)
        sys.exit(e.exit_code)
    except Exception:
        log.exception("run failed")  # the traceback goes to run.log; Hydra prints it and exits 1
        raise
    return objective(record, cfg)  # the value a Hydra sweeper optimises: the best validation value


def _step(run_dir: Path):
    return RunDir(run_dir).status().get("step", "?")


def resume_command(run_dir: Path) -> str:
    """The command that resumes this run: the same overrides, the same run dir."""
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra.run.dir=")]
    return shlex.join(["python", "-m", "src.run", *overrides, f"hydra.run.dir={run_dir}"])


def cli() -> None:
    try:
        main()
    except SystemExit as e:
        if e.code == 1 and not _task_started:
            sys.exit(2)
        raise


if __name__ == "__main__":
    use_tcmalloc()  # ARCHBENCH_MALLOC=tcmalloc: re-executes on tcmalloc (src/speed/runtime.py)
    cli()
