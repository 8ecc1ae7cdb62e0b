"""Model FLOPs (src/speed/flops.py): a case computed by hand, and the analytic count of every arch against torch's
own count of the matmuls of a real forward pass (FlopCounterMode), nothing timed."""
import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from src.models.attention import MultiHeadAttention
from src.models.nar import CMLM
from src.models.rnn_attn import RNNAttention
from src.models.transformer import DecoderClassifier, DecoderLM, EncoderClassifier, EncoderDecoder, PrefixLM
from src.speed.flops import flops_per_token, forward_flops, train_flops

V, D, H, L, F, B, S, T, C = 40, 16, 4, 2, 48, 3, 7, 5, 3


def test_mfu_formula_on_a_hand_computed_case():
    # encdec, 1 layer, d=2, f=4, V=10, S=3, T=2, batch 1:
    # encoder per token: 2·4·4 + 2·2·2·4 + 2·2·2·3 = 32+32+24 = 88, × 3 tokens = 264
    # decoder per token: 32 + 32 + 2·2·2·2 (self, 2 keys) + 2·2·4 (cross q,out) + 2·2·2·3 (cross scores)
    #   = 32+32+16+16+24 = 120, × 2 tokens = 240; cross k,v per source token 2·2·4 = 16, × 3 = 48
    # LM head: 2 · 2·2·10 = 80.  Total 264 + 240 + 48 + 80 = 632
    assert forward_flops("encdec", 2, 4, 1, 10, 1, 3, 2) == 632
    assert train_flops("encdec", 2, 4, 1, 10, 5, 3, 2) == 3 * 5 * 632


def test_rnn_formula_on_a_hand_computed_case():
    # GRU (3 gates), 1 layer, d=2, V=10, S=3, T=2, bahdanau, batch 1:
    # encoder per source token: 2 directions · (2·3·2·2 + 2·3·2·2) = 96, W_p 2·4·2 = 16, W₁ 2·2·2 = 8 -> 120 × 3 = 360
    # bridge: 2·4·2 = 16
    # decoder per step: RNN 2·3·2·4 + 2·3·2·2 = 72, W₂ 8, vᵀ 2·2·3 = 12, c_t 12, W_c 16, W_o 2·2·10 = 40 -> 160 × 2 = 320
    assert forward_flops("rnn_attn", 2, 0, 1, 10, 1, 3, 2) == 360 + 16 + 320
    # rnn_seq2seq: no W₁ (3 × 8), no W₂, vᵀ, c_t (2 × 32)
    assert forward_flops("rnn_seq2seq", 2, 0, 1, 10, 1, 3, 2) == 360 + 16 + 320 - 24 - 64


def explicit(model: torch.nn.Module) -> torch.nn.Module:
    """The model with every attention on its explicit matmul path (FlopCounterMode does not count CPU SDPA)."""
    for m in model.modules():
        if isinstance(m, MultiHeadAttention):
            m.keep_weights = True
    return model


def counted(fn) -> int:
    """torch's count of the matmul FLOPs of fn() (mm, addmm, bmm), oneDNN off so the LSTM is dispatched through the
    matmuls it is made of."""
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def tokens(*shape):
    return torch.randint(5, V, shape)  # no <pad>: every position is real, as the analytic count assumes


def cases():
    src, tgt, seq = tokens(B, S), tokens(B, T), tokens(B, S)
    kw = dict(vocab_size=V, d_model=D, n_heads=H, n_layers=L, d_ff=F, dropout=0.0)
    cases = {
        "encdec": (lambda: explicit(EncoderDecoder(**kw))(src, tgt), forward_flops("encdec", D, F, L, V, B, S, T)),
        "decoder/translation": (lambda: explicit(PrefixLM(**kw))(src, tgt),
                                forward_flops("decoder", D, F, L, V, B, S, T)),
        "decoder/lm": (lambda: explicit(DecoderLM(**kw))(seq),
                       forward_flops("decoder", D, F, L, V, B, S, 0, task="lm")),
        "decoder/classification": (lambda: explicit(DecoderClassifier(n_classes=C, **kw))(seq),
                                   forward_flops("decoder", D, F, L, V, B, S, 0, C, task="classification")),
        "encoder": (lambda: explicit(EncoderClassifier(n_classes=C, **kw))(seq),
                    forward_flops("encoder", D, F, L, V, B, S, 0, C, task="classification")),
        "nar": (lambda: explicit(CMLM(max_length=16, **kw)).loss(src, tgt),  # the training pass: tokens + length head
                forward_flops("nar", D, F, L, V, B, S, T, length_classes=17)),
    }
    for cell in ("gru", "lstm"):
        for attention in ("bahdanau", "dot", "general", "none"):
            cases[f"rnn_attn/{cell}/{attention}"] = (
                lambda c=cell, a=attention: RNNAttention(V, D, L, 0.0, cell=c, attention=a)(src, tgt),
                forward_flops("rnn_attn", D, F, L, V, B, S, T, cell=cell, attention=attention))
    return cases


@pytest.mark.parametrize("name", list(cases()))
def test_forward_flops_match_a_count_of_the_real_forward_pass(name):
    torch.manual_seed(0)
    fn, analytic = cases()[name]
    measured = counted(fn)
    assert analytic == pytest.approx(measured, rel=0.03), (name, analytic, measured)


def test_flops_per_token_averages_each_example_at_its_own_length():
    lengths = {"src": np.array([3, 9]), "tgt": np.array([2, 8])}
    size, per = {"d_model": D, "d_ff": F, "n_layers": L}, {}
    for arch in ("encdec", "rnn_attn", "decoder"):
        fpt = flops_per_token(arch, "translation", size, {}, V, 0, lengths)
        by_hand = sum(forward_flops(arch, D, F, L, V, 1, s, t + 1) for s, t in zip([3, 9], [2, 8]))
        assert fpt == pytest.approx(3 * by_hand / (3 + 2 + 9 + 8))
        per[arch] = fpt
    assert len(set(per.values())) == 3  # the archs differ in cost per token
