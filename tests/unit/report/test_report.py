"""`python -m src.report` on a real small multirun (3 archs x 2 seeds, debug=fast) plus a failed member."""
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from src.report.aggregate import aggregate, bleu_by_length, crossover, parse_buckets
from src.report.collect import collect

from tests.conftest import ROOT
from tests.e2e.test_wandb import inspect

# one worker runs the module: its module-scoped fixture (trained once, minutes on 2 cores) is built once
pytestmark = pytest.mark.xdist_group("report_sweep")

ARCHS = ("encdec", "nar", "rnn_attn")


def tree_hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.relative_to(root).parts[0] != "report"}


def report_cli(*args, tmp_home):
    env = {**os.environ, "WANDB_API_KEY": "", "NETRC": str(tmp_home / "no-netrc"), "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_MODE", None)  # offline must be the default without a login
    return subprocess.run([sys.executable, "-m", "src.report", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real multirun, one member that failed (status.json, no results), then the report over it."""
    root = tmp_path_factory.mktemp("sweep")
    sweep_dir = root / "multirun"
    done = subprocess.run([sys.executable, "-m", "src.run", "-m", f"arch={','.join(ARCHS)}", "seed=0,1", "debug=fast",
                           "logger=csv", "threads=1", f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    failed = sweep_dir / "6_rnn_attn_translation_small_s2"
    failed.mkdir()
    (failed / "status.json").write_text(json.dumps({"state": "failed", "error": "RuntimeError: CUDA out of memory",
                                                    "step": 3, "updated": "2026-01-01T00:00:00"}))
    before = tree_hashes(sweep_dir)
    out = report_cli(sweep_dir, tmp_home=root)
    return {"dir": sweep_dir, "before": before, "out": out, "report": sweep_dir / "report"}


def test_report_runs_and_never_touches_the_run_dirs(sweep):
    assert sweep["out"].returncode == 0, sweep["out"].stderr[-2000:]
    assert tree_hashes(sweep["dir"]) == sweep["before"]


def test_one_row_per_configuration_with_mean_and_std_over_seeds(sweep):
    rows = list(csv.DictReader((sweep["report"] / "report.csv").open()))
    assert sorted(r["arch"] for r in rows) == sorted(ARCHS)
    for row in rows:
        records = [json.loads(p.read_text()) for p in sweep["dir"].glob(f"*_{row['arch']}_*/results.json")]
        assert int(row["n"]) == len(records) == 2 and row["seeds"] == "0 1"
        for name, values in {"train_tokens_per_s": [r["train"]["tokens_per_s"] for r in records],
                             "decode/latency_ms": [r["inference"]["decode"]["latency_ms_batch1"] for r in records],
                             "metric": [r["metrics"][r["headline_metric"]] for r in records]}.items():
            assert float(row[f"{name}_mean"]) == pytest.approx(sum(values) / 2)
            assert float(row[f"{name}_std"]) == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)  # n-1 std
    assert "decode_pass1/latency_ms_mean" in rows[0]  # the NAR single-pass variant has its own columns


def test_failed_member_is_listed(sweep):
    md = (sweep["report"] / "report.md").read_text()
    assert "6_rnn_attn_translation_small_s2" in md and "CUDA out of memory" in md and "failed" in md
    assert "CUDA out of memory" in sweep["out"].stdout
    assert "ar_vs_nar_batch.png" in md  # every translation run now records by_batch rows (src/speed/inference.py)


def test_plots_are_images_of_the_report_size(sweep):
    for name in ("quality_vs_throughput", "throughput_by_device", "training_curves"):
        image = mpimg.imread(sweep["report"] / f"{name}.png")
        assert image.shape[:2] == (450, 700), name
        assert image.std() > 0.01, name  # not a blank canvas
        assert f"({name}.png)" in (sweep["report"] / "report.md").read_text()


def test_wandb_report_run_reads_back_offline(sweep):
    [run_dir] = list((sweep["report"] / "wandb").glob("offline-run-*"))
    summary = json.loads(inspect(run_dir, "--summary"))
    assert summary["state"] == "finished"
    assert summary["summary"]["configurations"] == 3 and summary["summary"]["failed"] == 1
    assert summary["summary"]["members"] == 7
    assert summary["summary"]["plots/training_curves"]["_type"] == "image-file"


def test_mixed_schema_and_missing_fields_are_reported_not_a_crash(sweep, tmp_path):
    for i, member in enumerate(sorted(sweep["dir"].glob("0_*"))):
        shutil.copytree(member, tmp_path / f"old{i}")
        record = json.loads((member / "results.json").read_text())
        for key in ("train", "inference", "params", "config", "schema"):
            record.pop(key)
        (tmp_path / f"old{i}" / "results.json").unlink()
        (tmp_path / f"old{i}" / "results.json").write_text(json.dumps(record))
    (tmp_path / "running").mkdir()
    (tmp_path / "running" / ".hydra").mkdir()
    out = report_cli(tmp_path, "--no-wandb-log", tmp_home=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no results.json" in (tmp_path / "report" / "report.md").read_text()
    [row] = aggregate([m.record for m in collect([tmp_path]) if m.record])
    assert row["params_mean"] is None and row["n"] == 1


def test_metric_option_compares_on_another_metric(sweep, tmp_path):
    """--metric test/bleu: the headline column and its mean are BLEU's, not the runs' own headline (exact match)."""
    out = report_cli(sweep["dir"], "--metric", "test/bleu", "--out", tmp_path / "r", "--no-wandb-log", tmp_home=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    records = [m.record for m in collect([sweep["dir"]]) if m.record and m.record["arch"] == "encdec"]
    rows = {r["arch"]: r for r in csv.DictReader((tmp_path / "r" / "report.csv").open())}
    assert rows["encdec"]["headline"] == "test/bleu"
    assert float(rows["encdec"]["metric_mean"]) == pytest.approx(
        sum(r["metrics"]["test/bleu"] for r in records) / len(records), rel=1e-4)
    header = next(line for line in (tmp_path / "r" / "report.md").read_text().splitlines() if line.startswith("| configuration"))
    assert "test/bleu" in header and "exact_match" not in header
    bad = report_cli(sweep["dir"], "--metric", "test/blue", "--out", tmp_path / "r2", tmp_home=tmp_path)
    assert bad.returncode == 2 and "test/blue" in bad.stderr and "test/bleu" in bad.stderr


def test_bad_input_is_one_line_exit_2(tmp_path):
    for args, word in (([tmp_path / "nope"], "not a directory"), ([tmp_path, "--buckets", "0-x"], "0-x"),
                       (["--wandb", "me/proj", "--out", tmp_path], "login")):
        out = report_cli(*args, tmp_home=tmp_path)
        assert out.returncode == 2 and out.stderr.startswith("error: ") and word in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_no_readable_run_is_refused_and_a_partial_sweep_names_the_unreadable(tmp_path):
    """Nothing readable: one `error:` line, exit 2, no report and no W&B run of 0 configurations. One readable run
    among them: the report is written, and one line names every run it leaves out. Run dirs are never modified."""
    sweep = tmp_path / "sweep"
    members = {"0_encdec_s0/results.json": '{"arch": "encd',  # truncated
               "1_encdec_s1/status.json": json.dumps({"state": "failed", "error": "RuntimeError: disk full"}),
               "2_nar_s0/.hydra/config.yaml": "seed: 0\n"}  # started, never finished
    for path, text in members.items():
        (sweep / path).parent.mkdir(parents=True)
        (sweep / path).write_text(text)
    before = tree_hashes(sweep)
    out = report_cli(sweep, tmp_home=tmp_path)
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: no readable run under {sweep} (3 unreadable: 0_encdec_s0 (unreadable: "
                                 "results.json: ")
    assert "1_encdec_s1 (failed: RuntimeError: disk full)" in out.stderr and "2_nar_s0 (unfinished" in out.stderr
    assert not (sweep / "report").exists() and tree_hashes(sweep) == before

    finished = {"arch": "encdec", "task": "translation", "data": "synthetic", "size": "small", "seed": 0,
                "headline_metric": "test/bleu", "metrics": {"test/bleu": 1.5}}
    (sweep / "3_encdec_s2").mkdir()
    (sweep / "3_encdec_s2" / "results.json").write_text(json.dumps(finished))
    before = tree_hashes(sweep)
    out = report_cli(sweep, "--no-wandb-log", tmp_home=tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    [line] = [line for line in out.stdout.splitlines() if "unreadable" in line]
    assert line.startswith("not in the table, 3 unreadable: 0_encdec_s0 (unreadable: results.json: ")
    assert all(name in line for name in ("1_encdec_s1", "2_nar_s0")) and "3_encdec_s2" not in line
    [row] = list(csv.DictReader((sweep / "report" / "report.csv").open()))
    assert (row["arch"], float(row["metric_mean"])) == ("encdec", 1.5)
    assert tree_hashes(sweep) == before


def test_bleu_per_source_length_bucket():
    rows = [{"variant": "", "source": "a b c", "reference": "the cat sat on the mat", "hypothesis": "the cat sat on the mat"},
            {"variant": "", "source": " ".join(["w"] * 12), "reference": "the cat sat on the mat",
             "hypothesis": "a dog stood under one rug"},
            {"variant": "pass1/", "source": "a b", "reference": "the cat sat on the mat", "hypothesis": "the cat sat on the mat"}]
    got = bleu_by_length(rows, parse_buckets("0-10,10-20,20+"))
    assert got[""]["0-10"] == {"bleu": pytest.approx(100.0), "n": 1}
    assert got[""]["10-20"]["bleu"] == pytest.approx(0.0) and "20+" not in got[""]
    assert list(got["pass1/"]) == ["0-10"]
    assert parse_buckets("0-10,30+") == [(0, 10), (30, None)]


def test_crossover_finder():
    sizes = [1, 8, 32, 128]
    x = crossover(sizes, ar_latency=[10, 10, 10, 10], nar_latency=[2, 6, 12, 30])
    assert x["status"] == "crosses" and x["first_loss"] == 32
    assert 8 < x["batch_size"] < 32 and x["batch_size"] == pytest.approx(2 ** (3 + 2 * 4 / 6))  # log2-linear
    assert crossover(sizes, [10] * 4, [11, 12, 20, 40]) == {"status": "nar_never_wins", "batch_size": None, "first_loss": 1}
    assert crossover(sizes, [10] * 4, [1, 2, 3, 4])["status"] == "nar_always_wins"
    assert crossover([32, 1, 8], [10, 10, 10], [12, 2, 6])["first_loss"] == 32  # order of the input does not matter
    assert crossover([], [], [])["status"] == "no_data"


def test_baseline_on_a_real_sweep(sweep, tmp_path):
    """--baseline arch=encdec on real run dirs: a paired test per other configuration, runs.csv one row per member."""
    out = report_cli(sweep["dir"], "--baseline", "arch=encdec", "--out", tmp_path / "b", "--no-wandb-log",
                     tmp_home=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {r["label"]: r for r in csv.DictReader((tmp_path / "b" / "report.csv").open())}
    assert set(rows) == {f"arch={a}" for a in ARCHS}
    assert rows["arch=encdec"]["p_vs_baseline"] == ""
    assert all(0 < float(rows[f"arch={a}"]["p_vs_baseline"]) <= 1 for a in ("nar", "rnn_attn"))
    runs = list(csv.DictReader((tmp_path / "b" / "runs.csv").open()))
    assert sorted((r["label"], r["seed"]) for r in runs) == sorted((f"arch={a}", s) for a in ARCHS for s in "01")
    md = (tmp_path / "b" / "report.md").read_text()
    claims = [line for line in md.splitlines() if line.startswith("- arch=") and "paired bootstrap p" in line]
    assert len(claims) == 2 and all("arch=encdec" in c for c in claims)
    assert "## Win matrix: quality" in md and "## Win matrix: batch-1 latency" in md
