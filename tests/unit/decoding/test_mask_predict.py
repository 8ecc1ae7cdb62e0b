"""Mask-predict (src/decoding/mask_predict.py) on the CMLM: at most `passes` decoder calls, the predicted length,
the length beam (Mask-Predict §3.3) and the consecutive-repeat collapse (decode.dedup)."""
import pytest
import torch

from src.config import ConfigError, DecodeConfig
from src.decoding import generate
from src.decoding.autoregressive import forbid_special
from src.decoding.mask_predict import dedup_consecutive, length_candidates, mask_predict, refine
from src.models.vocab import MASK, PAD
from tests.unit.models.test_nar import make_model, random_src


def count_calls(module, fn):
    calls = []
    handle = module.register_forward_hook(lambda *_: calls.append(1))
    try:
        out = fn()
    finally:
        handle.remove()
    return len(calls), out


@torch.no_grad()
def mask_predict_before_length_beam(model, src, passes=1):
    """The decoding as it was before the length beam (argmax length only), kept verbatim as the reference."""
    memory, memory_mask = model.encode(src)
    lengths = model.predict_length(memory, memory_mask).clamp(min=1)
    t_max = int(lengths.max())
    real = torch.arange(t_max)[None] < lengths[:, None]
    tokens = torch.where(real, MASK, PAD)
    probs = torch.zeros(tokens.shape)
    for t in range(passes):
        masked = tokens == MASK
        p, pred = forbid_special(model.predict(tokens, memory, memory_mask).float()).softmax(-1).max(-1)
        tokens = torch.where(masked, pred, tokens)
        probs = torch.where(masked, p, probs)
        n_mask = (lengths.float() * (passes - 1 - t) / passes).long()
        if t == passes - 1 or int(n_mask.max()) == 0:
            break
        conf = probs.masked_fill(~real, float("inf"))
        rank = conf.argsort(-1).argsort(-1)
        tokens = torch.where(rank < n_mask[:, None], MASK, tokens)
    return tokens


def test_passes_bound_decoder_calls():
    model = make_model().eval()
    src = random_src()
    n1, _ = count_calls(model.decoder, lambda: mask_predict(model, src, passes=1))
    n4, _ = count_calls(model.decoder, lambda: mask_predict(model, src, passes=4))
    assert n1 == 1
    assert 1 <= n4 <= 4


def test_length_beam_runs_the_encoder_once_and_the_decoder_on_b_times_l_rows():
    model = make_model().eval()
    src = random_src()
    rows = []
    handle = model.decoder.register_forward_hook(lambda _m, args, _o: rows.append(args[0].size(0)))
    try:
        n_enc, _ = count_calls(model.encoder, lambda: mask_predict(model, src, passes=4, length_beam=5))
    finally:
        handle.remove()
    assert n_enc == 1
    assert 1 <= len(rows) <= 4 and set(rows) == {src.size(0) * 5}


@pytest.mark.parametrize("passes", [1, 2, 3, 4, 5])
def test_output_length_is_predicted_length(passes):
    model = make_model().eval()
    src = random_src()
    with torch.no_grad():
        predicted = model.predict_length(*model.encode(src)).clamp(min=1)
    out = generate(model, src, DecodeConfig(method="mask_predict", passes=passes, length_beam=1), 64)
    assert torch.equal((out != PAD).sum(1), predicted)
    assert not (out == MASK).any()
    assert out.size(1) == int(predicted.max())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("passes", [1, 2, 4, 10])
def test_length_beam_of_one_is_the_decoding_before_it(seed, passes):
    model = make_model(seed, max_length=12).eval()
    src = random_src(seed + 10)
    assert torch.equal(mask_predict(model, src, passes, length_beam=1),
                       mask_predict_before_length_beam(model, src, passes))


