"""CTranslate2 beside ours (src/speed/deploy.py): the speed bench's CT2 rows and columns, and a trained run's CT2
inference rows behind `bench.ct2=true`, at tiny sizes (the rows' keys and shapes; nothing timed)."""
import json
import subprocess
import sys

import pytest

from src.speed.deploy import installed
from tests.conftest import ROOT, run_cli, run_main

needs_ct2 = pytest.mark.skipif(not installed(), reason="ctranslate2 is not installed: pip install -e '.[ct2]' "
                                                       "(CI installs it)")
TINY = ["size=tiny", "speed.vocab=100", "speed.src_len=6", "speed.new_tokens=4", "speed.batch_sizes=[1,2]",
        "speed.beam_batch_sizes=[1]", "speed.train=false", "speed.repeats=1", "speed.warmup=0",
        "speed.wandb=disabled", "speed.modes=[fixed,natural]", "speed.methods=[greedy,beam,sample]"]
KEYS = {"ms_per_token", "tokens_per_s", "threads", "by_threads"}


@needs_ct2
@pytest.mark.parametrize("arch", ["encdec", "decoder"])
def test_speed_bench_ct2_rows_and_columns(tmp_path, arch):
    """Fixed greedy / beam rows carry ct2_float32 / ct2_int8 (shaped like ours) and ratio_vs_ct2_*, with exactly
    ours' output tokens; natural and sample rows carry none; bench.md has the columns."""
    p = subprocess.run([sys.executable, "-m", "src.speed", f"arch={arch}", *TINY, "speed.ct2=true",
                        f"hydra.run.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = result["inference"]
    timed = [r for r in rows if r["mode"] == "fixed" and r["method"] in ("greedy", "beam")]
    assert {(r["method"], r["batch_size"]) for r in timed} == {("greedy", 1), ("greedy", 2), ("beam", 1)}
    for r in timed:
        for q in ("float32", "int8"):
            entry = r[f"ct2_{q}"]
            assert KEYS <= set(entry) and entry["quantization"] == q
            assert entry["output_tokens"] == r["ours"]["output_tokens"] == 4
            assert entry["threads"] in (1, *map(int, entry["by_threads"]))
            assert r[f"ratio_vs_ct2_{q}"] == pytest.approx(r["ours"]["tokens_per_s"] / entry["tokens_per_s"])
        assert "ratio" in r  # ours / HF, as before
    for r in rows:
        if r not in timed:
            assert not any(k.startswith(("ct2_", "ratio_vs_ct2")) for k in r), r
    assert result["ct2"]["quantizations"] == ["float32", "int8"] and result["spec"]["ct2"] is True
    md = (tmp_path / "bench.md").read_text()
    for col in ("CT2 float32 ms/token", "CT2 int8 tokens/s (threads)", "ratio ours/CT2 float32",
                "ratio ours/CT2 int8"):
        assert col in md


def test_speed_bench_without_ct2_has_no_ct2_columns(tmp_path):
    """speed.ct2=false (and any run without ctranslate2): no CT2 keys, no CT2 columns."""
    subprocess.run([sys.executable, "-m", "src.speed", *TINY, "speed.methods=[greedy]", "speed.batch_sizes=[1]",
                    "speed.modes=[fixed]", "speed.peers=false", "speed.ct2=false", f"hydra.run.dir={tmp_path}"],
                   cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    rows = json.loads((tmp_path / "bench.json").read_text())["inference"]
    assert rows and not any(k.startswith(("ct2_", "ratio_vs_ct2")) for r in rows for k in r)
    assert "CT2" not in (tmp_path / "bench.md").read_text()


@pytest.mark.parametrize("module,override,message", [
    ("src.speed", "speed.ct2_quantizations=[fp8]",
     "speed.ct2_quantizations=['fp8'] must be a non-empty list among: float32, int8, int8_float32"),
    ("src.speed", "speed.ct2_threads=[0]", "speed.ct2_threads=[0] must be null or a non-empty list of thread counts"),
    ("src.run", "bench.ct2_quantizations=[fp8]",
     "bench.ct2_quantizations=['fp8'] must be a non-empty list among: float32, int8, int8_float32"),
])
def test_ct2_switches_are_refused_in_one_line(tmp_path, module, override, message):
    p = run_cli(override, f"hydra.run.dir={tmp_path / 'out'}", module=module)
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert p.stderr.startswith(f"error: {message}")
    assert not (tmp_path / "out").exists()


RUN = ("debug=fast", "size=tiny", "logger=none", "bench.ct2=true", "bench.batch_sizes=[1,4]")


@needs_ct2
def test_run_inference_report_has_ct2_rows(tmp_path):
    """debug=fast with bench.ct2=true: results.json inference.decode holds ct2_float32 / ct2_int8, timed in fixed
    mode on ours' test batches (the same sentence counts and bench.fixed_tokens tokens each), with ours / CT2."""
    decode = run_main(tmp_path / "run", *RUN)["inference"]["decode"]
    ours = {r["batch_size"]: r for r in decode["by_batch"] if r["mode"] == "fixed"}
    for q in ("float32", "int8"):
        ct2 = decode[f"ct2_{q}"]
        assert ct2["class"] == "ctranslate2.Translator" and ct2["quantization"] == q and ct2["method"] == "greedy"
        assert [r["batch_size"] for r in ct2["by_batch"]] == sorted(ours) == [1, 4]
        for r in ct2["by_batch"]:
            assert KEYS <= set(r) and r["mode"] == "fixed" and r["output_tokens"] == 8  # debug=fast: fixed_tokens 8
            assert r["sentences"] == (2 if r["batch_size"] == 1 else 4)  # bench.latency_sentences=2 at batch 1
            assert r["ratio_ours_vs_ct2"] == pytest.approx(ours[r["batch_size"]]["tokens_per_s"] / r["tokens_per_s"])
    assert not (tmp_path / "run" / "ct2").exists()  # exported to a temp dir, gone after timing


@needs_ct2
def test_run_ct2_on_a_non_ar_arch_is_one_warning(tmp_path, capfd):
    inference = run_main(tmp_path / "run", *RUN, "arch=nar", "bench.batch_sizes=[1]")["inference"]
    assert not any(k.startswith("ct2_") for d in inference.values() for k in d)
    out, err = capfd.readouterr()
    warned = [line for line in (out + err).splitlines() if "bench.ct2" in line]
    assert len(warned) == 1 and warned[0].endswith(
        "bench.ct2: CMLM has no CTranslate2 counterpart (AR encdec / decoder only); no CT2 rows")
