"""Local corpora: line-aligned parallel text, TSV/CSV classification data and plain text for language modeling.

Every loader is called as `loader(root=<data.root>, seed=<data.seed>, **its config node)` (src/data/build.py) and
returns a `datasets.DatasetDict` with train / validation / test splits of *raw* text, with the list of files it
read in `.source`. Bad data is a `ConfigError` (one line, exit 2): a missing or unreadable file, parallel files of
different lengths, an empty training split, bytes that are not UTF-8 (file and line), a label outside the label set.

`splits` (the parallel and TSV loaders): read only these splits' files, e.g. `["test"]` when a finished run is
evaluated on a data set that has nothing else (src/eval.py); the training-file checks then do not apply.
`seed` is unused here (nothing in these loaders is random); every loader takes it so all are called alike.
Plain text for LM follows nanoGPT's split of tiny Shakespeare: the first 90 % of the characters are train, the last
10 % validation (and, by default, also test: nanoGPT reports the loss on that split). Each split is cut into
consecutive windows of `block_size + 1` characters that overlap by one character, so every character after the
first is a next-character target exactly once, with 1..block_size characters of context (nanoGPT's windows).
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from ..config import ConfigError

SPLITS = ("train", "validation", "test")


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file without their line endings; a ConfigError names what is wrong."""
    return read_text(path).splitlines()


