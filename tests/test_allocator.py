"""ARCHBENCH_MALLOC: the entry points re-execute on tcmalloc when asked (and record it), refuse a bad value, and
give child processes the user's own LD_PRELOAD back (src/allocator.py)."""
import json
import os
import subprocess
import sys

import pytest

from src import allocator
from tests.test_bench import TINY


def _bench(tmp_path, malloc: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ARCHBENCH_MALLOC"}
    if malloc:
        env["ARCHBENCH_MALLOC"] = malloc
    return subprocess.run([sys.executable, "-m", "src.bench", *TINY, "bench.peers=false", "bench.train=false",
                           "bench.modes=[fixed]", f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, env=env)


@pytest.mark.skipif(allocator.find_tcmalloc() is None, reason="libtcmalloc not installed (libtcmalloc-minimal4)")
def test_tcmalloc_on_request_and_recorded(tmp_path):
    assert _bench(tmp_path / "tc", "tcmalloc").returncode == 0
    assert _bench(tmp_path / "default", None).returncode == 0
    allocators = {name: json.loads((tmp_path / name / "bench.json").read_text())["machine"]["allocator"]
                  for name in ("tc", "default")}
    assert allocators == {"tc": "tcmalloc", "default": "glibc"}
    assert "tcmalloc malloc" in (tmp_path / "tc" / "bench.md").read_text()


def test_bad_allocator_is_refused_in_one_line(tmp_path):
    p = _bench(tmp_path / "run", "jemalloc")
    assert p.returncode == 2
    assert p.stderr.strip() == "error: ARCHBENCH_MALLOC=jemalloc is not valid; choose one of: system, tcmalloc"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("before", ["", "/opt/user/libfoo.so"])
def test_reexecuted_process_gives_children_the_users_preload(monkeypatch, before):
    monkeypatch.setenv("LD_PRELOAD", f"/usr/lib/libtcmalloc_minimal.so.4 {before}".strip())
    monkeypatch.setenv(allocator._ORIGINAL, before)
    allocator.use_tcmalloc()
    assert os.environ.get("LD_PRELOAD") == (before or None)
    assert allocator._ORIGINAL not in os.environ
