"""Matched size (src/sizing.py): `size.target_params` solves d_model so every arch lands within 5 % of the target,
counted on the real model; a target no width reaches is a one-line ConfigError."""
import re

import pytest

from src.config import ConfigError, validate
from src.sizing import build
from tests.conftest import compose

VOCAB = 600
PAIRS = [("encdec", "translation"), ("decoder", "translation"), ("rnn_attn", "translation"),
         ("rnn_seq2seq", "translation"), ("nar", "translation"), ("encoder", "classification"),
         ("decoder", "lm")]


def sized(arch, task, *overrides):
    cfg = compose(f"arch={arch}", f"task={task}", "size=small", *overrides)
    return cfg, validate(cfg.copy())


@pytest.mark.parametrize("arch,task", PAIRS)
def test_a_size_target_lands_within_5_percent_for_every_arch(arch, task):
    cfg, spec = sized(arch, task, "size.target_params=3e5")
    model, shape, match = build(cfg, spec, VOCAB, 2 if task == "classification" else 0)
    assert shape["d_model"] == match["solved"]["d_model"]
    params = sum(p.numel() for p in model.parameters())  # the real model, not the meta one the solver counted
    assert match["params"] == params
    assert abs(params / 3e5 - 1) <= 0.05 and match["rel_error"] == pytest.approx(params / 3e5 - 1)
    solved = match["solved"]
    assert solved["d_model"] % solved["n_heads"] == 0 and solved["d_model"] % 2 == 0
    assert solved["d_ff"] == 4 * solved["d_model"] and solved["n_layers"] == 2  # size=small: d_ff = 4 × d_model


def test_the_archs_differ_in_width_at_one_size():
    widths = {a: build(*sized(a, t, "size.target_params=3e5"), VOCAB, 2)[2]["solved"]["d_model"] for a, t in PAIRS}
    assert widths["rnn_attn"] < widths["decoder"]  # the RNN spends more parameters per unit of width


def test_without_a_target_the_size_is_the_configured_one():
    cfg, spec = sized("encdec", "translation")
    model, _, match = build(cfg, spec, VOCAB, 0)
    assert match is None and model.encoder.embed.d_model == 64


@pytest.mark.parametrize("target", ["1e3", "1e12"])
def test_an_unreachable_target_is_one_line(target):
    cfg, spec = sized("encdec", "translation", f"size.target_params={target}")
    with pytest.raises(ConfigError, match=re.escape(f"size.target_params={float(target):g} is out of reach")) as e:
        build(cfg, spec, VOCAB, 0)
    assert "\n" not in str(e.value)
