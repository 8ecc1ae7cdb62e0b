"""A trained run's inference timing (src/speed/inference.py): fixed-length decoding, no step after the last token,
length-stratified sampling, the by_batch rows of results.json (nothing timed)."""
import torch

from src.config import DecodeConfig
from src.decoding import generate
from src.speed.inference import length_stratified
from src.models.nar import CMLM
from src.models.rnn_attn import RNNAttention
from src.models.transformer import DecoderLM, EncoderDecoder
from src.models.vocab import EOS, PAD

SHAPE = dict(vocab_size=30, d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0)
SRC = torch.randint(5, 30, (3, 5))


def _models():
    torch.manual_seed(0)
    return [EncoderDecoder(**SHAPE), DecoderLM(**SHAPE), RNNAttention(30, 16, 1, dropout=0.0)]


def test_fixed_length_gives_exactly_n_tokens_for_ar_and_nar():
    for model in _models():
        for method in ("greedy", "beam", "sample"):
            out = generate(model.eval(), SRC, DecodeConfig(method=method), 7, fixed_length=True)
            assert out.shape == (3, 7) and not ((out == EOS) | (out == PAD)).any()
    nar = CMLM(**SHAPE).eval()
    for passes in (1, 3):
        out = generate(nar, SRC, DecodeConfig(method="mask_predict", passes=passes), 7, fixed_length=True)
        assert out.shape == (3, 7) and not (out == PAD).any()


def test_no_decoder_step_after_the_last_token():
    for model in _models():
        calls = []
        step = model.step
        model.step = lambda tok, state: calls.append(1) or step(tok, state)
        prefill = model.prefill
        model.prefill = lambda *a: (calls.clear(), prefill(*a), calls.clear())[1]  # count steps after prefill
        generate(model.eval(), SRC, DecodeConfig(), 6, fixed_length=True)
        assert len(calls) == 5  # prefill gives token 1, steps give tokens 2..6
        calls.clear()
        generate(model, SRC, DecodeConfig(method="beam", beam_size=2), 6, fixed_length=True)
        assert len(calls) == 5


def test_stratified_sample_spans_the_length_distribution():
    lengths = sorted([3] * 50 + list(range(4, 40)) + [60] * 2)
    picks = length_stratified(lengths, 16, seed=1)
    got = [lengths[i] for i in picks]
    assert min(got) == 3 and max(got) == 60 and len(set(picks)) == 16
    assert picks == length_stratified(lengths, 16, seed=1)
    assert len(length_stratified(lengths, 1000)) == len(lengths)


def test_run_records_by_batch_rows_capped_by_the_test_set(tmp_path):
    from tests.conftest import run_main

    r = run_main(tmp_path, "arch=nar", "task=translation", "debug=fast", "logger=none", "bench.batch_sizes=[1,8,32]",
                 "bench.fixed_tokens=5", "bench.repeats=1")  # debug=fast: 16 test sentences
    for variant in ("decode", "decode_pass1"):
        speed = r["inference"][variant]
        rows = {(row["batch_size"], row["mode"]): row for row in speed["by_batch"]}
        assert set(rows) == {(b, m) for b in (1, 8, 16) for m in ("natural", "fixed")}
        assert all(rows[b, "fixed"]["output_tokens"] == 5 for b in (1, 8, 16))
        assert speed["threads"] >= 1 and "load_avg_1min" in speed
        assert speed["throughput_batch"] == 16 and speed["latency_ms_batch1"] == rows[1, "natural"]["ms_per_sentence"]
