"""The report's configuration identity and statistics on fake run dirs (results.json + per-example files):
grouping, sacreBLEU's paired tests, bootstrap CIs, t-intervals, --baseline, the sentences, number formatting."""
import copy
import csv
import json
import math
import random

import numpy as np
import pytest
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest

from src.report import stats
from src.report.latency import latency_wins
from src.report.aggregate import aggregate, group, measures
from src.report.write import fmt

from .test_report import report_cli

WORDS = "the a cat dog sat on mat rug ran far near house big small red".split()
CONFIG = {"arch": {"name": "encdec", "family": "ar", "params": {"norm_first": True}},
          "task": {"name": "translation", "metric": "test/bleu"}, "data": {"name": "synthetic", "root": "../data",
                                                                           "seed": 0, "vocab_size": 8000},
          "size": {"name": "tiny", "d_model": 32}, "decode": {"method": "greedy", "beam_size": 4},
          "optim": {"lr": 0.002, "warmup_steps": 100}, "trainer": {"max_steps": 4, "log_every_n_steps": 1},
          "bench": {"repeats": 2}, "logger": {"name": "csv"}, "seed": 0, "threads": 1, "samples": 2}


def references(n=120, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) for _ in range(n)]


def noisy(refs, p, seed):
    rng = random.Random(seed)
    return [" ".join(w if rng.random() > p else rng.choice(WORDS) for w in r.split()) for r in refs]


def translation_run(root, name, hyps, refs, seed=0, latency=10.0, spread=0.05, **overrides):
    """A finished translation run dir: results.json (config with `overrides` as dotted keys) + hypotheses.jsonl."""
    config = copy.deepcopy(CONFIG)
    config["seed"] = seed
    for key, value in overrides.items():
        d = config
        *path, last = key.split(".")
        for p in path:
            d = d.setdefault(p, {})
        d[last] = value
    bleu = BLEU(tokenize="13a")
    record = {"arch": config["arch"]["name"], "task": "translation", "data": "synthetic", "size": "tiny",
              "seed": seed, "decode": {"method": "greedy"}, "headline_metric": "test/bleu",
              "metrics": {"test/bleu": bleu.corpus_score(hyps, [refs]).score},
              "metrics_signature": {"bleu": bleu.get_signature().format()}, "params": 908800,
              "train": {"tokens_per_s": 10750.0 + seed, "flops_per_token": 5_453_000}, "device": "cpu",
              "inference": {"decode": {"latency_ms_batch1": latency, "throughput_tokens_per_s": 900.0,
                                       "by_batch": [{"batch_size": 1, "mode": "natural", "ms_per_sentence": latency,
                                                     "tokens_per_s": 100.0, "spread": spread}]}},
              "config": config}
    run = root / name
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(record))
    (run / "hypotheses.jsonl").write_text("".join(
        json.dumps({"id": i, "variant": "decode", "source": "s", "reference": r, "hypothesis": h}) + "\n"
        for i, (h, r) in enumerate(zip(hyps, refs))))
    return record


@pytest.fixture
def sweep(tmp_path):
    """encdec (good hypotheses) and rnn_attn (noisier), 2 seeds each, on the same 120 references."""
    refs = references()
    for seed in (0, 1):
        translation_run(tmp_path / "sweep", f"{seed}_encdec", noisy(refs, 0.2, seed), refs, seed=seed, latency=10.0)
        translation_run(tmp_path / "sweep", f"{2 + seed}_rnn", noisy(refs, 0.5, 10 + seed), refs, seed=seed,
                        latency=20.0, **{"arch.name": "rnn_attn", "arch.family": "ar"})
    return tmp_path / "sweep"


def test_runs_differing_only_in_lr_are_two_rows_seeds_are_one(tmp_path):
    refs = references(20)
    records = [translation_run(tmp_path, f"r{i}", refs, refs, seed=seed, **{"optim.lr": lr, "data.root": f"/d{i}",
                                                                           "threads": i})
               for i, (lr, seed) in enumerate([(1e-3, 0), (1e-3, 1), (2e-3, 0)])]
    rows = aggregate(records)
    assert sorted(r["label"] for r in rows) == ["optim.lr=0.001", "optim.lr=0.002"]
    assert sorted(r["n"] for r in rows) == [1, 2]  # seed, data.root, threads: not the configuration
    assert [label for label, _, _ in group(records[:2])] == [""]  # one configuration: nothing to tell apart


