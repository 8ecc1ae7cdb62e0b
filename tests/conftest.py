import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("WANDB_MODE", "offline")  # tests never talk to a W&B server
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ARCHBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="archbench-test-cache-"))  # not ~/.cache
if os.environ.get("PYTEST_XDIST_WORKER"):  # parallel workers: one thread each, or OpenMP threads fight for cores
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def compose(*overrides: str):
    """The config `python -m src.run <overrides>` would run with."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from src.config import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def run_main(run_dir: Path, *overrides: str) -> dict:
    """Run `python -m src.run` in this process (Hydra and all) and return the results.json it wrote."""
    from src import run

    argv = sys.argv
    sys.argv = ["src.run", *overrides, f"hydra.run.dir={run_dir}"]
    try:
        run.main()
    finally:
        sys.argv = argv
    return json.loads((Path(run_dir) / "results.json").read_text())


def run_cli(*args: str, timeout: int = 300, module: str = "src.run") -> subprocess.CompletedProcess:
    """`python -m src.run <args>` (or another entry point: src.bench, src.report) as a user types it."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
