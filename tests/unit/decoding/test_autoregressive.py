"""Greedy, beam and sampling search (src/decoding/autoregressive.py), also through the one generate() interface."""

import pytest
import torch

from src.config import DecodeConfig
from src.decoding import generate
from src.decoding.autoregressive import beam_search, constrain_repeats, greedy, length_penalty_of, sample
from src.models.rnn_attn import RNNAttention
from src.models.transformer import EncoderDecoder, PrefixLM
from src.models.vocab import BOS, EOS, PAD

V = 30
SIZE = dict(d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0)
MODELS = [EncoderDecoder, PrefixLM, RNNAttention]


class BigramTable(torch.nn.Module):
    """A constructed decoder whose next-token distribution depends only on the previous token."""

    def __init__(self, probs: dict[int, dict[int, float]], vocab: int = 8):
        super().__init__()
        table = torch.full((vocab, vocab), 1e-9)
        for prev, row in probs.items():
            for tok, p in row.items():
                table[prev, tok] = p
        self.logp = table.log()

    def prefill(self, src, max_new_tokens):
        state = {"last": torch.full((src.size(0),), BOS)}
        return self.logp[state["last"]], state

    def step(self, tokens, state):
        state["last"] = tokens
        return self.logp[tokens]

    def reorder_state(self, state, index, same_source=False):
        state["last"] = state["last"][index]

    def score(self, hyp: list[int]) -> float:
        prev, total = BOS, 0.0
        for tok in hyp:
            total += self.logp[prev, tok].item()
            if tok == EOS:
                break
            prev = tok
        return total


# From <bos>: stop at once (p=.5) or start "5 6 <eos>" (.45 · .8 · .9 = .324): short wins on log P, long wins
# once the GNMT length penalty with α = 2 divides by ((5+|Y|)/6)^α.
TABLE = {BOS: {EOS: 0.5, 5: 0.45, 7: 0.05}, 5: {6: 0.8, 7: 0.2}, 6: {EOS: 0.9, 7: 0.1}, 7: {EOS: 1.0}}


def src_batch():
    src = torch.randint(5, V, (3, 6))
    src[1, 4:] = PAD
    src[2, 2:] = PAD
    return src


@pytest.mark.parametrize("model_cls", MODELS)
def test_beam_size_one_equals_greedy(model_cls):
    model = model_cls(vocab_size=V, **SIZE).eval()
    src = src_batch()
    best, _ = beam_search(model, src, 12, beam_size=1, length_penalty=1.0)
    g = greedy(model, src, 12)
    assert torch.equal(best[:, 0, : g.size(1)], g)
    assert torch.equal(generate(model, src, DecodeConfig(method="beam", beam_size=1), 12)[:, : g.size(1)], g)


@pytest.mark.parametrize("model_cls", MODELS)
def test_beam_returns_k_hypotheses_sorted_by_score(model_cls):
    model = model_cls(vocab_size=V, **SIZE).eval()
    hyps, scores = beam_search(model, src_batch(), 8, beam_size=4)
    assert hyps.shape[:2] == (3, 4) and scores.shape == (3, 4)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    assert torch.isfinite(scores).all()
    assert len({tuple(h.tolist()) for h in hyps[0]}) == 4  # k distinct hypotheses


def test_beam_scores_are_length_normalised_log_probabilities():
    table = BigramTable(TABLE)
    src = torch.zeros(1, 3, dtype=torch.long)
    for alpha in (0.0, 1.0, 2.0):
        hyps, scores = beam_search(table, src, 6, beam_size=2, length_penalty=alpha)
        for hyp, score in zip(hyps[0].tolist(), scores[0].tolist()):
            n = hyp.index(EOS) + 1 if EOS in hyp else len([t for t in hyp if t != PAD])
            assert score == pytest.approx(table.score(hyp) / ((5 + n) / 6) ** alpha, abs=1e-4)


def test_length_penalty_changes_the_ranking():
    table = BigramTable(TABLE)
    src = torch.zeros(1, 3, dtype=torch.long)
    short, _ = beam_search(table, src, 6, beam_size=2, length_penalty=0.0)
    long, _ = beam_search(table, src, 6, beam_size=2, length_penalty=2.0)
    assert short[0, 0].tolist()[:1] == [EOS]
    assert long[0, 0].tolist()[:3] == [5, 6, EOS]
    assert greedy(table, src, 6)[0].tolist() == [EOS]
    assert length_penalty_of(torch.tensor(3), 2.0).item() == pytest.approx((8 / 6) ** 2)