def test_a_switch_added_after_a_run_counts_at_its_default(tmp_path):
    """A run recorded before decode.int8 existed is a seed of the later runs holding its default (False), not of
    those that turned it on."""
    refs = references(20)
    old = translation_run(tmp_path, "old", refs, refs, seed=0)
    assert "int8" not in old["config"]["decode"]
    records = [old, translation_run(tmp_path, "new", refs, refs, seed=1, **{"decode.int8": False}),
               translation_run(tmp_path, "int8", refs, refs, seed=0, **{"decode.int8": True})]
    assert sorted((label, len(rs)) for label, _, rs in group(records)) == [("decode.int8=False", 2),
                                                                          ("decode.int8=True", 1)]


def test_label_names_the_arch_not_every_key_it_changes(tmp_path):
    refs = references(20)
    records = [translation_run(tmp_path, "a", refs, refs),
               translation_run(tmp_path, "b", refs, refs, **{"arch.name": "rnn_attn", "arch.family": "rnn",
                                                              "trainer.max_steps": 8}),
               translation_run(tmp_path, "c", refs, refs, **{"arch.name": "rnn_attn", "arch.family": "rnn",
                                                              "trainer.max_steps": 8, "size.d_model": 64})]
    assert sorted(label for label, _, _ in group(records)) == [
        "arch=encdec size.d_model=32", "arch=rnn_attn size.d_model=32", "arch=rnn_attn size.d_model=64"]


def test_paired_tests_equal_sacrebleus_own(tmp_path):
    refs = references()
    a, b = noisy(refs, 0.2, 1), noisy(refs, 0.3, 2)
    base_rec = translation_run(tmp_path, "base", a, refs)
    other_rec = translation_run(tmp_path, "other", b, refs)
    base, other = (stats.load_examples(tmp_path / n, r, None) for n, r in (("base", base_rec), ("other", other_rec)))
    got = stats.compare({0: base}, {0: other})
    for test, key in (("bs", "p"), ("ar", "p_ar")):
        _, scores = PairedTest([("a", a), ("b", b)], {"BLEU": BLEU(tokenize="13a")}, [refs], test_type=test)()
        assert got[key] == pytest.approx(scores["BLEU"][1].p_value, abs=0)
    _, scores = PairedTest([("a", a), ("b", b)], {"BLEU": BLEU(tokenize="13a")}, [refs], test_type="bs")()
    ours = stats.paired_bootstrap(base, other)  # our generic bootstrap (every task) is sacreBLEU's
    assert ours["p"] == pytest.approx(scores["BLEU"][1].p_value, abs=1e-12)
    assert got["delta"] == pytest.approx(scores["BLEU"][1].score - scores["BLEU"][0].score, abs=1e-4)
    assert got["ci"][0] < got["delta"] < got["ci"][1]


def test_bootstrap_ci_of_a_constant_metric_has_zero_width(tmp_path):
    refs = references(50)
    ex = stats.load_examples(tmp_path / "p", translation_run(tmp_path, "p", refs, refs), None)
    assert stats.bootstrap_ci(ex) == (pytest.approx(100.0), pytest.approx(100.0))
    run = tmp_path / "cls"
    run.mkdir()
    (run / "predictions.jsonl").write_text("".join(json.dumps({"id": i, "label": i % 2, "prediction": i % 2,
                                                               "probs": [0.5, 0.5]}) + "\n" for i in range(40)))
    ex = stats.load_examples(run, {"task": "classification", "headline_metric": "test/accuracy"}, None)
    assert stats.bootstrap_ci(ex) == (1.0, 1.0)


