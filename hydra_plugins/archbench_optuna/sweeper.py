"""Hydra sweeper `hydra/sweeper=archbench_optuna` (conf/hparams_search/): Optuna's ask/tell loop over the configured
launcher, so a tuning sweep resumes as every archbench sweep does (hydra_plugins/archbench_local, archbench_slurm).

Each batch of `n_jobs` trials is asked from a seeded TPE sampler (Bergstra et al. 2011, "Algorithms for
Hyper-Parameter Optimization"), launched as one batch of multirun members, and told the value each job returned
(src/run.py: the run's best *validation* value, src/objective.py). A job that failed (diverged, crashed) or returned
no finite value is told `TrialState.FAIL` and the study goes on; only a study in which no trial completed exits 1.
A re-run of the same command is a resume: the launcher returns the recorded value of every finished member without
running it, and the seeded sampler, told the same values, asks the same next trials. `optimization_results.yaml` in
the sweep dir holds the best params and every trial (params, value, state, run dir), rewritten after each batch.

Why not hydra-optuna-sweeper 1.2.0 (lightning-hydra-template's): it pins optuna < 3, whose RDB storage fails on
SQLAlchemy 2 (AssertionError at create_study), and it re-raises the first failed trial, which ends the whole study
at the first learning rate that diverges. The search space uses its override grammar: `interval(a, b)`,
`tag(log, interval(a, b))`, `choice(...)` / `a,b,c`, `range(...)`.
"""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

log = logging.getLogger(__name__)
RESULTS = "optimization_results.yaml"


@dataclass
class ArchbenchOptunaConf:
    _target_: str = "hydra_plugins.archbench_optuna.sweeper.OptunaSweeper"
    direction: Optional[str] = None   # maximize | minimize; null: the task's validation mode (src/objective.py)
    n_trials: int = 8
    n_jobs: int = 1                   # trials per launcher batch (SLURM: run in parallel; TPE learns between batches)
    seed: int = 0                     # the TPE sampler's seed: the same command asks the same trials
    n_startup_trials: int = 4         # random trials before TPE models the results
    sampler: str = "tpe"              # tpe | grid (every point of a search space of choice()s, in order)
    storage: Optional[str] = None     # e.g. sqlite:///tune.db; null: in memory (a re-run resumes through the launcher)
    study_name: Optional[str] = None
    search_space: dict[str, str] = field(default_factory=dict)  # key: override grammar sweep
    params: Optional[dict[str, Any]] = None  # a recipe's grid sweep (experiment=...): refused unless null


ConfigStore.instance().store(group="hydra/sweeper", name="archbench_optuna", node=ArchbenchOptunaConf,
                             provider="archbench")


def distribution(override):
    """The Optuna distribution of one parsed sweep override (`interval`, `tag(log, interval)`, `choice`, `range`)."""
    import optuna.distributions as d

    value = override.value()
    if override.is_interval_sweep():
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return d.IntDistribution(value.start, value.end, log=log_scale)
        return d.FloatDistribution(value.start, value.end, log=log_scale)
    if override.is_range_sweep():
        return d.IntDistribution(value.start, value.stop - value.step, step=value.step)
    return d.CategoricalDistribution(list(override.sweep_iterator()))


