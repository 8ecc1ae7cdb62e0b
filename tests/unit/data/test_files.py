"""Local corpora (src/data/files.py): parallel text, TSV/CSV, plain text for LM; bad data as one-line errors."""
import pytest

from src.config import ConfigError
from src.data import files


def write(path, lines, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding) if isinstance(lines, list) else lines)
    return path


def parallel_corpus(root, n=6):
    for stem, k in (("train", n), ("val", 3), ("test_2016", 2)):
        write(root / "m30k" / f"{stem}.en", [f"{stem} sentence {i} ." for i in range(k)])
        write(root / "m30k" / f"{stem}.de", [f"{stem} Satz {i} über ." for i in range(k)])


FILES = {"train": "train", "validation": "val", "test": "test_2016"}


def test_parallel_reads_configured_file_names_and_either_direction(tmp_path):
    parallel_corpus(tmp_path)
    d = files.parallel(tmp_path, path="m30k", src_lang="en", tgt_lang="de", files=FILES)
    assert {s: len(d[s]) for s in d} == {"train": 6, "validation": 3, "test": 2}
    assert d["test"][1] == {"src": "test_2016 sentence 1 .", "tgt": "test_2016 Satz 1 über ."}
    back = files.parallel(tmp_path, path="m30k", src_lang="de", tgt_lang="en", files=FILES)
    assert back["train"]["src"][:] == d["train"]["tgt"][:]
    assert d.source[-1].endswith("m30k/test_2016.de")


def test_parallel_bad_data_is_one_line(tmp_path):
    parallel_corpus(tmp_path)
    with pytest.raises(ConfigError, match=r"test_2017\.en does not exist"):
        files.parallel(tmp_path, path="m30k", files={**FILES, "test": "test_2017"})
    write(tmp_path / "m30k" / "val.de", ["only", "two"])
    with pytest.raises(ConfigError, match=r"val\.en has 3 lines, .*val\.de has 2"):
        files.parallel(tmp_path, path="m30k", files=FILES)
    parallel_corpus(tmp_path)
    write(tmp_path / "m30k" / "train.de", b"ok\nok\nbad \xfc byte\nok\nok\nok\n")
    with pytest.raises(ConfigError, match=r"train\.de is not UTF-8: line 3 has byte 0xfc"):
        files.parallel(tmp_path, path="m30k", files=FILES)
    write(tmp_path / "m30k" / "train.en", b"")
    write(tmp_path / "m30k" / "train.de", b"")
    with pytest.raises(ConfigError, match="the training split is empty"):
        files.parallel(tmp_path, path="m30k", files=FILES)
    parallel_corpus(tmp_path)
    write(tmp_path / "m30k" / "test_2016.en", b"")
    write(tmp_path / "m30k" / "test_2016.de", b"")
    with pytest.raises(ConfigError, match=r"the test split is empty: .*test_2016\.en and .*test_2016\.de"):
        files.parallel(tmp_path, path="m30k", files=FILES)


def test_tsv_with_header_strips_text_and_maps_labels(tmp_path):
    write(tmp_path / "train.tsv", ["sentence\tlabel", "a fine film \t1", "dull \t0", "bad \t0"])
    write(tmp_path / "dev.tsv", ["sentence\tlabel", "great \t1"])
    d = files.tsv(tmp_path, files={"train": "train.tsv", "validation": "dev.tsv", "test": "dev.tsv"}, labels=["0", "1"])
    assert d["train"]["text"][:] == ["a fine film", "dull", "bad"] and d["train"]["label"][:] == [1, 0, 0]
    assert d["train"].features["label"].names == ["0", "1"] and len(d["test"]) == 1


def test_tsv_without_header_and_csv(tmp_path):
    write(tmp_path / "train.csv", ["pos,\"good, really\"", "neg,awful"])
    write(tmp_path / "test.csv", ["neg,bad"])
    split_files = {"train": "train.csv", "test": "test.csv"}
    d = files.tsv(tmp_path, files=split_files, text_column=1, label_column=0, header=False, delimiter=",")
    assert d["train"]["text"][:] == ["good, really", "awful"]
    assert d["train"].features["label"].names == ["neg", "pos"] and d["train"]["label"][:] == [1, 0]
    assert d["validation"]["text"][:] == d["test"]["text"][:] == ["bad"]  # one held-out file serves both
    with pytest.raises(ConfigError, match="0-based column indices"):
        files.tsv(tmp_path, files=split_files, header=False, delimiter=",")
    with pytest.raises(ConfigError, match="must name train and a validation or test file"):
        files.tsv(tmp_path, files={"train": "train.csv"}, header=False, text_column=1, label_column=0)


def test_tsv_bad_label_and_missing_column(tmp_path):
    write(tmp_path / "train.tsv", ["sentence\tlabel", "ok\t0", "fine\t1"])
    write(tmp_path / "dev.tsv", ["sentence\tlabel", "meh\t2"])
    with pytest.raises(ConfigError, match=r"dev\.tsv line 2: label '2' is not in the label set \['0', '1'\]"):
        files.tsv(tmp_path, files={"train": "train.tsv", "validation": "dev.tsv"})
    with pytest.raises(ConfigError, match="column 'text' is not in its header"):
        files.tsv(tmp_path, files={"train": "train.tsv", "test": "train.tsv"}, text_column="text")
    write(tmp_path / "empty.tsv", ["sentence\tlabel"])
    with pytest.raises(ConfigError, match="the training split is empty"):
        files.tsv(tmp_path, files={"train": "empty.tsv", "test": "train.tsv"})


def test_text_splits_90_10_into_overlapping_blocks(tmp_path):
    body = "".join(chr(97 + i % 26) for i in range(1000)) + "\n"
    write(tmp_path / "input.txt", body.encode())
    d = files.text(tmp_path, block_size=64)
    train, val = d["train"]["text"][:], d["validation"]["text"][:]
    assert train[0] + "".join(b[1:] for b in train[1:]) == body[:900]  # every character once, blocks overlap by 1
    assert val[0] + "".join(b[1:] for b in val[1:]) == body[900:]
    assert max(map(len, train)) == 65 and d["test"]["text"][:] == val and d.blocks
    with pytest.raises(ConfigError, match="train_fraction"):
        files.text(tmp_path, train_fraction=1.0)


def test_data_identity_changes_with_the_content(tmp_path):
    parallel_corpus(tmp_path)
    a = files.data_identity("m", files.parallel(tmp_path, path="m30k", files=FILES))
    assert a["sizes"] == {"train": 6, "validation": 3, "test": 2} and len(a["source"]) == 6
    write(tmp_path / "m30k" / "test_2016.de", ["changed", "too"])
    assert files.data_identity("m", files.parallel(tmp_path, path="m30k", files=FILES))["hash"] != a["hash"]