def test_compressed_per_example_files_read_back_the_same(tmp_path):
    """A committed study keeps its members' hypotheses.jsonl / predictions.jsonl as .gz: the same examples."""
    import gzip

    from src.report.collect import read_hypotheses

    refs = references()
    record = translation_run(tmp_path, "plain", noisy(refs, 0.4, 3), refs)
    packed = tmp_path / "packed"
    packed.mkdir()
    (packed / "hypotheses.jsonl.gz").write_bytes(gzip.compress((tmp_path / "plain" / "hypotheses.jsonl").read_bytes()))
    plain, gz = (stats.load_examples(tmp_path / n, record, None) for n in ("plain", "packed"))
    assert gz is not None and gz.value() == plain.value() and stats.bootstrap_ci(gz) == stats.bootstrap_ci(plain)
    assert read_hypotheses(packed) == read_hypotheses(tmp_path / "plain") != []


def test_bootstrap_ci_brackets_a_varying_metric(tmp_path):
    refs = references()
    ex = stats.load_examples(tmp_path / "n", translation_run(tmp_path, "n", noisy(refs, 0.4, 3), refs), None)
    low, high = stats.bootstrap_ci(ex)
    assert low < ex.value() < high and high - low > 1


def test_t_interval_of_known_values():
    got = stats.t_interval([1, 2, 3, 4, 5])
    # mean 3, s = sqrt(2.5), t(0.975, 4) = 2.7764 (t table): 3 ± 2.7764 * 1.5811 / sqrt(5) = 3 ± 1.9632
    assert (got["mean"], got["n"]) == (3.0, 5)
    assert got["low"] == pytest.approx(3 - 1.9632, abs=1e-4) and got["high"] == pytest.approx(3 + 1.9632, abs=1e-4)
    assert stats.t_interval([7.0]) == {"mean": 7.0, "low": None, "high": None, "n": 1}


