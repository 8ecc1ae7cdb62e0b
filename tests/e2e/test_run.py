"""`python -m src.run` end to end: every valid arch × task pair, results files, no overwrite."""
import json

import pytest
import torch

from tests.conftest import run_cli, run_main
from tests.unit.config.test_config import EXPECTED_PAIRS

TASK_METRICS = {
    "translation": {"test/bleu", "test/chrf", "test/exact_match", "test/loss"},
    "classification": {"test/accuracy", "test/macro_f1", "test/loss"},
    "lm": {"test/perplexity", "test/loss"},
}


@pytest.mark.parametrize("arch, task", sorted(EXPECTED_PAIRS))
def test_every_valid_pair_runs_fast_dev_run_and_writes_results(tmp_path, arch, task):
    r = run_main(tmp_path, f"arch={arch}", f"task={task}", "debug=fast_dev_run", "logger=none")
    assert (r["arch"], r["task"], r["seed"], r["size"]) == (arch, task, 0, "small")
    assert TASK_METRICS[task] <= set(r["metrics"])
    assert r["params"] > 0 and r["train"]["steps"] == 1 and r["train"]["tokens_per_s"] > 0
    speed = r["inference"]["decode"]
    assert speed["latency_ms_batch1"] > 0 and speed["throughput_tokens_per_s"] > 0
    assert r["inference_tokens_per_s"] == speed["throughput_tokens_per_s"]
    assert len(r["run_key"]) == 12 and r["config"]["arch"]["name"] == arch
    assert len(r["samples"]) == 2  # debug: samples=2, never a whole test batch
    if task == "translation":
        assert r["decode"]["method"] == ("mask_predict" if arch == "nar" else "greedy")
        # a prefix-LM has no cross-attention; the fixed-context RNN (rnn_seq2seq) attends to nothing
        assert (tmp_path / "attention.png").exists() == (arch not in ("decoder", "rnn_seq2seq"))
    if arch == "nar":
        assert r["decode"]["passes"] == 4
        assert {"test/pass1/exact_match", "test/pass1/bleu"} <= set(r["metrics"])
        assert set(r["inference"]) == {"decode", "decode_pass1"}


def test_same_config_and_seed_give_the_same_run_key_and_metrics(tmp_path):
    a = run_main(tmp_path / "a", "arch=encoder", "task=classification", "debug=fast", "logger=none")
    b = run_main(tmp_path / "b", "arch=encoder", "task=classification", "debug=fast", "logger=none")
    c = run_main(tmp_path / "c", "arch=encoder", "task=classification", "debug=fast", "logger=none", "seed=1")
    assert a["run_key"] == b["run_key"] != c["run_key"]
    assert a["metrics"] == b["metrics"]  # reproducible on CPU


def test_cli_run_writes_results_and_never_overwrites_them(tmp_path):
    out = run_cli("arch=encdec", "task=translation", "debug=fast", "logger=csv", "decode=beam",
                  f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    path = tmp_path / "results.json"
    r = json.loads(path.read_text())
    assert r["decode"] == {"method": "beam", "beam_size": 4, "length_penalty": 1.0}
    assert r["train"]["steps"] == 4 and len(r["git_commit"]) == 40 and r["device"].startswith("cpu")
    assert 0.0 <= r["metrics"]["test/exact_match"] <= 100.0
    assert f"results: {path}" in out.stdout.splitlines()
    assert (tmp_path / "csv" / "metrics.csv").read_text().count("train/loss") >= 1
    assert not list(tmp_path.glob(".results.json.*"))  # no temp file left behind
    before = path.read_bytes()
    again = run_cli("arch=encdec", "task=translation", "debug=fast", "logger=csv", f"hydra.run.dir={tmp_path}")
    assert again.returncode == 2
    assert again.stderr.strip().startswith("error: ") and "already holds finished results" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before


def test_a_callback_added_by_config_is_in_the_runs_trainer(tmp_path, monkeypatch):
    """`+callbacks.<name>._target_=…` (conf/callbacks/): instantiated beside the default ones and the run's own."""
    import lightning.pytorch.callbacks as cb

    from src import train
    from src.callbacks import DivergenceGuard, GracefulStop, ProgressLog

    built = []
    make = train.build_trainer
    monkeypatch.setattr(train, "build_trainer", lambda *a, **kw: built.append(make(*a, **kw)) or built[-1])
    r = run_main(tmp_path, "arch=encoder", "task=classification", "debug=fast", "logger=csv",
                 "+callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor",
                 "callbacks.progress_log.every_s=5")
    kinds = {type(c) for c in built[0].callbacks}
    assert {cb.LearningRateMonitor, DivergenceGuard, ProgressLog, GracefulStop, cb.ModelCheckpoint} <= kinds
    assert next(c for c in built[0].callbacks if isinstance(c, ProgressLog)).every_s == 5
    checkpoint = next(c for c in built[0].callbacks if isinstance(c, cb.ModelCheckpoint))
    assert checkpoint.dirpath == str(tmp_path / "checkpoints") and (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert r["config"]["callbacks"]["lr_monitor"]["_target_"].endswith("LearningRateMonitor")
    assert "lr-AdamW" in (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]


@pytest.mark.slow
def test_a_compiled_run_tests_like_an_eager_one(tmp_path):
    """train.compile (the model's forward and the token loss compiled) through the whole run: the same seed gives
    the eager run's test loss."""
    runs = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        runs[compiled] = run_main(tmp_path / str(compiled), "arch=decoder", "task=lm", "debug=fast", "logger=none",
                                  f"train.compile={str(compiled).lower()}", "bench.batch_sizes=[1]")
    assert runs[True]["config"]["train"]["compile"] is True
    assert runs[True]["metrics"]["test/loss"] == pytest.approx(runs[False]["metrics"]["test/loss"], rel=1e-4)


@pytest.mark.slow
def test_a_compiled_decode_validates_and_tests_like_the_eager_one(tmp_path):
    """decode.compile through a whole run: AdamW(fused=True) moves the weights between validations without bumping
    their versions, and the compiled step's weight copies must follow it. The same seed gives the eager run's BLEU
    at every validation and its test metrics (the compiled step's fp32 tokens are the eager ones)."""
    runs = {}
    for compiled in (False, True):
        runs[compiled] = run_main(tmp_path / str(compiled), "arch=encdec", "task=translation", "debug=fast",
                                  "trainer.max_steps=60", "trainer.val_check_interval=20", "logger=none",
                                  f"decode.compile={str(compiled).lower()}", "bench.batch_sizes=[1]")
    assert runs[True]["config"]["decode"]["compile"] is True
    assert len(runs[True]["history"]["val/bleu"]) == 3
    assert runs[True]["history"]["val/bleu"] == runs[False]["history"]["val/bleu"]
    assert runs[True]["metrics"] == runs[False]["metrics"]