@pytest.mark.parametrize("passes", [1, 4])
def test_length_beam_keeps_the_candidate_of_best_average_log_prob(passes):
    model = make_model(3).eval()
    src = random_src(4)
    out = mask_predict(model, src, passes, length_beam=5)
    with torch.no_grad():
        memory, memory_mask = model.encode(src)
        candidates = length_candidates(model.length_logits(memory, memory_mask), 5)
    chosen_lengths = (out != PAD).sum(1)
    for b in range(src.size(0)):
        scored = []
        for length in candidates[b].tolist():  # each candidate decoded on its own
            with torch.no_grad():
                tokens, logp = refine(model, memory[b : b + 1], memory_mask[b : b + 1], torch.tensor([length]), passes)
            scored.append((logp.sum().item() / length, tokens[0]))
        best = max(range(len(scored)), key=lambda j: scored[j][0])
        assert chosen_lengths[b].item() == candidates[b, best].item()
        assert torch.equal(out[b, : chosen_lengths[b]], scored[best][1])
        assert scored[best][0] >= scored[0][0]  # never worse than the argmax length alone


def test_length_beam_changes_the_output_length_of_some_sentence():
    """Not a no-op on a random model: the argmax length is not always the best-scored candidate."""
    model = make_model(3).eval()
    src = random_src(4)
    with torch.no_grad():
        argmax = model.predict_length(*model.encode(src)).clamp(min=1)
    assert not torch.equal((mask_predict(model, src, 4, length_beam=5) != PAD).sum(1), argmax)


def test_length_candidates_are_the_top_lengths_clamped_to_one():
    logits = torch.tensor([[5.0, 1.0, 4.0, 3.0, 0.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    assert length_candidates(logits, 3).tolist() == [[1, 2, 3], [4, 3, 2]]  # L = 0 counts as L = 1
    assert length_candidates(logits, 1).tolist() == [[1], [4]]
    assert length_candidates(logits, 99).size(1) == 5


def test_fixed_length_mode_forces_every_candidate():
    model = make_model().eval()
    src = random_src()
    out = generate(model, src, DecodeConfig(method="mask_predict", passes=4, length_beam=5), 9, fixed_length=True)
    assert out.shape == (src.size(0), 9) and not (out == PAD).any()


@pytest.mark.parametrize("length_beam, dedup", [(1, False), (5, False), (5, True)])
def test_batch_equals_per_sentence(length_beam, dedup):
    model = make_model(5).eval()
    src = random_src(6)
    decode = DecodeConfig(method="mask_predict", passes=4, length_beam=length_beam, dedup=dedup)
    batch = generate(model, src, decode, 64)
    for b in range(src.size(0)):
        alone = generate(model, src[b : b + 1, : int((src[b] != PAD).sum())], decode, 64)[0]
        assert batch[b, : alone.numel()].tolist() == alone.tolist()
        assert (batch[b, alone.numel() :] == PAD).all()


def test_dedup_collapses_consecutive_repeats_only():
    a, b, c = 7, 8, 9
    tokens = torch.tensor([[a, a, b, a, a, a], [a, b, c, a, b, c], [c, c, PAD, PAD, PAD, PAD], [b, PAD, PAD, PAD, PAD, PAD]])
    out = dedup_consecutive(tokens)
    assert out.tolist() == [[a, b, a, PAD, PAD, PAD], [a, b, c, a, b, c], [c, PAD, PAD, PAD, PAD, PAD],
                            [b, PAD, PAD, PAD, PAD, PAD]]
    assert dedup_consecutive(torch.tensor([[a, a, a], [a, a, a]])).tolist() == [[a], [a]]  # trimmed to the longest


def test_dedup_in_generate_leaves_no_consecutive_repeat():
    model = make_model(3).eval()
    src = random_src(4)
    plain = generate(model, src, DecodeConfig(method="mask_predict", passes=1, length_beam=5), 64)
    out = generate(model, src, DecodeConfig(method="mask_predict", passes=1, length_beam=5, dedup=True), 64)
    assert ((plain[:, 1:] == plain[:, :-1]) & (plain[:, 1:] != PAD)).any()  # the random model repeats itself
    assert not ((out[:, 1:] == out[:, :-1]) & (out[:, 1:] != PAD)).any()
    assert torch.equal(out, dedup_consecutive(plain))


def test_length_beam_below_one_is_refused():
    with pytest.raises(ConfigError, match="decode.length_beam=0 must be >= 1"):
        DecodeConfig(method="mask_predict", length_beam=0)
