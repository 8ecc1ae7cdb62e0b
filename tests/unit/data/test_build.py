"""Config -> data module (src/data/build.py): loader arguments, data.limit, tokenizer and encoding caches."""
import logging

import pytest
from datasets import Dataset, DatasetDict

from src.config import ConfigError, validate
from src.data import build
from src.data.datamodule import TextDataModule
from src.data.tokenizer import train_tokenizer

from tests.conftest import ROOT, compose
from tests.unit.data.test_files import parallel_corpus

CALLS = []


def recording_loader(root, seed, **kw):
    """A loader that records what it was called with."""
    CALLS.append({"root": str(root), "seed": seed, **kw})
    rows = {"src": [f"a{i}" for i in range(10)], "tgt": [f"b{i}" for i in range(10)]}
    return DatasetDict({s: Dataset.from_dict(rows) for s in ("train", "validation", "test")})


def spec_of(*overrides):
    cfg = compose("logger=none", *overrides)
    return cfg, validate(cfg)


def test_loader_receives_root_and_data_seed_and_limits_apply(tmp_path):
    CALLS.clear()
    cfg, spec = spec_of(f"data.root={tmp_path}", "data.seed=7", "seed=3",
                        "data.tasks.translation._target_=tests.unit.data.test_build.recording_loader",
                        "data.limit={train: 4, test: 2}")
    raw = build.load_raw(cfg, spec)
    assert CALLS[-1]["root"] == str(tmp_path) and CALLS[-1]["seed"] == 7  # data.seed, not the run's seed
    assert {s: len(d) for s, d in raw.items()} == {"train": 4, "validation": 10, "test": 2}
    assert raw["train"]["src"][:] == ["a0", "a1", "a2", "a3"]  # the first N


def test_synthetic_data_follows_data_seed_not_the_run_seed():
    a = build.load_raw(*spec_of("seed=0", "data.limit={train: 5}"))
    b = build.load_raw(*spec_of("seed=1", "data.limit={train: 5}"))
    c = build.load_raw(*spec_of("data.seed=1", "data.limit={train: 5}"))
    assert a["train"]["src"][:] == b["train"]["src"][:] != c["train"]["src"][:]


def test_bad_limit_split_is_one_line():
    with pytest.raises(ConfigError, match="data.limit has unknown split"):
        build.apply_limit(DatasetDict({"train": Dataset.from_dict({"x": [1]})}), {"dev": 3})


def test_tokenizer_and_encoded_splits_are_cached(tmp_path, monkeypatch, caplog):
    parallel_corpus(tmp_path / "data", n=20)
    overrides = ("data=parallel", f"data.root={tmp_path / 'data'}", f"data.cache_dir={tmp_path / 'cache'}",
                 "data.tasks.translation.path=m30k", "data.tasks.translation.files={train: train, validation: val, test: test_2016}",
                 "data.tokenizer=bpe", "data.vocab_size=60")
    first = build.build_datamodule(*spec_of(*overrides))
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir()) == ["encoded", "tokenizer"]

    def no_training(*_a, **_k):
        raise AssertionError("the tokenizer was trained again")

    monkeypatch.setattr(build, "train_tokenizer", no_training)
    monkeypatch.setattr(TextDataModule, "_encode", no_training)
    with caplog.at_level(logging.INFO, logger="archbench"):
        second = build.build_datamodule(*spec_of(*overrides))
    assert "tokenizer: cached" in caplog.text and "encoded splits: cached" in caplog.text
    assert second.identity == first.identity and second.vocab_size == first.vocab_size
    assert second.splits["test"]["src_ids"][:] == first.splits["test"]["src_ids"][:]
    monkeypatch.undo()
    other = build.build_datamodule(*spec_of(*overrides[:-1], "data.vocab_size=50"))  # new settings: new entry
    assert other.vocab_size <= 50 and len(list((tmp_path / "cache").iterdir())) == 4


def test_too_long_sequences_are_truncated_and_counted(caplog):
    raw = DatasetDict({s: Dataset.from_dict({"src": ["a b c d e f", "a b"], "tgt": ["x y z w", "x"]})
                       for s in ("train", "validation", "test")})
    tok = train_tokenizer("word", ["a b c d e f x y z w"])
    with caplog.at_level(logging.WARNING, logger="archbench"):
        dm = TextDataModule("translation", raw, tok, max_length=3)
    assert "test: 1 src sequences truncated to data.max_length=3 tokens (references stay raw)" in caplog.text
    assert max(map(len, dm.splits["test"]["src_ids"][:])) == 3 and dm.raw["test"]["tgt"][0] == "x y z w"


def test_cli_bad_data_exits_2_with_one_line(tmp_path):
    from tests.conftest import run_cli

    parallel_corpus(tmp_path)
    (tmp_path / "m30k" / "val.de").write_text("one line\n")
    r = run_cli("data=parallel", f"data.root={tmp_path}", "data.tasks.translation.path=m30k",
                "data.tasks.translation.files={train: train, validation: val, test: test_2016}", "debug=fast",
                "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: parallel files differ in length:")
    assert "val.en has 3 lines" in r.stderr and "val.de has 1" in r.stderr


@pytest.mark.parametrize("data", sorted(p.stem for p in (ROOT / "conf" / "data").glob("*.yaml")))
def test_every_data_config_composes_and_validates(data):
    spec = validate(compose(f"data={data}", "logger=none", f"task={TASK_OF.get(data, 'translation')}",
                            f"arch={'encoder' if TASK_OF.get(data) == 'classification' else 'decoder'}"))
    assert spec.data.name == data and set(spec.data.limit) == {"train", "validation", "test"}


TASK_OF = {"sst2": "classification", "tsv": "classification", "glue_sst2": "classification",
           "tinyshakespeare": "lm", "text": "lm"}
