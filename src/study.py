"""A tuned comparison: each arch's own learning rate and warm-up, picked on validation, then n seeds of each.

  python -m src.study experiment=arch_comparison study.archs=[encdec,decoder] study.trials=8 study.seeds=3 \
      study.dir=multirun/tuned_arch_comparison [overrides ...]

1. tune: per arch, `python -m src.run -m hparams_search=<study.search> arch=<arch> seed=<study.tune_seed>` into
   <dir>/tune/<arch>/ (Optuna TPE on the validation metric, hydra_plugins/archbench_optuna);
2. <dir>/tuned.yaml: each arch's best params, its best validation value and metric;
3. final: per arch, `python -m src.run -m arch=<arch> <its best params> seed=0,...,n-1` into one sweep dir,
   <dir>/final/, which `python -m src.report <dir>/final` reads. The run at the tuning seed is the best trial
   itself (same config, same seed): linked in as `final/tuned_<trial dir>`, not trained again.
`study.teacher=encdec`: sequence-level knowledge distillation (Kim & Rush 2016), as every NAR paper trains: the
teacher arch is tuned and trained first, and the NAR arch (tuning and final runs) trains on the translations of the
teacher's final seed-0 run (`data.distill_from`, src/data/distill.py); the teacher's cost is its own rows' cost.
Every other argument is passed to both stages (experiment=, size=, data=, trainer.max_steps=...), except
`hydra.sweeper.*` (the sampler's settings, hydra.sweeper.seed=1), which goes to the tuning stage only. Selecting on
validation and testing on test keeps the test set out of the choice (issue 17). Re-running the same command resumes:
each stage is an archbench multirun, whose launcher does not run a finished member again (src/sweep.py).
Exit codes: 0 done, 2 bad input (one `error:` line), else the failing stage's.
"""
from __future__ import annotations

import datetime
import shlex
import subprocess
import sys
from pathlib import Path

from .errors import ConfigError, print_error

DEFAULTS = {"archs": None, "trials": 8, "seeds": 3, "tune_seed": 0, "search": "lr_warmup", "dir": None, "teacher": None}
STUDENTS = ("nar",)  # with study.teacher=<arch>: trained on that arch's translations (sequence-level KD)
RESULTS = "optimization_results.yaml"  # hydra_plugins/archbench_optuna


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    """(study settings, the overrides passed on to src.run). `study.archs=[a,b]` or `a,b`; numbers as ints."""
    study, overrides = dict(DEFAULTS), []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not key.startswith("study."):
            overrides.append(arg)
            continue
        name = key.removeprefix("study.")
        if name not in DEFAULTS or not eq:
            raise ConfigError(f"{arg}: not a study setting; choose among {', '.join(f'study.{k}=' for k in DEFAULTS)}")
        if name == "archs":
            study[name] = [a.strip() for a in value.strip("[]").split(",") if a.strip()]
        elif name in ("trials", "seeds", "tune_seed"):
            if not value.lstrip("-").isdigit() or int(value) < (0 if name == "tune_seed" else 1):
                raise ConfigError(f"{arg}: study.{name} must be a whole number >= {0 if name == 'tune_seed' else 1}")
            study[name] = int(value)
        else:
            study[name] = value
    return study, overrides


def composed(overrides: list[str]):
    """The config these overrides compose to (with hydra.*), to read the task and the recipe's arch grid."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .config import register

    register()
    try:
        with initialize_config_dir(config_dir=str(Path(__file__).resolve().parent.parent / "conf"), version_base="1.3"):
            return compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(str(e).splitlines()[0]) from None


def plan(study: dict, overrides: list[str]) -> tuple[list[str], list[str]]:
    """(archs, extra overrides both stages need): archs from study.archs, else the recipe's `arch` grid."""
    from omegaconf import OmegaConf

    cfg = composed(overrides)
    archs = study["archs"] or str(OmegaConf.select(cfg, "hydra.sweeper.params.arch") or "").split(",")
    archs = [a.strip() for a in archs if a.strip()]
    if not archs:
        raise ConfigError("no archs to compare: give study.archs=[encdec,decoder] (or an experiment with an arch grid)")
    extra = []
    if OmegaConf.select(cfg, "task.name") == "translation" and OmegaConf.select(cfg, "task.module.val_bleu") is False:
        extra.append("task.module.val_bleu=true")  # tune (and select) on validation BLEU
    return archs, extra


def run(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "src.run", "-m", *args]
    print(f"$ {shlex.join(['python', *cmd[1:]])}", flush=True)
    code = subprocess.run(cmd).returncode
    if code:
        raise SystemExit(code)


