"""Synthetic tasks, tokenizers, bucketing and padding (src/data/)."""
import itertools
import json
import os
import random

import pytest

from src.data import synthetic
from src.data.datamodule import BucketBatchSampler, TextDataModule
from src.data.tokenizer import train_tokenizer
from src.models.vocab import BOS, EOS, PAD
from src.results import write_results


def test_synthetic_data_is_deterministic_from_its_seed():
    a, b, c = synthetic.translation(n_train=50), synthetic.translation(n_train=50), synthetic.translation(seed=1, n_train=50)
    assert a["train"]["src"][:] == b["train"]["src"][:] and a["test"]["tgt"][:] == b["test"]["tgt"][:]
    assert a["train"]["src"][:] != c["train"]["src"][:]
    assert a["train"]["src"][:] != a["test"]["src"][:]


def test_translation_needs_reordering_and_a_dictionary_not_a_copy():
    d = synthetic.translation(n_train=300)["train"]
    dictionary = {}
    for src, tgt in zip(d["src"], d["tgt"]):
        s, t = src.split(), tgt.split()
        assert len(s) == len(t) and set(s).isdisjoint(t)
        for w, v in zip(s, reversed(t)):  # the i-th source word becomes the i-th target word from the end
            assert dictionary.setdefault(w, v) == v
    assert len(set(dictionary.values())) == len(dictionary)  # a bijection


def test_classification_label_is_the_majority_marker_of_the_whole_sequence():
    d = synthetic.classification(n_train=200)["train"]
    markers = synthetic._words(4 + 16, random.Random(0), 2)[:4]  # as the generator draws them
    assert sorted(set(d["label"][:])) == [0, 1, 2, 3]
    for text, label in zip(d["text"], d["label"]):
        counts = [text.split().count(m) for m in markers]
        assert counts[label] == max(counts) and counts.count(max(counts)) == 1


def test_lm_data_follows_its_markov_chain():
    d = synthetic.lm(n_train=100, branching=2)["train"]["text"][:]
    successors = {}
    for t in d:
        w = t.split()
        assert len(w) == 32
        for a, b in zip(w, w[1:]):
            successors.setdefault(a, set()).add(b)
    assert max(len(s) for s in successors.values()) == 2
    assert synthetic.lm_perplexity_floor(n_words=32, branching=2, length=32) == pytest.approx(
        (32 * 2**31) ** (1 / 33))


@pytest.mark.parametrize("kind", ["bpe", "unigram", "word", "char"])
def test_tokenizers_round_trip_and_reserve_the_special_ids(kind):
    d = synthetic.translation(n_train=200)["train"]
    tok = train_tokenizer(kind, itertools.chain(d["src"], d["tgt"]), vocab_size=300)
    for text in d["tgt"][:20]:
        ids = tok.encode(text).ids
        assert min(ids) > 4 and tok.decode(ids) == text
    assert [tok.id_to_token(i) for i in (PAD, BOS, EOS)] == ["<pad>", "<bos>", "<eos>"]


def test_bucket_sampler_yields_every_index_once_in_length_sorted_pools():
    lengths = [(i * 7919) % 23 + 1 for i in range(1000)]
    sampler = BucketBatchSampler(lengths, 16, shuffle=True, seed=0, pool=10)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000)) and len(batches) == len(sampler)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 3  # random batches would spread ~20
    assert list(sampler) != batches  # a new order each epoch


def test_datamodule_batches_are_right_padded_and_lm_has_bos_eos():
    raw = synthetic.lm(n_train=40, n_val=8, n_test=8)
    tok = train_tokenizer("word", raw["train"]["text"])
    dm = TextDataModule("lm", raw, tok, batch_size=8)
    batch = next(iter(dm.train_dataloader()))
    assert (batch["tokens"][:, 0] == BOS).all() and (batch["tokens"] == EOS).sum(1).eq(1).all()
    raw = synthetic.translation(n_train=40, n_val=8, n_test=8)
    tok = train_tokenizer("word", itertools.chain(raw["train"]["src"], raw["train"]["tgt"]))
    dm = TextDataModule("translation", raw, tok, batch_size=8)
    for batch in dm.train_dataloader():
        for row in batch["src"].tolist():
            n = sum(t != PAD for t in row)
            assert all(t != PAD for t in row[:n]) and all(t == PAD for t in row[n:])
    assert dm.decode(batch["tgt"][0]) in set(raw["train"]["tgt"][:])


def test_results_are_written_atomically_and_never_overwritten(tmp_path):
    path = tmp_path / "results.json"
    write_results(path, {"metrics": {"x": 1.0}})
    assert json.loads(path.read_text()) == {"metrics": {"x": 1.0}}
    with pytest.raises(FileExistsError, match="already holds finished results"):
        write_results(path, {"metrics": {"x": 2.0}})
    assert json.loads(path.read_text()) == {"metrics": {"x": 1.0}}
    assert os.listdir(tmp_path) == ["results.json"]
    with pytest.raises(TypeError):
        write_results(tmp_path / "bad.json", {"x": object()})  # a failed write leaves nothing behind
    assert os.listdir(tmp_path) == ["results.json"]
