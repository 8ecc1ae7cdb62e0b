"""Per-arch tuning (issue 17): `-m hparams_search=lr_warmup` picks lr / warm-up on the *validation* metric
(hydra_plugins/archbench_optuna, src/objective.py), a diverged trial fails without ending the study, a re-run
resumes, and `python -m src.study` runs the final comparison with each arch's own tuned settings."""
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from src.errors import ConfigError

from src.objective import best_of, objective, val_metric
from tests.conftest import compose, run_cli

needs_optuna = pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="pip install -e '.[tune]'")

# a few steps on a few examples, with inference timing cut to one sentence (it dominates a tiny run)
FAST = ("size=tiny", "debug=fast", "logger=csv", "bench.batch_sizes=[1]", "bench.latency_sentences=1",
        "bench.repeats=1", "bench.fixed_tokens=2", "bench.warmup=0", "samples=1")
LM = ("task=lm", "arch=decoder", *FAST)


def tune(sweep_dir: Path, *overrides: str, trials: int = 3):
    out = run_cli("-m", "hparams_search=lr_warmup", *overrides, f"hydra.sweeper.n_trials={trials}",
                  f"hydra.sweep.dir={sweep_dir}", timeout=900)
    found = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    return out, found


def test_the_objective_is_the_recorded_validation_best_else_the_best_of_history_never_a_test_metric():
    lm, clf = compose("task=lm", "arch=decoder"), compose("task=classification", "arch=encoder")
    assert val_metric(lm) == ("val/loss", "min") and val_metric(clf) == ("val/accuracy", "max")
    assert val_metric(compose("task=translation")) == ("val/bleu", "max")
    history = {"val/loss": [[2, 3.0], [4, 2.5], [6, 2.7]], "val/accuracy": [[2, 0.6], [4, 0.8], [6, 0.7]]}
    record = {"metrics": {"test/loss": 1.0, "test/accuracy": 0.99}, "history": history}
    assert objective(record, lm) == 2.5 and objective(record, clf) == 0.8  # min loss, max accuracy; test ignored
    assert objective({**record, "validation": {"metric": "val/loss", "mode": "min", "best": 2.4}}, lm) == 2.4
    assert objective({"metrics": {}, "history": {}}, lm) is None  # nothing to tune on: the sweeper fails the trial
    assert best_of([[1, float("nan")], [2, float("inf")]], "min") is None


@pytest.mark.slow
@needs_optuna
def test_a_tuning_sweep_picks_the_best_validation_value_and_a_rerun_resumes(tmp_path):
    sweep_dir = tmp_path / "tune"
    out, found = tune(sweep_dir, *LM)
    assert out.returncode == 0, out.stderr[-3000:]
    assert found["metric"] == "val/loss" and found["direction"] == "minimize"
    trials = found["trials"]
    assert len(trials) == 3 and all(t["state"] == "COMPLETE" for t in trials)
    validation = {}
    for t in trials:  # each trial's run dir, read back: the value it returned is its best val/loss, not a test one
        record = json.loads((Path(t["run_dir"]) / "results.json").read_text())
        assert record["config"]["optim"]["lr"] == t["params"]["optim.lr"]
        assert t["value"] == min(v for _, v in record["history"]["val/loss"])
        assert t["value"] != record["metrics"]["test/loss"]
        validation[t["params"]["optim.lr"]] = t["value"]
    assert len(validation) == 3  # three different learning rates were tried
    assert found["best_params"]["optim.lr"] == min(validation, key=validation.get)
    assert found["best_value"] == min(validation.values())

    again, found_again = tune(sweep_dir, *LM)  # the same command: every trial is done, none is run again
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(f"sweep {sweep_dir}: 1 done, 0 resumed, 0 new") == 3
    assert found_again == found


@pytest.mark.slow
@needs_optuna
def test_a_diverged_trial_is_a_failed_trial_and_the_study_goes_on(tmp_path):
    # TPE seed 0 draws lr 1e6, 1e-3, 1e6 as its 3 random start-up trials: two diverge at once, one learns
    out, found = tune(tmp_path / "tune", *LM, "optim.lr=choice(0.001,1000000.0)", "optim.warmup_steps=0",
                      "hydra.sweeper.n_startup_trials=3")
    assert out.returncode == 0, out.stderr[-3000:]
    states = {t["number"]: (t["params"]["optim.lr"], t["state"]) for t in found["trials"]}
    assert states == {0: (1e6, "FAIL"), 1: (0.001, "COMPLETE"), 2: (1e6, "FAIL")}
    assert "training diverged at step" in out.stderr and "trial 0 (optim.lr=1000000.0) failed" in out.stdout + out.stderr
    assert found["best_params"] == {"optim.lr": 0.001} and found["best_trial"] == 1
    for t in found["trials"]:
        if t["state"] == "FAIL":
            assert json.loads((Path(t["run_dir"]) / "status.json").read_text())["state"] == "diverged"


def test_a_diverged_error_survives_pickling_as_a_slurm_members_failed_return_carries_it():
    import pickle

    from src.errors import Diverged

    back = pickle.loads(pickle.dumps(Diverged(7, float("nan"))))
    assert isinstance(back, Diverged) and back.step == 7 and "diverged at step 7" in str(back)


