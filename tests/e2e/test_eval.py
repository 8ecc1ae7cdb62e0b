"""A finished run is a model you can use (issue 18): eval on other test data, translate stdin, predict, a
self-contained run dir (src/trained.py, src/eval.py, src/translate.py, src/predict.py)."""
import hashlib
import json
import shutil
import subprocess
import sys

import pytest
import sacrebleu

from src.config import ConfigError
from src.data.synthetic import translation

from tests.conftest import ROOT, run_main
from tests.unit.data.test_files import write

# one worker runs the module: its module-scoped fixture (trained once, minutes on 2 cores) is built once
pytestmark = pytest.mark.xdist_group("eval_trained")

TRAIN = ("size=tiny", "size.d_model=64", "size.d_ff=128", "logger=none", "trainer.max_steps=300",
         "trainer.val_check_interval=300", "trainer.limit_val_batches=1", "bench.batch_sizes=[1]",
         "bench.latency_sentences=2", "bench.repeats=1", "bench.warmup=0", "bench.fixed_tokens=4", "samples=2",
         "checkpoint_every_n_steps=0")


def tool(name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"src.{name}", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=300)


def run_dir_hashes(run_dir) -> dict:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.relative_to(run_dir).parts[0] != "eval"}


def jsonl(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny encdec trained on parallel files (the synthetic task written out), its cache deleted afterwards."""
    tmp = tmp_path_factory.mktemp("trained")
    data = translation(seed=0, n_train=3000, n_val=40, n_test=60)
    for split, stem in (("train", "train"), ("validation", "valid"), ("test", "test")):
        write(tmp / "corpus" / f"{stem}.en", list(data[split]["src"]))
        write(tmp / "corpus" / f"{stem}.de", list(data[split]["tgt"]))
    for lang, col in (("en", "src"), ("de", "tgt")):  # the run's test split alone, and other sentences alone
        write(tmp / "only_test" / f"test.{lang}", list(data["test"][col]))
        write(tmp / "other" / f"newtest.{lang}", list(translation(seed=0, n_train=1, n_val=50, n_test=1)["validation"][col]))
    run = tmp / "run"
    record = run_main(run, "arch=encdec", "data=parallel", f"data.root={tmp / 'corpus'}", "data.tokenizer=word",
                      f"data.cache_dir={tmp / 'cache'}", *TRAIN)
    shutil.rmtree(tmp / "cache")  # eval, translate and export must not need it
    return tmp, run, record


@pytest.mark.parametrize("compiled", [False, True])
def test_eval_with_int8_decoding_stays_within_half_a_bleu(trained, compiled):
    """decode.int8 (the static step on int8 weights: eager fbgemm, or compiled inductor's int8 reduction) on a
    trained model: BLEU within 0.5 of the fp32 test, most hypotheses identical (47 of 60 measured eager: the tiny
    model's top two logits are often close), its own eval dir."""
    tmp, run, record = trained
    compile = ["decode.compile=true", "eval.name=int8_compiled"] if compiled else []  # else the default name
    out = tool("eval", f"run_dir={run}", "data=parallel", f"data.root={tmp / 'only_test'}", "decode.int8=true",
               *compile)
    assert out.returncode == 0, out.stderr
    (own_dir,) = (run / "eval").glob("int8_compiled" if compiled else "parallel.test.greedy+int8-*")
    result = json.loads((own_dir / "results.json").read_text())
    assert result["metrics"]["test/bleu"] == pytest.approx(record["metrics"]["test/bleu"], abs=0.5)
    same = [a["hypothesis"] == b["hypothesis"] for a, b in zip(jsonl(own_dir / "hypotheses.jsonl"),
                                                                 jsonl(run / "hypotheses.jsonl"))]
    assert len(same) == 60 and sum(same) >= 42


def test_run_dir_carries_its_tokenizer(trained):
    tmp, run, _ = trained
    assert (run / "tokenizer.json").is_file() and not (tmp / "cache").exists()
    assert json.loads((run / "data.json").read_text()) == {"task": "translation", "labels": None, "bos_eos": True,
                                                           "max_length": 128}


def test_eval_on_the_runs_test_files_and_on_other_files(trained):
    tmp, run, record = trained
    before = run_dir_hashes(run)
    own = tool("eval", f"run_dir={run}", "data=parallel", f"data.root={tmp / 'only_test'}")
    assert own.returncode == 0, own.stderr
    (own_dir,) = (run / "eval").glob("parallel.test.greedy-*")
    result = json.loads((own_dir / "results.json").read_text())
    assert result["metrics"]["test/bleu"] == pytest.approx(record["metrics"]["test/bleu"], abs=1e-9)
    assert result["metrics"]["test/exact_match"] == record["metrics"]["test/exact_match"]
    assert [r["hypothesis"] for r in jsonl(own_dir / "hypotheses.jsonl")] == \
        [r["hypothesis"] for r in jsonl(run / "hypotheses.jsonl")]
    # the run tested its best checkpoint (one validation, at the last step: the same weights); eval uses it too
    assert result["data_identity"]["sizes"] == {"test": 60} and result["checkpoint"] == "checkpoints/best.ckpt"
    assert record["validation"]["checkpoint"] == "best" and record["validation"]["tested_step"] == 300

    other = tool("eval", f"run_dir={run}", "data=parallel", f"data.root={tmp / 'other'}",
                 "data.tasks.translation.files.test=newtest", "eval.name=other")
    assert other.returncode == 0, other.stderr
    result = json.loads((run / "eval" / "other" / "results.json").read_text())
    rows = jsonl(run / "eval" / "other" / "hypotheses.jsonl")
    refs = (tmp / "other" / "newtest.de").read_text().splitlines()
    assert [r["reference"] for r in rows] == refs and len(rows) == 50
    assert result["metrics"]["test/bleu"] == pytest.approx(sacrebleu.corpus_bleu([r["hypothesis"] for r in rows],
                                                                                 [refs]).score)
    assert result["metrics"]["test/bleu"] != pytest.approx(record["metrics"]["test/bleu"])
    assert run_dir_hashes(run) == before  # results.json (and everything else outside eval/) untouched

    # translate: the same model through stdin gives eval's hypotheses (the same batch), one line per input line
    sources = (tmp / "other" / "newtest.en").read_text().splitlines()
    out = tool("translate", f"run_dir={run}", stdin="\n".join([sources[0], "", *sources[1:]]) + "\n")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")[:-1]
    assert len(lines) == 51 and lines[1] == ""
    assert [lines[0], *lines[2:]] == [r["hypothesis"] for r in rows]

    # the report shows both evaluations as columns
    from src.report.__main__ import main as report

    assert report([str(run), "--out", str(tmp / "report"), "--no-wandb-log"]) == 0
    header = (tmp / "report" / "report.csv").read_text().splitlines()[0].split(",")
    assert f"eval:{own_dir.name}_mean" in header and "eval:other_mean" in header


def test_translate_truncates_a_long_line_with_one_warning(trained, capsys):
    import io

    from src.translate import main

    _, run, _ = trained
    stdout = io.StringIO()
    lines = ["ba ka", " ".join(["ba"] * 400), "", " ".join(["ka"] * 300), "ka"]
    assert main([f"run_dir={run}", "translate.batch_size=2"], stdin=io.StringIO("\n".join(lines) + "\n"),
                stdout=stdout) == 0
    out = stdout.getvalue().split("\n")[:-1]
    assert len(out) == 5 and out[2] == "" and all(out[i] for i in (0, 1, 3, 4))
    err = capsys.readouterr().err.splitlines()
    assert [x for x in err if x.startswith("warning:")] == [
        "warning: line 2 is longer than data.max_length=128 tokens: translated from its first 128 "
        "(so is any later one; not reported again)"]
    with pytest.raises(ConfigError, match="translate.nbest=2 needs decode=beam"):
        main([f"run_dir={run}", "translate.nbest=2"], stdin=io.StringIO("ba\n"), stdout=io.StringIO())
    stdout = io.StringIO()
    main([f"run_dir={run}", "decode=beam", "translate.nbest=2"], stdin=io.StringIO("ba ka\n"), stdout=stdout)
    assert len(stdout.getvalue().rstrip("\n").split("\t")) == 2


def test_eval_refuses_mismatched_data_in_one_line(trained):
    tmp, run, _ = trained
    out = tool("eval", f"run_dir={run}", "data=tsv", f"data.root={tmp}")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: data=tsv has no translation task; it provides task=classification"]
    from src.eval import main

    for args, message in [
        (["data=parallel", f"data.root={tmp / 'only_test'}", "data.src_lang=fr"], "the run translates en→de"),
        (["arch=nar"], "not an option of src.eval"),
        (["decode.beam_sizee=3"], "beam_sizee"),
        (["data=nosuch"], "data=nosuch is not an option"),
    ]:
        with pytest.raises(ConfigError, match=message):
            main([f"run_dir={run}", *args])
    with pytest.raises(ConfigError, match="not a finished run"):
        main([f"run_dir={tmp / 'corpus'}"])
    assert not (run / "eval" / "nosuch").exists()


def test_classification_run_labels_travel_with_it(tmp_path):
    rows = [("pos", "good fine great"), ("neg", "bad awful poor"), ("pos", "great good"), ("neg", "poor bad")] * 30
    for stem in ("train", "dev", "test"):
        write(tmp_path / "tsv" / f"{stem}.tsv", ["sentence\tlabel", *(f"{t}\t{lab}" for lab, t in rows)])
    write(tmp_path / "eval" / "test.tsv", ["sentence\tlabel", "good great\tpos", "awful\tneg"])
    write(tmp_path / "bad" / "test.tsv", ["sentence\tlabel", "good\tmeh"])
    run = tmp_path / "run"
    run_main(run, "arch=encoder", "task=classification", "data=tsv", f"data.root={tmp_path / 'tsv'}", *TRAIN,
             "trainer.max_steps=60", "trainer.val_check_interval=60", f"data.cache_dir={tmp_path / 'cache'}")
    shutil.rmtree(tmp_path / "cache")
    assert json.loads((run / "data.json").read_text())["labels"] == ["neg", "pos"]
    from src.eval import main

    assert main([f"run_dir={run}", "data=tsv", f"data.root={tmp_path / 'eval'}"]) == 0
    (ev,) = (run / "eval").glob("tsv.test.tsv-*")
    assert [r["label"] for r in jsonl(ev / "predictions.jsonl")] == ["pos", "neg"]
    with pytest.raises(ConfigError, match="label 'meh' is not in the label set"):
        main([f"run_dir={run}", "data=tsv", f"data.root={tmp_path / 'bad'}", "eval.name=bad"])
    out = tool("predict", f"run_dir={run}", stdin="good great fine\n\nawful bad\n")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")[:-1]
    assert len(lines) == 3 and lines[1] == ""
    first = json.loads(lines[0])
    assert set(first["probabilities"]) == {"neg", "pos"} and sum(first["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert first["label"] == max(first["probabilities"], key=first["probabilities"].get)


def test_the_checkpoint_is_best_when_there_is_one(tmp_path):
    from src.trained import checkpoint_of

    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        checkpoint_of(tmp_path)
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert checkpoint_of(tmp_path).name == "last.ckpt"
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"")  # model selection on validation (another issue)
    assert checkpoint_of(tmp_path).name == "best.ckpt"


def test_attention_sentences_on_eval_and_translate(trained, tmp_path):
    """The seeds' figure for any sentence of a finished run: eval draws it under its own eval dir, translate where
    attention.out says; both name exactly the sentences given."""
    tmp, run, _ = trained
    sentence = " ".join(translation(seed=0, n_train=1, n_val=1, n_test=1)["test"]["src"][0].split()[:3])
    before = run_dir_hashes(run)
    done = tool("eval", f"run_dir={run}", f"attention.sentences=['{sentence}']", "eval.name=attn")
    assert done.returncode == 0, done.stderr
    out = run / "eval" / "attn"
    assert (out / "attention_sentences.png").stat().st_size > 0
    drawn = json.loads((out / "results.json").read_text())["artifacts"]["attention_sentences"]
    assert [d["source"] for d in drawn] == [sentence] and len(drawn[0]["source_tokens"]) == 3
    png = tmp_path / "a.png"
    done = tool("translate", f"run_dir={run}", f"attention.sentences=['{sentence}']", f"attention.out={png}", stdin="")
    assert done.returncode == 0 and done.stdout == "" and png.stat().st_size > 0, done.stderr
    assert run_dir_hashes(run) == before
