"""Mask-predict (src/decoding/mask_predict.py) on the CMLM: at most `passes` decoder calls, the predicted length."""
import pytest
import torch

from src.config import DecodeConfig
from src.decoding import generate
from src.decoding.mask_predict import mask_predict
from src.models.vocab import MASK, PAD
from tests.unit.models.test_nar import make_model, random_src


def count_decoder_calls(model, fn):
    calls = []
    handle = model.decoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        out = fn()
    finally:
        handle.remove()
    return len(calls), out


def test_passes_bound_decoder_calls():
    model = make_model().eval()
    src = random_src()
    n1, _ = count_decoder_calls(model, lambda: mask_predict(model, src, passes=1))
    n4, _ = count_decoder_calls(model, lambda: mask_predict(model, src, passes=4))
    assert n1 == 1
    assert 1 <= n4 <= 4


@pytest.mark.parametrize("passes", [1, 2, 3, 4, 5])
def test_output_length_is_predicted_length(passes):
    model = make_model().eval()
    src = random_src()
    with torch.no_grad():
        predicted = model.predict_length(*model.encode(src)).clamp(min=1)
    out = generate(model, src, DecodeConfig(method="mask_predict", passes=passes), 64)
    assert torch.equal((out != PAD).sum(1), predicted)
    assert not (out == MASK).any()
    assert out.size(1) == int(predicted.max())
