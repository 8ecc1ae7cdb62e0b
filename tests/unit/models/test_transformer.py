"""Masks, padding and the KV cache of the transformer families (src/models/transformer.py)."""
import pytest
import torch

from src.decoding.autoregressive import greedy
from src.models.transformer import (DecoderClassifier, DecoderLM, EncoderClassifier, EncoderDecoder, PrefixLM,
                                    Stack, left_pad)
from src.models.vocab import BOS, PAD

V = 30
SIZE = dict(d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0)


def tokens(b, t, lengths=None):
    x = torch.randint(5, V, (b, t))
    for i, n in enumerate(lengths or []):
        x[i, n:] = PAD
    return x


@pytest.mark.parametrize("norm_first", [True, False])
def test_causal_decoder_future_tokens_never_change_the_past(norm_first):
    stack = Stack(V, **SIZE, norm_first=norm_first, causal=True, cross_attention=False).eval()
    x = tokens(3, 12)
    y = x.clone()
    y[:, 7:] = torch.randint(5, V, (3, 5))
    out_x, out_y = stack(x), stack(y)
    torch.testing.assert_close(out_x[:, :7], out_y[:, :7], atol=1e-6, rtol=0)
    assert (out_x[:, 7:] - out_y[:, 7:]).abs().max() > 1e-3  # the changed positions did change


def test_encoder_is_bidirectional_a_late_token_changes_early_outputs():
    stack = Stack(V, **SIZE, norm_first=True, causal=False, cross_attention=False).eval()
    x = tokens(2, 10)
    y = x.clone()
    y[:, -1] = (x[:, -1] - 5 + 1) % (V - 5) + 5  # a different real token at the last position
    diff = (stack(x)[:, 0] - stack(y)[:, 0]).abs().max()
    assert diff > 1e-3


@pytest.mark.parametrize("model_cls", [EncoderClassifier, DecoderClassifier, DecoderLM])
def test_single_sequence_models_are_padding_invariant(model_cls):
    model = model_cls(vocab_size=V, n_classes=3, **SIZE).eval()
    x = tokens(3, 8, lengths=[8, 5, 2])
    padded = torch.cat([x, torch.full((3, 6), PAD)], 1)
    out, out_padded = model(x), model(padded)
    if out.dim() == 3:  # LM: compare real positions only
        real = x != PAD
        out, out_padded = out[real], out_padded[:, :8][real]
    torch.testing.assert_close(out, out_padded, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_cls", [EncoderDecoder, PrefixLM])
def test_seq2seq_models_are_padding_invariant(model_cls):
    model = model_cls(vocab_size=V, **SIZE).eval()
    src = tokens(3, 7, lengths=[7, 4, 2])
    tgt_in = tokens(3, 5, lengths=[5, 5, 3])
    tgt_in[:, 0] = BOS
    ref = model(src, tgt_in)
    more_src = torch.cat([src, torch.full((3, 4), PAD)], 1)
    more_tgt = torch.cat([tgt_in, torch.full((3, 3), PAD)], 1)
    out = model(more_src, more_tgt)[:, :5]
    real = tgt_in != PAD
    torch.testing.assert_close(ref[real], out[real], atol=1e-5, rtol=0)


def test_a_pad_in_the_source_is_never_attended_by_cross_attention():
    model = EncoderDecoder(vocab_size=V, **SIZE).eval()
    src = tokens(2, 6, lengths=[6, 3])
    tgt_in = torch.full((2, 4), BOS)
    w = model.cross_attention(src, tgt_in)
    assert w.shape == (2, 4, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4))
    assert w[1, :, 3:].abs().max() == 0


@pytest.mark.parametrize("model_cls", [EncoderDecoder, PrefixLM])
def test_kv_cache_decoding_equals_full_recomputation(model_cls):
    """Logits from prefill + step() with the static KV cache equal a full teacher-forced pass (atol 1e-5)."""
    model = model_cls(vocab_size=V, **SIZE).eval()
    src = tokens(3, 7, lengths=[7, 4, 3])
    out = greedy(model, src, 9)
    tgt_in = torch.cat([torch.full((3, 1), BOS), out[:, :-1]], 1)
    full = model(src, tgt_in)
    logits, state = model.prefill(src, 9)
    steps = [logits]
    for t in range(out.size(1) - 1):
        steps.append(model.step(out[:, t], state))
    incremental = torch.stack(steps, 1)
    real = tgt_in != PAD
    torch.testing.assert_close(incremental[real], full[real], atol=1e-5, rtol=1e-5)


def test_lm_kv_cache_with_left_padded_prompts_equals_full_recomputation():
    model = DecoderLM(vocab_size=V, **SIZE).eval()
    seqs = [tokens(1, n)[0] for n in (6, 3)]
    prompt = torch.stack([torch.cat([torch.full((6 - len(s),), PAD), s]) for s in seqs])  # left-padded
    logits, state = model.prefill(prompt, 4)
    nxt = torch.randint(5, V, (2, 3))
    steps = [logits] + [model.step(nxt[:, t], state) for t in range(3)]
    for i, s in enumerate(seqs):  # each row alone, unpadded, recomputed from scratch
        full = model(torch.cat([s, nxt[i]])[None])[0, len(s) - 1 :]
        torch.testing.assert_close(torch.stack([st[i] for st in steps]), full, atol=1e-5, rtol=1e-5)


def test_left_pad_moves_each_source_to_the_right_and_appends():
    src = torch.tensor([[5, 6, 7], [8, 9, PAD], [10, PAD, PAD]])
    assert left_pad(src, BOS).tolist() == [[5, 6, 7, BOS], [PAD, 8, 9, BOS], [PAD, PAD, 10, BOS]]


def test_post_ln_and_pre_ln_differ_and_both_train():
    src = tokens(4, 5)
    tgt_in = torch.cat([torch.full((4, 1), BOS), src[:, :4]], 1)
    for norm_first in (True, False):
        torch.manual_seed(0)
        model = EncoderDecoder(vocab_size=V, **SIZE, norm_first=norm_first)
        opt = torch.optim.Adam(model.parameters(), 3e-3)
        losses = []
        for _ in range(60):
            loss = torch.nn.functional.cross_entropy(model(src, tgt_in).flatten(0, 1), src.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.2 * losses[0], (norm_first, losses[0], losses[-1])


def test_cpu_bf16_attention_runs_the_fused_kernel_in_fp32(monkeypatch):
    """Under CPU bf16 autocast (trainer.precision=bf16-mixed) the projections run in bf16, but a training forward
    gives the fused attention kernel fp32 operands (src/models/attention.py: fused_attention): the output is close
    to fp32's and its gradients reach every weight. Without gradients (validation, decoding) it keeps bf16."""
    import torch.nn.functional as F

    from src.models.attention import MultiHeadAttention, causal_mask

    mha = MultiHeadAttention(32, 4)
    x = torch.randn(2, 5, 32)
    reference = mha(x, mask=causal_mask(5)).detach()
    seen, sdpa = [], F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: seen.append((q.dtype, k.dtype, v.dtype)) or sdpa(q, k, v, **kw))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mha(x, mask=causal_mask(5))
    assert seen == [(torch.float32,) * 3] and out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), reference, atol=3e-2), (out.float() - reference).abs().max()
    out.float().square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in mha.parameters())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        mha(x, mask=causal_mask(5))
    assert seen[1:] == [(torch.bfloat16,) * 3]
