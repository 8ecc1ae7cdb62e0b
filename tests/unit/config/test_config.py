"""Composition, schema validation and the one-line errors of `python -m src.run`."""

import json

import pytest

from src.config import ConfigError, valid_pairs, validate

from tests.conftest import ROOT, compose, run_cli

ARCHS = sorted(p.stem for p in (ROOT / "conf" / "arch").glob("*.yaml"))
TASKS = sorted(p.stem for p in (ROOT / "conf" / "task").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
EXPECTED_PAIRS = {("encoder", "classification"), ("decoder", "classification"), ("decoder", "lm"),
                  ("decoder", "translation"), ("encdec", "translation"), ("rnn_attn", "translation"),
                  ("rnn_seq2seq", "translation"), ("nar", "translation")}


def test_the_arch_task_matrix_is_the_documented_one():
    assert set(valid_pairs()) == EXPECTED_PAIRS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_config_composes_and_validates(experiment):
    spec = validate(compose(f"experiment={experiment}"))
    assert (spec.arch.name, spec.task.name) in EXPECTED_PAIRS


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("task", TASKS)
def test_every_pair_is_accepted_or_rejected_with_the_valid_choices(arch, task):
    cfg = compose(f"arch={arch}", f"task={task}")
    if (arch, task) in EXPECTED_PAIRS:
        assert validate(cfg).arch.name == arch
    else:
        with pytest.raises(ConfigError) as err:
            validate(cfg)
        msg = str(err.value)
        assert "\n" not in msg and f"arch={arch} does not support task={task}" in msg
        assert "arch=encdec task=translation" in msg  # lists the valid pairs


def test_nar_defaults_to_mask_predict_and_rejects_ar_decoding():
    assert validate(compose("arch=nar")).decode.method == "mask_predict"
    with pytest.raises(ConfigError, match="decode=beam does not apply to arch=nar; choose decode=mask_predict"):
        validate(compose("arch=nar", "decode=beam"))


@pytest.mark.parametrize("override, expected", [
    ("size.n_heads=3", "size.d_model=64 is not divisible by size.n_heads=3"),
    ("decode.top_p=0", "decode.top_p=0.0 must be in (0, 1]"),
    ("decode.method=nucleus", "decode.method=nucleus is not valid; choose one of: beam, greedy, mask_predict, sample"),
    ("data.tokenizer=sentencepiece", "data.tokenizer=sentencepiece is not valid; choose one of: bpe, unigram, word, char"),
])
def test_bad_values_are_rejected_by_the_schema(override, expected):
    with pytest.raises(ConfigError) as err:
        validate(compose(override))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_cli_invalid_pair_exits_nonzero_with_one_line(tmp_path):
    out = run_cli("arch=encoder", "task=translation", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: arch=encoder does not support task=translation; encoder supports "
                               "task=classification. Valid pairs: ")
    assert not (tmp_path / "results.json").exists()


def test_cli_bad_size_exits_nonzero_with_one_line(tmp_path):
    out = run_cli("size.d_model=30", "size.n_heads=4", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: size.d_model=30 is not divisible by size.n_heads=4; choose n_heads among "
                                  "1, 2, 3, 5, 6, 10, 15, 30")


def test_cli_unknown_arch_names_the_options():
    out = run_cli("arch=transformer")
    assert out.returncode != 0
    assert "Could not find 'arch/transformer'" in out.stderr and "encdec" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_prints_the_composed_config():
    out = run_cli("arch=decoder", "task=lm", "--cfg", "job")
    assert out.returncode == 0
    assert "name: decoder" in out.stdout and "name: lm" in out.stdout and "d_model: 64" in out.stdout


def test_cli_bad_trainer_value_exits_nonzero_with_one_line(tmp_path):
    out = run_cli("trainer.max_steps=-5", "debug=fast", "logger=none", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: trainer: `max_steps` must be a non-negative integer or -1 (infinite steps). You passed in -5."]
    assert not (tmp_path / "results.json").exists()


def test_results_file_is_refused_with_one_line_and_nothing_written(tmp_path):
    out = run_cli("results_file=x.json", f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: results_file is no longer configurable: results are always "
                                  "<run_dir>/results.json")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="results_file is no longer configurable"):
        validate(compose("results_file=results.json"))


def test_callbacks_group_composes_defaults_and_added_callbacks():
    cfg = compose("callbacks=with_early_stopping", "+callbacks.lr_monitor._target_="
                  "lightning.pytorch.callbacks.LearningRateMonitor", "optim.divergence_patience=3")
    spec = validate(cfg)
    assert list(spec.callbacks) == ["divergence_guard", "progress_log", "model_checkpoint", "best_checkpoint",
                                    "early_stopping", "lr_monitor"]
    assert spec.callbacks["divergence_guard"]["patience"] == 3  # the run's own keys still set them
    assert spec.callbacks["early_stopping"]["monitor"] == spec.task.val_metric == "val/bleu"  # the task's own
    assert spec.callbacks["early_stopping"]["mode"] == "max"


def test_run_key_leaves_fields_at_their_schema_default_out():
    """A config recorded before a schema field existed keys as one that holds the default; another value, another
    seed or another lr is another key; the logger and the data cache are not part of it."""
    from omegaconf import OmegaConf

    from src.results import run_key

    config = OmegaConf.to_container(compose("arch=encdec", "task=translation"), resolve=True)
    older = json.loads(json.dumps(config))
    del older["decode"]["int8"]
    moved = json.loads(json.dumps(config))
    moved["data"]["cache_dir"], moved["logger"] = "/elsewhere", {"name": "wandb"}
    assert run_key(older) == run_key(config) == run_key(moved)
    changed = [json.loads(json.dumps(config)) for _ in range(3)]
    changed[0]["decode"]["int8"], changed[1]["seed"], changed[2]["optim"]["lr"] = True, 1, 0.5
    assert len({run_key(config), *map(run_key, changed)}) == 4
