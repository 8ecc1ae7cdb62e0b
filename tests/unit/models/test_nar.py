"""Behaviour of the CMLM translator (Ghazvininejad et al. 2019, src/models/nar.py); its decoding, mask-predict:
tests/unit/decoding/test_mask_predict.py."""
import pytest
import torch

from src.config import DecodeConfig
from src.decoding import generate
from src.models.nar import CMLM
from src.models.vocab import MASK, PAD

VOCAB, N_SPECIAL = 20, 5


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=VOCAB, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0, max_length=16)
    return CMLM(**{**cfg, **kw}, tie_weights=True, n_classes=3)  # extra kwargs are ignored


def random_src(seed=1, b=4, s=7):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(N_SPECIAL, VOCAB, (b, s), generator=g)
    lengths = torch.tensor([s, s - 2, 3, 1])[:b]
    return src.masked_fill(torch.arange(s)[None] >= lengths[:, None], PAD)


def test_padding_invariance():
    model = make_model().eval()
    src = random_src()
    padded = torch.cat([src, torch.full((src.size(0), 5), PAD)], 1)
    tgt = torch.tensor([[5, MASK, 7, MASK], [MASK, MASK, PAD, PAD], [9, 10, 11, PAD], [MASK, PAD, PAD, PAD]])
    with torch.no_grad():
        mem, mask = model.encode(src)
        mem_p, mask_p = model.encode(padded)
        assert torch.equal(model.predict_length(mem, mask), model.predict_length(mem_p, mask_p))
        torch.testing.assert_close(model.length_logits(mem_p, mask_p), model.length_logits(mem, mask), atol=1e-5, rtol=0)
        logits, logits_p = model.predict(tgt, mem, mask), model.predict(tgt, mem_p, mask_p)
    torch.testing.assert_close(logits_p, logits, atol=1e-5, rtol=0)


def test_cross_attention_rows_sum_to_one():
    model = make_model().eval()
    src = random_src()
    tgt = torch.tensor([[5, 6, 7, 8], [9, 10, PAD, PAD], [11, 12, 13, PAD], [14, PAD, PAD, PAD]])
    with torch.no_grad():
        w = model.cross_attention(src, tgt)
    assert w.shape == (src.size(0), tgt.size(1), src.size(1))
    real = (src != PAD)[:, None, :]
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:2]), atol=1e-5, rtol=0)
    assert float(w.masked_select(~real.expand_as(w)).abs().max()) == 0.0
    assert not model.decoder.layers[-1].cross_attn.keep_weights


def test_mask_target_is_seeded_and_in_range():
    model = make_model()
    tgt = random_src(seed=3)
    torch.manual_seed(7)
    a = model.mask_target(tgt)
    torch.manual_seed(7)
    assert torch.equal(a, model.mask_target(tgt))
    n, lengths = a.sum(1), (tgt != PAD).sum(1)
    assert ((n >= 1) & (n <= lengths)).all() and not (a & (tgt == PAD)).any()


LOSS_THRESHOLD = 0.1  # token CE over masked positions + 0.1 · length CE, mean of 10 random maskings


@pytest.fixture
def one_thread():
    """Tiny matrices: intra-op threading only adds overhead (and is erratic on a shared 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_overfit_tiny_batch(one_thread):
    torch.manual_seed(0)
    lengths = torch.tensor([4, 5, 6, 4, 5, 6, 5, 4])
    src = torch.randint(N_SPECIAL, VOCAB, (8, 6)).masked_fill(torch.arange(6)[None] >= lengths[:, None], PAD)
    perm = torch.arange(VOCAB)
    perm[N_SPECIAL:] = N_SPECIAL + torch.randperm(VOCAB - N_SPECIAL)
    tgt = torch.full_like(src, PAD)
    for i, n in enumerate(lengths.tolist()):
        tgt[i, :n] = perm[src[i, :n].flip(0)]  # reversed source through a fixed token permutation

    model = make_model(seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.05, total_iters=300)  # decay: no late loss spikes
    for _ in range(300):
        loss, n_tokens = model.loss(src, tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    assert isinstance(n_tokens, int) and 1 <= n_tokens <= int(lengths.sum())
    model.eval()
    with torch.no_grad():
        final = sum(model.loss(src, tgt)[0].item() for _ in range(10)) / 10  # average over random maskings
    assert final < LOSS_THRESHOLD, final
    for passes in (4, 1):  # the argmax length (length_beam=1): a shorter candidate may score a higher average
        decode = DecodeConfig(method="mask_predict", passes=passes, length_beam=1)
        assert torch.equal(generate(model, src, decode, 64), tgt), passes
