import itertools

import pytest
import torch
import torch.nn.functional as F

from src.config import DecodeConfig
from src.decoding import autoregressive, generate
from src.decoding.autoregressive import beam_search, greedy
from src.models.rnn_attn import RNNAttention
from src.models.vocab import BOS, EOS, PAD

V = 20
COMBOS = list(itertools.product(["gru", "lstm"], ["bahdanau", "dot", "general"]))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread is faster and immune to a busy second core."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_model(cell="gru", attention="bahdanau", seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"d_model": 16, "n_layers": 2, "dropout": 0.1, **kw}
    return RNNAttention(V, cell=cell, attention=attention, n_heads=4, d_ff=64, norm_first=True, tie_weights=True, **kw).eval()


def padded_batch(seed=0):
    """src (3, 6) with lengths 6, 3, 1 (right-padded); tgt_in (3, 4) = <bos> y… with one padded row."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(5, V, (3, 6), generator=g)
    src[1, 3:] = PAD
    src[2, 1:] = PAD
    tgt = torch.randint(5, V, (3, 4), generator=g)
    tgt[:, 0] = BOS
    tgt[2, 2:] = PAD
    return src, tgt


@pytest.mark.parametrize("cell,attention", COMBOS)
def test_shapes_and_attention_rows(cell, attention):
    model = make_model(cell, attention)
    src, tgt = padded_batch()
    assert model(src, tgt).shape == (3, 4, V)
    a = model.cross_attention(src, tgt)
    assert a.shape == (3, 4, 6)
    pad = (src == PAD)[:, None, :].expand_as(a)
    assert torch.all(a[pad] == 0)
    torch.testing.assert_close(a.sum(-1), torch.ones(3, 4), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell,attention", COMBOS)
def test_padding_invariance(cell, attention):
    model = make_model(cell, attention)
    src, tgt = padded_batch()
    with torch.no_grad():
        ref = model(src, tgt)
        longer = model(F.pad(src, (0, 5), value=PAD), tgt)
    torch.testing.assert_close(longer, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell,attention", COMBOS)
def test_incremental_equals_teacher_forcing(cell, attention):
    model = make_model(cell, attention)
    src, _ = padded_batch()
    n = 7
    out = greedy(model, src, n)
    tgt_in = torch.cat([torch.full((3, 1), BOS), out[:, :-1]], 1)
    with torch.no_grad():
        full = model(src, tgt_in)
        logits, state = model.prefill(src, n)
        steps = [logits]
        for t in range(out.size(1) - 1):
            steps.append(model.step(tgt_in[:, t + 1], state))
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=0)
    # greedy picks the argmax of the full forward logits (after the search's own special-token filter, if any)
    # until and including each row's <eos>
    allowed = autoregressive.forbid_special
    live = (out == EOS).long().cumsum(1) - (out == EOS).long() == 0
    assert torch.equal(out[live], allowed(full).argmax(-1)[live])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_beam1_equals_greedy_and_search_runs(cell):
    model = make_model(cell, "general", seed=1)
    src, _ = padded_batch(seed=1)
    tokens, scores = beam_search(model, src, 8, beam_size=1)
    assert torch.equal(tokens[:, 0], greedy(model, src, 8))
    tokens, scores = beam_search(model, src, 8, beam_size=3)
    assert tokens.shape[:2] == (3, 3) and torch.all(scores[:, :-1] >= scores[:, 1:])
    assert generate(model, src, DecodeConfig(method="sample", seed=3), 8).shape[0] == 3
    # reorder_state selects batch rows of every state tensor: same as decoding the reordered batch from scratch
    index, tok = torch.tensor([2, 0, 0]), torch.tensor([7, 8, 9])
    with torch.no_grad():
        _, state = model.prefill(src, 8)
        model.reorder_state(state, index)
        _, fresh = model.prefill(src[index], 8)
        torch.testing.assert_close(model.step(tok, state), model.step(tok, fresh), atol=1e-5, rtol=0)


def test_overfit_reversal():
    torch.manual_seed(0)
    n_tok = V - 5  # non-special ids 5..V-1
    perm = torch.randperm(n_tok) + 5
    src = torch.randint(5, V, (8, 5))
    y = perm[src.flip(1) - 5]  # reversed source, mapped by a fixed permutation
    tgt_in = torch.cat([torch.full((8, 1), BOS), y], 1)
    tgt_out = torch.cat([y, torch.full((8, 1), EOS)], 1)
    model = RNNAttention(V, d_model=32, n_layers=1, dropout=0.0, cell="gru", attention="general")
    assert overfit(model, src, tgt_in, tgt_out) < 0.05
    model.eval()
    assert torch.equal(greedy(model, src, 10), tgt_out)


def test_invalid_choices():
    with pytest.raises(ValueError, match="gru, lstm"):
        RNNAttention(V, 16, 1, cell="rnn")
    with pytest.raises(ValueError, match="bahdanau, dot, general"):
        RNNAttention(V, 16, 1, attention="concat")


def test_no_attention_reads_the_source_only_through_the_final_state():
    """attention=none (Sutskever et al. 2014): the per-position encoder outputs (enc_proj) never reach the output."""
    src, tgt = padded_batch()
    for attention, changes in (("none", False), ("bahdanau", True)):
        model = make_model("gru", attention)
        with torch.no_grad():
            before = model(src, tgt)
            model.enc_proj.weight.normal_()  # perturb h_s = W_p[→h; ←h]; the final-state bridge W_i is untouched
            after = model(src, tgt)
        assert (not torch.allclose(before, after)) == changes, attention
    assert not make_model("gru", "none").attends


def test_no_attention_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = make_model("gru", "none", dropout=0.0).train()
    src, tgt = padded_batch()
    labels = torch.cat([tgt[:, 1:], torch.full((3, 1), EOS)], 1).masked_fill(tgt == PAD, PAD)
    assert overfit(model, src, tgt, labels) < 0.05


def overfit(model, src, tgt_in, labels, steps=150) -> float:
    """Adam (lr 1e-2) on one batch with teacher forcing; returns the last loss."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(model(src, tgt_in).flatten(0, 1), labels.flatten(), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()