def test_beam_stops_early_once_every_hypothesis_ended():
    table = BigramTable(TABLE)
    hyps, _ = beam_search(table, torch.zeros(2, 3, dtype=torch.long), 50, beam_size=2)
    assert hyps.size(-1) == 3  # "5 6 <eos>" is the longest hypothesis: no 50-step loop


@pytest.mark.parametrize("model_cls", MODELS)
def test_sampling_is_seeded_and_top_k_1_is_greedy(model_cls):
    model = model_cls(vocab_size=V, **SIZE).eval()
    src = src_batch()
    a = sample(model, src, 10, temperature=2.0, seed=7)
    b = sample(model, src, 10, temperature=2.0, seed=7)
    c = sample(model, src, 10, temperature=2.0, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = greedy(model, src, 10)
    k1 = sample(model, src, 10, temperature=1.5, top_k=1, seed=3)
    assert torch.equal(k1[:, : g.size(1)], g)
    p0 = sample(model, src, 10, top_p=1e-6, seed=3)
    assert torch.equal(p0[:, : g.size(1)], g)


def test_top_p_keeps_only_the_nucleus():
    table = BigramTable({BOS: {EOS: 0.5, 5: 0.45, 7: 0.05}, 5: {EOS: 1.0}, 7: {EOS: 1.0}})
    src = torch.zeros(400, 1, dtype=torch.long)
    first = sample(table, src, 3, top_p=0.9, seed=0)[:, 0]
    assert set(first.tolist()) == {EOS, 5}  # 7 lies outside the 0.9 nucleus
    assert abs((first == EOS).float().mean().item() - 0.5 / 0.95) < 0.08


def test_outputs_end_with_eos_then_pad_only():
    model = EncoderDecoder(vocab_size=V, **SIZE).eval()
    for out in (greedy(model, src_batch(), 10), sample(model, src_batch(), 10, seed=1)):
        for row in out.tolist():
            if EOS in row:
                assert all(t == PAD for t in row[row.index(EOS) + 1 :])
            assert BOS not in row


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="topk"):
        DecodeConfig(method="topk")  # the config names the valid methods
    with pytest.raises(ValueError, match="greedy, beam, sample"):  # a method of another family
        generate(EncoderDecoder(vocab_size=V, **SIZE), src_batch(), DecodeConfig(method="mask_predict"), 12)


LOOP = {BOS: {5: 0.9, 7: 0.1}, 5: {6: 0.9, 7: 0.1}, 6: {5: 0.9, EOS: 0.1}, 7: {EOS: 1.0}}  # greedy: 5 6 5 6 ...


def _ngrams(row: list[int], n: int) -> list[tuple[int, ...]]:
    row = [t for t in row if t not in (PAD, EOS)]
    return [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_no_repeat_ngram_size_stops_a_loop(method):
    model, src = BigramTable(LOOP), torch.zeros(1, 3, dtype=torch.long)
    looping = generate(model, src, DecodeConfig(method=method, beam_size=2), 12)[0].tolist()
    assert len(_ngrams(looping, 2)) > len(set(_ngrams(looping, 2)))  # without the ban: 5 6 5 6 ...
    for n in (1, 2, 3):
        out = generate(model, src, DecodeConfig(method=method, beam_size=2, no_repeat_ngram_size=n), 12)[0].tolist()
        grams = _ngrams(out, n)
        assert len(grams) == len(set(grams)), (n, out)
    banned = generate(model, src, DecodeConfig(method=method, beam_size=2, no_repeat_ngram_size=2), 12)
    assert banned[0].tolist() == [5, 6, 5, 7, EOS]


def test_repetition_penalty_follows_ctrl():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    out = constrain_repeats(logits, torch.tensor([[0, 1, 1]]), repetition_penalty=2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, 0.5]]  # seen tokens: positive halved, negative doubled, once each
    model, src = BigramTable(LOOP), torch.zeros(1, 3, dtype=torch.long)
    out = generate(model, src, DecodeConfig(repetition_penalty=1e6), 12)[0].tolist()
    assert out == [5, 6, EOS]  # 5 after 6 is now worse than <eos>


def test_repetition_controls_are_validated():
    from src.config import ConfigError

    with pytest.raises(ConfigError, match="no_repeat_ngram_size"):
        DecodeConfig(no_repeat_ngram_size=-1)
    with pytest.raises(ConfigError, match="repetition_penalty"):
        DecodeConfig(repetition_penalty=0.5)