def tuned_params(tune_dir: Path) -> dict:
    from omegaconf import OmegaConf

    found = OmegaConf.to_container(OmegaConf.load(tune_dir / RESULTS))
    return {"params": found["best_params"], "value": found["best_value"], "metric": found["metric"],
            "direction": found["direction"], "trial": found["best_trial"], "trials": len(found["trials"])}


def reuse_best_trial(tune_dir: Path, final_dir: Path) -> Path:
    """The best trial is the final run at the tuning seed: the same config and the same seed. Its run dir is
    linked (hard links, else copies) into the final sweep as `tuned_<trial dir>`, where the launcher matches it by
    config and finds it done, instead of training it again."""
    import os
    import shutil

    from omegaconf import OmegaConf

    found = OmegaConf.load(tune_dir / RESULTS)
    trial = Path(next(t.run_dir for t in found.trials if t.number == found.best_trial))
    target = final_dir / f"tuned_{trial.name}"
    if not target.exists():
        def link(src, dst):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        shutil.copytree(trial, target.with_name(target.name + ".partial"), copy_function=link, dirs_exist_ok=True)
        target.with_name(target.name + ".partial").rename(target)
    return target


def teacher_run(final_dir: Path, teacher: str) -> Path:
    """The teacher's finished seed-0 run among the final runs (subdir <n>_<gpu>_<arch>_<task>_<size>_s0)."""
    runs = sorted(p for p in final_dir.glob(f"*_{teacher}_*_s0") if (p / "results.json").exists())
    if not runs:
        raise ConfigError(f"no finished {teacher} seed-0 run under {final_dir} to distill from")
    return runs[0].resolve()


def override(key: str, value) -> str:
    return f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"


def study(settings: dict, overrides: list[str]) -> Path:
    from omegaconf import OmegaConf

    sweeper = [o for o in overrides if o.startswith("hydra.sweeper.")]  # the tuning stage's sampler and space
    both = [o for o in overrides if o not in sweeper]
    archs, extra = plan(settings, both)
    root = Path(settings["dir"] or f"multirun/{datetime.datetime.now():%Y-%m-%d/%H-%M-%S}_study")
    print(f"study {root}: {', '.join(archs)}; {settings['trials']} trials each, then {settings['seeds']} seeds",
          flush=True)
    teacher = settings["teacher"]
    if teacher and teacher not in archs:
        raise ConfigError(f"study.teacher={teacher} is not among the study's archs ({', '.join(archs)})")
    if teacher:  # the teacher first: its final seed-0 run is the students' training data
        archs = [teacher, *(a for a in archs if a != teacher)]
    tuned, seeds = {}, ",".join(str(s) for s in range(settings["seeds"]))
    for arch in archs:
        kd = [f"data.distill_from={teacher_run(root / 'final', teacher)}"] if teacher and arch in STUDENTS else []
        run([f"hparams_search={settings['search']}", *both, *sweeper, *extra, *kd, f"arch={arch}",
             f"seed={settings['tune_seed']}", f"hydra.sweeper.n_trials={settings['trials']}",
             f"hydra.sweep.dir={root / 'tune' / arch}"])
        tuned[arch] = tuned_params(root / "tune" / arch)
        OmegaConf.save(OmegaConf.create(tuned), root / "tuned.yaml")
        best = [override(k, v) for k, v in tuned[arch]["params"].items()]
        if settings["tune_seed"] < settings["seeds"]:
            reuse_best_trial(root / "tune" / arch, root / "final")
        run([*both, *extra, *kd, f"arch={arch}", *best, f"seed={seeds}", f"hydra.sweep.dir={root / 'final'}"])
    for arch in archs:
        t = tuned[arch]
        print(f"{arch}: {' '.join(override(k, v) for k, v in t['params'].items())} "
              f"({t['metric']}={t['value']:.4g}, best of {t['trials']} trials)")
    print(f"tuned settings: {root / 'tuned.yaml'}\nreport: python -m src.report {root / 'final'}\n"
          f"resume: {shlex.join(['python', '-m', 'src.study', *overrides, *_settings_args(settings, root)])}")
    return root


def _settings_args(settings: dict, root: Path) -> list[str]:
    args = [f"study.{k}={v}" for k, v in settings.items() if k not in ("archs", "dir") and v != DEFAULTS[k]]
    if settings["archs"]:
        args.insert(0, f"study.archs=[{','.join(settings['archs'])}]")
    return [*args, f"study.dir={root}"]


def main(argv: list[str] | None = None) -> int:
    try:
        settings, overrides = parse(sys.argv[1:] if argv is None else argv)
        study(settings, overrides)
    except ConfigError as e:
        print_error(str(e))
        return 2
    except SystemExit as e:  # a stage failed: its own lines are above
        print_error(f"a study stage exited {e.code}; re-run the same command to resume")
        return int(e.code or 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
