"""Translation scoring (src/tasks/translation.py): raw references, sacreBLEU, hypotheses.jsonl, samples."""
import json

import pytest
import sacrebleu

from src.tasks.base import spread_over_lengths
from src.tasks.translation import translation_metrics

from tests.conftest import run_main
from tests.unit.data.test_files import write


def test_metrics_are_sacrebleu_on_raw_references():
    hyps = ["Ein Mann fährt ein Rad .", "Zwei hunde spielen im Schnee."]
    refs = ["Ein Mann fährt ein Einrad.", "Zwei Hunde spielen im Schnee."]
    m = translation_metrics(hyps, refs, prefix="test/")
    assert m["test/bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert m["test/bleu_lc"] == sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score > m["test/bleu"]
    assert m["test/chrf"] == sacrebleu.corpus_chrf(hyps, [refs]).score and m["test/exact_match"] == 0.0


def test_samples_are_drawn_across_lengths_not_the_shortest():
    lengths = list(range(100))
    picks = spread_over_lengths(lengths, 5, seed=0)
    assert [p // 20 for p in picks] == [0, 1, 2, 3, 4]  # one per fifth of the length distribution
    assert picks == spread_over_lengths(lengths, 5, seed=0) != spread_over_lengths(lengths, 5, seed=1)


def test_parallel_files_end_to_end_with_an_unknown_word(tmp_path):
    """data=parallel on written files, word tokenizer: the test reference's OOV word ('Zeppelin') stays in the
    reference that BLEU is scored against, and every hypothesis is written to hypotheses.jsonl."""
    words = ["Hund", "Katze", "Haus", "Baum", "rot", "blau", "gross", "klein"]
    train = [" ".join(words[(i * k) % 8] for k in range(1, 5)) for i in range(100)]
    for stem, lines in (("train", train), ("valid", train[:10]), ("test", train[:7] + ["Ein roter Zeppelin ."])):
        write(tmp_path / "corpus" / f"{stem}.en", [line.lower() for line in lines])
        write(tmp_path / "corpus" / f"{stem}.de", lines)
    r = run_main(tmp_path / "run", "data=parallel", f"data.root={tmp_path / 'corpus'}", "data.tokenizer=word",
                 "debug=fast", "logger=none", "data.limit.test=null")
    assert r["data_identity"]["sizes"] == {"train": 64, "validation": 10, "test": 8}  # debug: first 64 train
    assert r["data_identity"]["source"][0].endswith("corpus/train.en")
    rows = [json.loads(line) for line in (tmp_path / "run" / "hypotheses.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {row["variant"] for row in rows} == {"decode"}
    assert [row["id"] for row in rows] == list(range(8))  # the raw test rows, in test-set order
    assert rows[-1]["reference"] == "Ein roter Zeppelin ." and rows[-1]["source"] == "ein roter zeppelin ."
    hyps, refs = [row["hypothesis"] for row in rows], [row["reference"] for row in rows]
    assert r["metrics"]["test/bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, rel=1e-6)  # float32 log
    assert r["metrics"]["test/chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, rel=1e-6)
    assert all(s["reference"] in refs for s in r["samples"])


def test_val_bleu_follows_training_and_matches_test_bleu_on_the_same_sentences(tmp_path):
    """task.module.val_bleu=true: val/bleu at every validation, next to the wall seconds (BLEU against wall time).
    With validation = test sentences, the validation of the checkpoint tested (the best) scores what the test
    scores."""
    words = ["Hund", "Katze", "Haus", "Baum", "rot", "blau", "gross", "klein"]
    train = [" ".join(words[(i * k) % 8] for k in range(1, 5)) for i in range(100)]
    for stem, lines in (("train", train), ("valid", train[:8]), ("test", train[:8])):
        write(tmp_path / "corpus" / f"{stem}.en", [line.lower() for line in lines])
        write(tmp_path / "corpus" / f"{stem}.de", lines)
    r = run_main(tmp_path / "run", "data=parallel", f"data.root={tmp_path / 'corpus'}", "data.tokenizer=word",
                 "debug=fast", "logger=none", "task.module.val_bleu=true", "trainer.max_steps=6", "optim.lr=0.01")
    h = r["history"]
    assert [s for s, _ in h["val/bleu"]] == [s for s, _ in h["val/loss"]] == [s for s, _ in h["wall_s"]] == [2, 4, 6]
    assert all(0 < a < b for (_, a), (_, b) in zip(h["wall_s"], h["wall_s"][1:]))
    v = r["validation"]
    assert (v["metric"], v["checkpoint"]) == ("val/bleu", "best") and v["best"] == max(b for _, b in h["val/bleu"])
    assert dict(h["val/bleu"])[v["tested_step"]] == pytest.approx(r["metrics"]["test/bleu"], abs=1e-3)
    off = run_main(tmp_path / "run2", "debug=fast", "logger=none", "task.module.val_bleu=false", "select_best=false")
    assert "val/bleu" not in off["history"]