class OptunaSweeper(Sweeper):
    def __init__(self, **conf):
        self.conf = conf
        self.config = self.launcher = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def _space(self, arguments: list[str]):
        """(search space {key: distribution}, fixed overrides) from `search_space` and the command line."""
        from src.errors import refuse

        if self.conf["params"]:
            refuse(f"hydra.sweeper.params={dict(self.conf['params'])}: a tuning sweep tunes one configuration; "
                   "give its values as overrides (arch=encdec seed=0), tuned keys under hydra.sweeper.search_space")
        parser, space, fixed = OverridesParser.create(), {}, []
        for o in parser.parse_overrides([f"{k}={v}" for k, v in self.conf["search_space"].items()] + arguments):
            if o.is_sweep_override():
                space[o.get_key_element()] = distribution(o)
            else:  # a value given on the command line is not searched (optim.warmup_steps=0)
                space.pop(o.get_key_element(), None)
                fixed.append(o.input_line)
        if not space:
            refuse("hparams_search: hydra.sweeper.search_space is empty; e.g. optim.lr='tag(log, interval(1e-4, 3e-3))'")
        return space, fixed

    def sweep(self, arguments: list[str]) -> list:
        try:
            import optuna
        except ImportError:
            from src.errors import refuse

            refuse("hydra/sweeper=archbench_optuna needs optuna: pip install -e '.[tune]'")
        from src.objective import MODES, val_metric

        space, fixed = self._space(arguments)
        metric, mode = val_metric(self.config)
        if OmegaConf.select(self.config, "hydra.launcher.wait") is False:
            from src.errors import refuse

            refuse("hparams_search needs each trial's value: hydra.launcher.wait=false returns before they run")
        if metric == "val/bleu" and OmegaConf.select(self.config, "task.module.val_bleu") is False:
            from src.errors import refuse

            refuse("hparams_search tunes translation on val/bleu, which task.module.val_bleu=false does not log; "
                   "add task.module.val_bleu=true")
        direction = self.conf["direction"] or MODES[mode]
        sampler = optuna.samplers.TPESampler(seed=self.conf["seed"], n_startup_trials=self.conf["n_startup_trials"])
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(storage=self.conf["storage"], study_name=self.conf["study_name"], sampler=sampler,
                                    direction=direction, load_if_exists=True)
        for point in grid(self.conf, space)[len(study.trials) : self.conf["n_trials"]]:
            study.enqueue_trial(point)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        how = "the grid" if self.conf["sampler"] == "grid" else f"TPE seed {self.conf['seed']}"
        log.info(f"optuna: {direction} {metric} over {', '.join(space)}; {self.conf['n_trials']} trials, {how}; "
                 f"sweep dir {sweep_dir}")
        ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
        runs, returns = {}, []
        while (left := self.conf["n_trials"] - sum(t.state in ended for t in study.trials)) > 0:
            trials = [study.ask(space) for _ in range(min(left, self.conf["n_jobs"]))]
            overrides = [[*fixed, *(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in t.params.items())]
                         for t in trials]
            batch = self.launcher.launch(overrides, initial_job_idx=trials[0].number)
            for trial, ret in zip(trials, batch):
                value, why = outcome(ret, metric)
                runs[trial.number] = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir")
                if why is None:
                    study.tell(trial, value)
                else:
                    log.warning(f"trial {trial.number} ({' '.join(f'{k}={v}' for k, v in trial.params.items())}) "
                                f"failed: {why}")
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
            returns.append(batch)
            write_results(sweep_dir / RESULTS, study, metric, direction, runs)
        if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
            raise RuntimeError(f"optuna: none of the {len(study.trials)} trials completed (see {sweep_dir / RESULTS})")
        log.info(f"optuna: best {metric}={study.best_value} with {study.best_params} (trial {study.best_trial.number})")
        return returns


def grid(conf: dict, space: dict) -> list[dict]:
    """`sampler: grid`: every point of a space of choice()s, in order (enqueued, so n trials are n distinct points,
    where TPE's random start-up trials may draw one value twice); n_trials is capped at the grid's size.
    `sampler: tpe`: no points (TPE asks)."""
    import itertools

    import optuna
    from src.errors import refuse

    if conf["sampler"] not in ("tpe", "grid"):
        refuse(f"hydra.sweeper.sampler={conf['sampler']}: choose tpe or grid")
    if conf["sampler"] == "tpe":
        return []
    intervals = [k for k, d in space.items() if not isinstance(d, optuna.distributions.CategoricalDistribution)]
    if intervals:
        refuse(f"hydra.sweeper.sampler=grid needs choice(...) values; {', '.join(intervals)} is an interval")
    points = [dict(zip(space, values)) for values in itertools.product(*(d.choices for d in space.values()))]
    conf["n_trials"] = min(conf["n_trials"], len(points))
    return points


def outcome(ret, metric: str) -> tuple[float | None, str | None]:
    """(value, None) for a job that returned a finite number, else (None, why it failed)."""
    if ret.status == JobStatus.FAILED:
        return None, (str(ret._return_value).splitlines() or [type(ret._return_value).__name__])[0]
    value = ret.return_value
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None, f"returned {value!r}: its results hold no {metric}"
    return (value, None) if math.isfinite(value) else (None, f"returned {value}")


def write_results(path: Path, study, metric: str, direction: str, runs: dict) -> None:
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if done else None
    OmegaConf.save(OmegaConf.create({
        "name": "optuna", "metric": metric, "direction": direction,
        "best_params": dict(best.params) if best else None, "best_value": best.value if best else None,
        "best_trial": best.number if best else None,
        "trials": [{"number": t.number, "params": dict(t.params), "value": t.value, "state": t.state.name,
                    "run_dir": str(runs.get(t.number)) if runs.get(t.number) else None} for t in study.trials],
    }), path)
