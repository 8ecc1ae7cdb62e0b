"""Each family can fit a tiny fixed batch: the training loss falls below a threshold (teacher forcing)."""
import pytest
import torch
import torch.nn.functional as F

from src.decoding.autoregressive import greedy
from src.models.transformer import DecoderClassifier, DecoderLM, EncoderClassifier, EncoderDecoder, PrefixLM
from src.models.vocab import PAD
from src.tasks.translation import teacher_forcing_pair

SIZE = dict(d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0)
V = 20


@pytest.fixture(autouse=True)
def one_thread():  # tiny matmuls: one thread is faster than two fighting over two cores
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def fit(model, loss_fn, steps=150, lr=1e-2):
    opt = torch.optim.Adam(model.parameters(), lr)
    first = None
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    return first, loss_fn().item()


def reversed_pairs(n=8, length=5):
    src = torch.randint(5, V, (n, length))
    src[::3, -1] = PAD  # some shorter sentences
    perm = torch.randperm(V - 5) + 5
    tgt = torch.stack([torch.cat([perm[r[r != PAD] - 5].flip(0), r[r == PAD]]) for r in src])
    return src, tgt


@pytest.mark.parametrize("model_cls", [EncoderDecoder, PrefixLM])
def test_translation_models_overfit_and_decode_the_batch(model_cls):
    src, tgt = reversed_pairs()
    model = model_cls(vocab_size=V, **SIZE)
    tgt_in, tgt_out = teacher_forcing_pair(tgt)
    first, last = fit(model, lambda: F.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt_out.flatten(),
                                                      ignore_index=PAD))
    assert last < 0.05 < first
    out = greedy(model.eval(), src, 8)
    assert torch.equal(torch.where(out == 2, PAD, out)[:, : tgt.size(1)], tgt)


@pytest.mark.parametrize("model_cls", [EncoderClassifier, DecoderClassifier])
def test_classifiers_overfit(model_cls):
    x = torch.randint(5, V, (16, 7))
    y = torch.randint(0, 3, (16,))
    model = model_cls(vocab_size=V, n_classes=3, **SIZE)
    first, last = fit(model, lambda: F.cross_entropy(model(x), y))
    assert last < 0.05 < first


def test_lm_overfits():
    x = torch.randint(5, V, (8, 12))
    model = DecoderLM(vocab_size=V, **SIZE)
    first, last = fit(model, lambda: F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()))
    assert last < 0.05 < first