def test_lm_and_classification_paired_bootstrap(tmp_path):
    for name, nll in (("a", 2.0), ("b", 2.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "predictions.jsonl").write_text("".join(
            json.dumps({"id": i, "tokens": 10, "nll": 10 * nll + (i % 3)}) + "\n" for i in range(60)))
    lm = {"task": "lm", "headline_metric": "test/perplexity"}
    a, b = (stats.load_examples(tmp_path / n, lm, None) for n in "ab")
    assert a.value() == pytest.approx(math.exp(sum(20 + i % 3 for i in range(60)) / 600))
    r = stats.compare({0: a}, {0: b})
    assert r["delta"] > 0 and r["p"] < 0.01  # b's perplexity is higher: worse
    assert stats.claim("b", "a", r, "test/perplexity").startswith("a < b by ")
    assert stats.quality_wins({"a": {0: a}, "b": {0: b}}) == {("a", "b"): "win", ("b", "a"): "loss"}  # lower wins
    correct = np.arange(100) < 80  # base right on 80; other right on those 80 minus 10, plus 2 others
    other = correct.copy()
    other[:10], other[80:82] = False, True
    base_ex = stats.Examples("test/accuracy", np.stack([correct, np.ones(100)], 1).astype(float),
                             lambda s: s[0] / s[1], list(range(100)), [0] * 100)
    other_ex = stats.Examples("test/accuracy", np.stack([other, np.ones(100)], 1).astype(float),
                              lambda s: s[0] / s[1], list(range(100)), [0] * 100)
    assert stats.mcnemar(base_ex, other_ex) == pytest.approx(2 * sum(math.comb(12, k) for k in range(3)) / 2 ** 12)


def test_claim_wording():
    significant = {"delta": 6.1, "ci": (5.2, 7.0), "p": 0.0009990, "test": "paired bootstrap"}
    assert stats.claim("encdec", "rnn_attn", significant, "test/bleu") == \
        "encdec > rnn_attn by 6.1 BLEU (95 % CI 5.2–7.0, paired bootstrap p < 0.001)"
    worse = {"delta": -6.1, "ci": (-7.0, -5.2), "p": 0.0009990, "test": "paired bootstrap", "p_ar": 0.0001}
    assert stats.claim("rnn_attn", "encdec", worse, "test/bleu") == ("encdec > rnn_attn by 6.1 BLEU (95 % CI "
                                                                     "5.2–7.0, paired bootstrap p < 0.001; "
                                                                     "approximate randomization p < 0.001)")
    flat = {"delta": 0.4, "ci": (-0.3, 1.1), "p": 0.31, "test": "paired bootstrap"}
    assert stats.claim("encdec", "rnn_attn", flat, "test/bleu") == \
        "encdec vs rnn_attn: +0.4 BLEU, not significant (95 % CI −0.3 to 1.1, paired bootstrap p = 0.31)"


def test_number_formatting():
    assert fmt(908800, 0) == "908,800" and fmt(908800) == "908,800"
    assert fmt(10750.2, 460.4) == "10,750 ± 460"
    assert fmt(31.4523, 0.4123) == "31.45 ± 0.41" and fmt(0.81234, None) == "0.8123" and fmt(None) == "—"


def test_ct2_entries_are_measures_beside_ours():
    decode = {"latency_ms_batch1": 9.0, "by_batch": [{"batch_size": 1, "mode": "fixed", "ms_per_sentence": 8.0,
                                                      "tokens_per_s": 1000.0},
                                                     {"batch_size": 4, "mode": "fixed", "ms_per_sentence": 2.0,
                                                      "tokens_per_s": 4000.0}],
              "ct2_int8": {"by_batch": [{"batch_size": 1, "mode": "fixed", "ms_per_sentence": 0.2, "tokens_per_s": 4e4},
                                        {"batch_size": 4, "mode": "fixed", "ms_per_sentence": 0.3,
                                         "tokens_per_s": 2e4}]}}
    got = measures({"inference": {"decode": decode}, "metrics": {}})
    assert (got["ct2_int8/latency_ms"], got["ct2_int8/tokens_per_s"]) == (0.2, 2e4)
    assert (got["decode/fixed_latency_ms"], got["decode/fixed_tokens_per_s"]) == (8.0, 4000.0)
    assert "ct2_int8/latency_ms" not in measures({"inference": {"decode": {"latency_ms_batch1": 9.0}}})


def test_latency_is_compared_only_on_one_machine():
    amd, intel = {"AMD EPYC"}, {"Intel(R) Xeon(R) Processor"}
    wins, _ = latency_wins({"a": ([10.0], [0.05], amd), "b": ([20.0], [0.05], amd), "c": ([30.0], [0.05], intel),
                             "d": ([5.0, 6.0], [0.05, 0.05], amd | intel)})
    assert wins["a", "b"] == "win" and wins["b", "a"] == "loss"
    assert wins["a", "c"] == wins["c", "b"] == wins["d", "a"] == wins["d", "c"] == "n/a"


def test_report_with_baseline(sweep, tmp_path):
    out = report_cli(sweep, "--baseline", "arch=rnn_attn", "--no-wandb-log", tmp_home=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {r["label"]: r for r in csv.DictReader((sweep / "report" / "report.csv").open())}
    assert set(rows) == {"arch=encdec", "arch=rnn_attn"}
    enc = rows["arch=encdec"]
    assert float(enc["metric_ci_low"]) < float(enc["metric_mean"]) < float(enc["metric_ci_high"])
    assert enc["metric_ci_kind"] == "t over 2 seeds" and float(enc["p_vs_baseline"]) < 0.01
    assert float(enc["delta_vs_baseline_ci_low"]) < float(enc["delta_vs_baseline"]) < float(
        enc["delta_vs_baseline_ci_high"])
    assert rows["arch=rnn_attn"]["p_vs_baseline"] == ""
    runs = list(csv.DictReader((sweep / "report" / "runs.csv").open()))
    assert len(runs) == 4 and all(float(r["metric_ci_low"]) < float(r["metric"]) < float(r["metric_ci_high"])
                                  for r in runs)
    md = (sweep / "report" / "report.md").read_text()
    assert "- arch=encdec > arch=rnn_attn by " in md and "paired bootstrap p < 0.001" in md
    assert "908,800 |" in md and "± 0 " not in md and "tok:13a" in md
    assert "| arch=encdec | · | win | 1 |" in md  # quality and latency: encdec wins both
    assert md.count("| arch=encdec | · | win | 1 |") == 2


def test_runs_without_predictions_have_no_ci(sweep, tmp_path):
    for path in sweep.glob("*/hypotheses.jsonl"):
        path.unlink()
    out = report_cli(sweep, "--baseline", "arch=rnn_attn", "--no-wandb-log", tmp_home=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = list(csv.DictReader((sweep / "report" / "runs.csv").open()))
    assert all(r["metric_ci_low"] == "" for r in runs)
    md = (sweep / "report" / "report.md").read_text()
    assert "no per-example predictions: no CI" in md and "no paired test" in md


def test_bad_baseline_is_one_line_exit_2(sweep, tmp_path):
    for spec, words in (("colour=red", ("colour", "arch")), ("arch=transformer", ("transformer", "encdec, rnn_attn")),
                        ("arch", ("KEY=VALUE",)), ("data=synthetic", ("matches 2 configurations",))):
        out = report_cli(sweep, "--baseline", spec, "--no-wandb-log", tmp_home=tmp_path)
        assert out.returncode == 2 and out.stderr.startswith("error: "), out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and all(w in out.stderr for w in words), out.stderr
    assert not (sweep / "report").exists()


def test_identical_systems_are_not_significant(tmp_path):
    refs = references(40)
    hyps = noisy(refs, 0.3, 5)
    a = stats.load_examples(tmp_path / "a", translation_run(tmp_path, "a", hyps, refs), None)
    b = stats.load_examples(tmp_path / "b", translation_run(tmp_path, "b", hyps, refs), None)
    got = stats.compare({0: a}, {0: b})
    assert (got["delta"], got["p"], got["p_ar"]) == (0.0, 1.0, 1.0)
    assert "not significant" in stats.claim("b", "a", got, "test/bleu")


def test_classification_report_against_a_baseline(tmp_path):
    """Two classification configurations (differing only in optim.lr) with predictions.jsonl: the paired bootstrap
    and McNemar's test against --baseline, in report.csv and in words."""
    rng = random.Random(0)
    labels = [rng.randint(0, 1) for _ in range(300)]
    for lr, accuracy in ((1e-3, 0.9), (2e-3, 0.6)):
        run = tmp_path / "sweep" / f"lr{lr}"
        run.mkdir(parents=True)
        preds = [y if rng.random() < accuracy else 1 - y for y in labels]
        config = {**copy.deepcopy(CONFIG), "task": {"name": "classification", "metric": "test/accuracy"},
                  "optim": {"lr": lr}}
        (run / "results.json").write_text(json.dumps({
            "arch": "encoder", "task": "classification", "data": "synthetic", "size": "tiny", "seed": 0,
            "headline_metric": "test/accuracy", "config": config, "params": 1000,
            "metrics": {"test/accuracy": sum(p == y for p, y in zip(preds, labels)) / len(labels)}}))
        (run / "predictions.jsonl").write_text("".join(json.dumps({"id": i, "label": y, "prediction": p,
                                                                   "probs": [0.5, 0.5]}) + "\n"
                                                       for i, (p, y) in enumerate(zip(preds, labels))))
    out = report_cli(tmp_path / "sweep", "--baseline", "optim.lr=0.002", "--no-wandb-log", tmp_home=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {r["label"]: r for r in csv.DictReader((tmp_path / "sweep" / "report" / "report.csv").open())}
    assert set(rows) == {"optim.lr=0.001", "optim.lr=0.002"}
    better = rows["optim.lr=0.001"]
    assert float(better["p_vs_baseline"]) < 0.01 and float(better["p_mcnemar_vs_baseline"]) < 0.01
    assert float(better["delta_vs_baseline"]) == pytest.approx(float(better["metric_mean"]) -
                                                               float(rows["optim.lr=0.002"]["metric_mean"]))
    assert better["metric_ci_kind"] == "bootstrap over test examples"
    md = (tmp_path / "sweep" / "report" / "report.md").read_text()
    assert "- optim.lr=0.001 > optim.lr=0.002 by 0." in md and "accuracy (95 % CI" in md and "McNemar p < 0.001" in md
