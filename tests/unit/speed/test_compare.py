"""Ours vs the peers (src/speed/compare.py) end to end through `python -m src.bench` (the old name of
`python -m src.speed`, with its `bench.*` overrides) at tiny sizes (nothing timed)."""
import json
import subprocess
import sys

import pytest

from src.speed import peers
from tests.conftest import run_cli

TINY = ["size=tiny", "bench.vocab=100", "bench.src_len=6", "bench.new_tokens=4", "bench.batch_sizes=[1,2]",
        "bench.train_batch=2", "bench.beam_batch_sizes=null", "bench.repeats=1", "bench.warmup=0", "bench.wandb=disabled", "bench.modes=[fixed,natural]"]


def test_bench_cli_writes_json_and_markdown_with_ratios(tmp_path):
    subprocess.run([sys.executable, "-m", "src.bench", *TINY, f"hydra.run.dir={tmp_path}"], check=True,
                   capture_output=True, text=True)
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = result["inference"]
    assert {(r["method"], r["batch_size"], r["mode"]) for r in rows} >= {("greedy", 1, "fixed"), ("beam", 2, "natural")}
    fixed = [r for r in rows if r["mode"] == "fixed"]
    if peers.available():
        assert all(r["ours"]["output_tokens"] == r["hf"]["output_tokens"] == 4 for r in fixed)
        assert "ratio ours/BART" in (tmp_path / "bench.md").read_text()
    assert result["train"]["ours"]["mfu"] > 0 and result["machine"]["threads"] >= 1
    # the machine line: CPU, ISA flags, L3, cores, and the thread count of every engine beside its timing
    assert result["machine"]["cpu"]["model"] and "isa" in result["machine"]["cpu"]
    assert all(r["ours"]["threads"] == result["machine"]["threads"] for r in rows)
    assert f"· threads: ours {result['machine']['threads']}" in (tmp_path / "bench.md").read_text()


def test_bench_fast_paths_without_peers(tmp_path):
    """bench.compile=true times the compiled training forward and the compiled static decode step; with
    bench.peers=false (and bench.ct2=false) the tables have no HF (or CT2) columns at all."""
    subprocess.run([sys.executable, "-m", "src.bench", *TINY, "bench.peers=false", "bench.ct2=false",
                    "bench.compile=true", "bench.modes=[fixed]", f"hydra.run.dir={tmp_path}"], check=True, capture_output=True, text=True)
    md = (tmp_path / "bench.md").read_text()
    assert "fast paths (compile)" in md and "BART" not in md and "ratio" not in md and "–" not in md
    rows = json.loads((tmp_path / "bench.json").read_text())["inference"]
    assert rows and all("hf" not in r and r["ours"]["output_tokens"] == 4 for r in rows)


def test_bench_rejects_a_bad_method(tmp_path):
    p = subprocess.run([sys.executable, "-m", "src.bench", "bench.methods=[fast]", f"hydra.run.dir={tmp_path}"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.startswith("error: bench.methods has fast")


@pytest.mark.parametrize("module,override,message", [
    ("src.bench", "bench.batch_sizes=[0]", "bench.batch_sizes=[0] must be a non-empty list of sizes >= 1"),
    ("src.bench", "bench.repeats=0", "bench.repeats=0 must be >= 1"),
    ("src.bench", "bench.warmup=-1", "bench.warmup=-1 must be >= 0"),
    ("src.bench", "bench.new_tokens=0", "bench.new_tokens=0 must be >= 1"),
    ("src.bench", "bench.modes=[]", "bench.modes=[] is empty; choose among: fixed, natural"),
    ("src.bench", "bench.repeats=abc", "bench.repeats: Value 'abc' of type 'str' could not be converted to Integer"),
    ("src.bench", "size.n_heads=5",
     "size.d_model=256 is not divisible by size.n_heads=5; choose n_heads among 1, 2, 4, 8, 16, 32, 64"),
    ("src.run", "bench.batch_sizes=[0]", "bench.batch_sizes=[0] must be a non-empty list of sizes >= 1"),
    ("src.run", "bench.repeats=0", "bench.repeats=0 must be >= 1"),
])
def test_bench_config_is_refused_in_one_line(tmp_path, module, override, message):
    """A bad bench value (the speed tool's or the run's own bench) is one `error:` line and exit 2, before anything
    is written: no traceback, no run directory."""
    p = run_cli(override, f"hydra.run.dir={tmp_path / 'out'}", module=module)
    assert "Traceback" not in p.stderr
    assert (p.returncode, p.stderr) == (2, f"error: {message}\n")
    assert not (tmp_path / "out").exists()


