"""Smoke runs of the benchmark scripts on CPU at a tiny shape (figures not read): experiments/benchmarks/run_gpu.py
without Hydra (the GPU image has none) and experiments/benchmarks/fastpath_speed.py."""
import json
import subprocess
import sys

from tests.conftest import ROOT

BENCHMARKS = ROOT / "experiments" / "benchmarks"
NO_HYDRA = ("import runpy, sys; sys.modules['hydra'] = sys.modules['omegaconf'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")  # importing either fails


def test_run_gpu_runs_on_cpu_tiny_without_hydra(tmp_path):
    p = subprocess.run([sys.executable, "-c", NO_HYDRA, str(BENCHMARKS / "run_gpu.py"), str(tmp_path), "--device",
                        "cpu", "--tiny"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    names = ("w1_encdec_vs_bart", "w1_encdec_sweep", "w1_nar", "gpt2_124m_seq1024")
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(f"{n}.{e}" for n in names for e in ("json", "md"))
    result = json.loads((tmp_path / "w1_nar.json").read_text())
    assert result["spec"]["device"] == "cpu" and result["spec"]["d_model"] == 16 and result["inference"]


def test_fastpath_speed_runs_on_cpu_tiny():
    # greedy only, to stay short: `--methods greedy beam` runs too (compiled beam in any call order:
    # tests/unit/decoding/test_static.py)
    p = subprocess.run([sys.executable, str(BENCHMARKS / "fastpath_speed.py"), "--device", "cpu", "--tiny",
                        "--repeats", "1", "--methods", "greedy"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "greedy B=1: eager" in p.stdout and "speed-up" in p.stdout
