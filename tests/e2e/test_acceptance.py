"""Acceptance: full-length default runs on the synthetic translation task reach their quality bars, and the
non-autoregressive model decodes faster than the autoregressive one at batch 1 (figures: experiments/README.md)."""
import pytest

from tests.conftest import run_main

pytestmark = pytest.mark.slow

BENCH = "bench.batch_sizes=[1]"  # the latency compared below; the default's larger batches only cost time here


def test_default_encdec_and_nar_quality_and_ar_vs_nar_latency(tmp_path):
    ar = run_main(tmp_path / "encdec", "arch=encdec", "task=translation", "logger=none", BENCH)
    assert ar["size"] == "small" and ar["train"]["steps"] == 1000
    assert ar["metrics"]["test/exact_match"] >= 95.0, ar["metrics"]
    assert ar["metrics"]["test/bleu"] >= 95.0
    nar = run_main(tmp_path / "nar", "arch=nar", "task=translation", "logger=none", BENCH)
    assert {"test/exact_match", "test/bleu", "test/pass1/exact_match", "test/pass1/bleu"} <= set(nar["metrics"])
    assert nar["metrics"]["test/exact_match"] >= 90.0, nar["metrics"]
    one_pass = nar["inference"]["decode_pass1"]["latency_ms_batch1"]
    greedy = ar["inference"]["decode"]["latency_ms_batch1"]
    assert one_pass < greedy, (one_pass, greedy)  # same data, both trained, same process and threads


def test_rnn_attn_reaches_90_percent_exact_match(tmp_path):
    r = run_main(tmp_path, "arch=rnn_attn", "task=translation", "logger=none", BENCH)
    assert r["metrics"]["test/exact_match"] >= 90.0, r["metrics"]