@needs_optuna
def test_a_translation_tuning_without_validation_bleu_is_refused_in_one_line(tmp_path):
    out = run_cli("-m", "hparams_search=lr_warmup", "task=translation", "task.module.val_bleu=false",
                  f"hydra.sweep.dir={tmp_path / 'tune'}")
    assert out.returncode == 2 and "task.module.val_bleu=true" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


@needs_optuna
def test_the_grid_sampler_tries_each_point_once_and_caps_the_trials_at_the_grid(capsys):
    import optuna

    from hydra_plugins.archbench_optuna.sweeper import grid

    space = {"optim.lr": optuna.distributions.CategoricalDistribution([5e-4, 1e-3, 2e-3]),
             "optim.warmup_steps": optuna.distributions.CategoricalDistribution([100])}
    conf = {"sampler": "grid", "seed": 0, "n_startup_trials": 4, "n_trials": 8}
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for point in grid(conf, space):
        study.enqueue_trial(point)
    assert conf["n_trials"] == 3
    asked = [study.ask(space) for _ in range(3)]
    for t in asked:
        study.tell(t, 0.0)
    assert sorted(t.params["optim.lr"] for t in asked) == [5e-4, 1e-3, 2e-3]
    with pytest.raises(SystemExit) as ended:  # an interval cannot be gridded: one line, exit 2
        grid({**conf, "sampler": "grid"}, {"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-3)})
    assert ended.value.code == 2 and capsys.readouterr().err.count("error:") == 1


def test_a_bad_study_setting_is_refused_in_one_line():
    out = run_cli("study.trails=3", module="src.study")
    assert out.returncode == 2 and out.stderr.count("error:") == 1 and "study.trials=" in out.stderr


def test_a_study_teacher_must_be_one_of_its_archs_and_its_students_learn_from_its_seed0_run(tmp_path):
    from src.study import teacher_run

    out = run_cli("experiment=arch_comparison", "study.archs=[encdec,nar]", "study.teacher=decoder",
                  f"study.dir={tmp_path / 'study'}", module="src.study")
    assert out.returncode == 2 and out.stderr.count("error:") == 1 and "study.teacher=decoder" in out.stderr
    assert not (tmp_path / "study").exists()  # refused before any stage ran
    final = tmp_path / "final"
    for name in ("0_any_encdec_translation_small_s1", "1_any_encdec_translation_small_s0",
                 "2_any_nar_translation_small_s0", "3_any_encdec_translation_small_s2"):
        (final / name).mkdir(parents=True)
        (final / name / "results.json").write_text("{}")
    assert teacher_run(final, "encdec") == (final / "1_any_encdec_translation_small_s0").resolve()
    with pytest.raises(ConfigError, match="no finished rnn_attn seed-0 run"):
        teacher_run(final, "rnn_attn")


@pytest.mark.slow
@needs_optuna
def test_the_study_tunes_each_arch_and_runs_its_final_seeds_with_its_own_best_settings(tmp_path):
    root = tmp_path / "study"
    args = ("task=classification", *FAST, "study.archs=[encoder,decoder]", "study.trials=2", "study.seeds=2",
            f"study.dir={root}", "optim.warmup_steps=0", "study.search=lr_grid",
            "hydra.sweeper.sampler=grid")  # hydra.sweeper.*: to the tuning stage only (the final one has no sampler)
    out = run_cli(*args, module="src.study", timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]
    tuned = yaml.safe_load((root / "tuned.yaml").read_text())
    assert set(tuned) == {"encoder", "decoder"}
    for arch, t in tuned.items():  # tuned.yaml holds what the arch's own tuning chose
        found = yaml.safe_load((root / "tune" / arch / "optimization_results.yaml").read_text())
        assert t["params"] == found["best_params"] and t["metric"] == "val/accuracy"
        assert sorted(x["params"]["optim.lr"] for x in found["trials"]) == [1e-3, 2e-3]  # lr_grid's first two
    finals = [json.loads(p.read_text()) for p in sorted((root / "final").glob("*/results.json"))]
    assert sorted((r["arch"], r["seed"]) for r in finals) == [("decoder", 0), ("decoder", 1), ("encoder", 0),
                                                              ("encoder", 1)]
    for r in finals:  # each final run trained with its own arch's tuned lr and warm-up
        best = tuned[r["arch"]]["params"]
        assert r["config"]["optim"]["lr"] == best["optim.lr"]
        assert r["config"]["optim"]["warmup_steps"] == 0
    for arch, t in tuned.items():  # the final seed-0 run is the best trial itself, linked in, not trained again
        found = yaml.safe_load((root / "tune" / arch / "optimization_results.yaml").read_text())
        trial = Path(next(x["run_dir"] for x in found["trials"] if x["number"] == found["best_trial"]))
        reused = root / "final" / f"tuned_{trial.name}" / "results.json"
        assert reused.read_text() == (trial / "results.json").read_text()
    assert out.stdout.count(f"sweep {root / 'final'}: 1 done, 0 resumed, 1 new") == 2
    assert f"report: python -m src.report {root / 'final'}" in out.stdout