def read_text(path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file {path} does not exist (set data.root, or env ARCHBENCH_DATA_ROOT)")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"data file {path} cannot be read: {e.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"data file {path} is not UTF-8: line {line} has byte 0x{raw[e.start]:02x}") from None


def _dataset_dict(columns: dict[str, dict[str, list]], files: dict[str, list[str]], features: Features | None = None):
    """Splits from columns; `files`: split -> the files it came from. An empty split is an error naming them."""
    for split, cols in columns.items():
        if not next(iter(cols.values())):
            name = "training" if split == "train" else split
            raise ConfigError(f"the {name} split is empty: {' and '.join(files[split])}")
    out = DatasetDict({split: Dataset.from_dict(cols, features=features) for split, cols in columns.items()})
    out.source = list(dict.fromkeys(f for split in columns for f in files[split]))
    return out


def _split_files(files: dict, splits: list[str] | None = None) -> dict[str, str]:
    """split -> file; with only one held-out file it serves as both validation and test (never train).
    `splits`: only these splits, each of which must have a file (test: or the validation file)."""
    files = {k: v for k, v in files.items() if v}
    unknown = set(files) - set(SPLITS)
    if splits is not None and not unknown:
        held_out = files.get("test") or files.get("validation")
        out = {s: files.get(s) or (held_out if s != "train" else None) for s in splits}
        if not all(out.values()):
            raise ConfigError(f"data files: {dict(files)} name no file for the {', '.join(s for s in out if not out[s])} "
                              "split")
        return out
    if unknown or "train" not in files or not ({"validation", "test"} & set(files)):
        raise ConfigError(f"data files: {dict(files)} must name train and a validation or test file "
                          f"(splits: {', '.join(SPLITS)})")
    files.setdefault("validation", files.get("test"))
    files.setdefault("test", files["validation"])
    return files


def parallel(root, seed: int = 0, path: str = ".", src_lang: str = "en", tgt_lang: str = "de",
             files: dict | None = None, splits: list[str] | None = None) -> DatasetDict:
    """`<root>/<path>/<file>.<lang>` for each split; line i of the source file translates line i of the target.
    `files` maps split -> file stem (e.g. test: test_2016_flickr); with one held-out file it is both validation
    and test."""
    files = _split_files(files or {"train": "train", "validation": "valid", "test": "test"}, splits)
    base = Path(root) / path
    columns, source = {}, {}
    for split, stem in files.items():
        src_path, tgt_path = base / f"{stem}.{src_lang}", base / f"{stem}.{tgt_lang}"
        src, tgt = read_lines(src_path), read_lines(tgt_path)
        if len(src) != len(tgt):
            raise ConfigError(f"parallel files differ in length: {src_path} has {len(src)} lines, "
                              f"{tgt_path} has {len(tgt)}")
        columns[split] = {"src": src, "tgt": tgt}
        source[split] = [str(src_path), str(tgt_path)]
    return _dataset_dict(columns, source)


def tsv(root, seed: int = 0, path: str = ".", files: dict | None = None, text_column: str | int = "sentence",
        label_column: str | int = "label", header: bool = True, delimiter: str = "\t",
        labels: list | None = None, splits: list[str] | None = None) -> DatasetDict:
    """Delimited text with a text and a label column, chosen by header name (header: true) or 0-based index.
    Text is stripped of surrounding whitespace (GLUE's SST-2 has a space before the tab). `labels` is the label
    set in class-index order (default: the sorted labels of the training file); any other label is an error."""
    files = _split_files(files or {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}, splits)
    base = Path(root) / path
    rows = {split: _read_table(base / name, text_column, label_column, header, delimiter)
            for split, name in files.items()}
    if "train" in rows and not rows["train"][1]:
        raise ConfigError(f"the training split is empty: {rows['train'][0]}")
    if labels is None and "train" not in rows:
        raise ConfigError("data: without a training file the label set must be given (labels: [...])")
    names = [str(x) for x in labels] if labels is not None else sorted({lab for _, lab in rows["train"][2]})
    index = {name: i for i, name in enumerate(names)}
    columns = {}
    for split, (file, texts, lines) in rows.items():
        for line, label in lines:
            if label not in index:
                raise ConfigError(f"{file} line {line}: label {label!r} is not in the label set {names}")
        columns[split] = {"text": texts, "label": [index[label] for _, label in lines]}
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return _dataset_dict(columns, {split: [str(base / name)] for split, name in files.items()}, features)


def _read_table(file: Path, text_column, label_column, header: bool, delimiter: str):
    """(file, texts, [(line number, label)]): the rows of a delimited file, text and label stripped."""
    lines = read_lines(file)
    reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
    table = list(reader)
    first = 1
    if header and table:
        head = [h.strip() for h in table[0]]
        cols = []
        for col in (text_column, label_column):
            if isinstance(col, int):
                cols.append(col)
            elif col in head:
                cols.append(head.index(col))
            else:
                raise ConfigError(f"{file}: column {col!r} is not in its header {head}")
        table, first = table[1:], 2
    else:
        if not (isinstance(text_column, int) and isinstance(label_column, int)):
            raise ConfigError(f"{file}: without a header (data header=false) text_column and label_column are "
                              f"0-based column indices, got {text_column!r} and {label_column!r}")
        cols = [text_column, label_column]
    texts, labels = [], []
    for n, row in enumerate(table, start=first):
        if not row:
            continue
        if max(cols) >= len(row):
            raise ConfigError(f"{file} line {n}: {len(row)} columns, expected at least {max(cols) + 1}")
        texts.append(row[cols[0]].strip())
        labels.append((n, row[cols[1]].strip()))
    return file, texts, labels


def text(root, seed: int = 0, path: str = ".", file: str = "input.txt", block_size: int = 256,
         train_fraction: float = 0.9, test: str = "validation") -> DatasetDict:
    """One plain-text file for language modeling: the first `train_fraction` of its characters train, the rest
    validation; `test` is `validation` (nanoGPT's reported loss) or a file name under the same directory."""
    if not 0 < train_fraction < 1:
        raise ConfigError(f"data train_fraction={train_fraction} must be in (0, 1)")
    if block_size < 1:
        raise ConfigError(f"data block_size={block_size} must be >= 1")
    file_path = Path(root) / path / file
    body = read_text(file_path)
    cut = int(len(body) * train_fraction)
    parts = {"train": body[:cut], "validation": body[cut:]}
    source = {"train": [str(file_path)], "validation": [str(file_path)], "test": [str(file_path)]}
    if test == "validation":
        parts["test"] = parts["validation"]
    else:
        parts["test"] = read_text(file_path.parent / test)
        source["test"] = [str(file_path.parent / test)]
    columns = {split: {"text": blocks(t, block_size) if t.strip() else []} for split, t in parts.items()}
    out = _dataset_dict(columns, source)
    out.blocks = True  # running text: the data module adds no <bos>/<eos> (they would be free predictions)
    return out


def blocks(text: str, block_size: int) -> list[str]:
    """Windows text[i : i + block_size + 1] for i = 0, block_size, 2·block_size, …: each character after the
    first is predicted once. The last window may be shorter (at least 2 characters)."""
    return [text[i : i + block_size + 1] for i in range(0, max(1, len(text) - 1), block_size)]


def data_identity(name: str, raw: DatasetDict) -> dict:
    """What a report needs to refuse mixing runs on different data: name, source (files or hub id), split sizes and
    a SHA-256 over every split's raw examples (so a limited debug run differs from a full one)."""
    digest = hashlib.sha256()
    for split in sorted(raw):
        digest.update(split.encode())
        for column in sorted(raw[split].column_names):
            digest.update(column.encode())
            digest.update(json.dumps(list(raw[split][column]), ensure_ascii=False).encode())
    return {"name": name, "source": getattr(raw, "source", None), "sizes": {s: len(d) for s, d in raw.items()},
            "hash": digest.hexdigest()}
