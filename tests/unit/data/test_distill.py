"""Sequence-level knowledge distillation as a config switch (src/data/distill.py)."""
import json

import pytest

from src.config import ConfigError
from src.data.distill import distill

from tests.conftest import run_main
from tests.unit.data.test_files import write


def test_nar_student_trains_on_the_teachers_translations(tmp_path):
    words = ["hund", "katze", "haus", "baum", "rot", "blau"]
    lines = [" ".join(words[(i * k) % 6] for k in range(1, 5)) for i in range(40)]
    for stem in ("train", "valid", "test"):
        write(tmp_path / "c" / f"{stem}.en", lines if stem == "train" else lines[:8])
        write(tmp_path / "c" / f"{stem}.de", [line.upper() for line in (lines if stem == "train" else lines[:8])])
    data = ("data=parallel", f"data.root={tmp_path / 'c'}", "data.tokenizer=word", "debug=fast", "logger=none",
            f"data.cache_dir={tmp_path / 'cache'}")
    run_main(tmp_path / "teacher", *data)
    student = run_main(tmp_path / "student", *data, "arch=nar", f"data.distill_from={tmp_path / 'teacher'}")
    assert "sequence-level KD" in student["data_identity"]["source"][-1]
    (cached,) = (tmp_path / "cache").glob("distilled-*.json")
    targets = json.loads(cached.read_text())
    assert len(targets) == 40 and all(isinstance(t, str) for t in targets)
    rows = [json.loads(x) for x in (tmp_path / "student" / "hypotheses.jsonl").read_text().splitlines()]
    assert [r["variant"] for r in rows] == ["decode"] * 8 + ["decode_pass1"] * 8  # NAR: every decoding's hypotheses
    assert [r["reference"] for r in rows[:8]] == [line.upper() for line in lines[:8]]  # test references stay raw
    with pytest.raises(ConfigError, match="must be an autoregressive translation run"):
        distill(None, str(tmp_path / "student"), None)
