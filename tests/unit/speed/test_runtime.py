"""Runtime switches (src/speed/runtime.py): threads, the compiled model, bf16 autocast — same losses as eager fp32;
ARCHBENCH_MALLOC: the entry points re-execute on tcmalloc when asked (and record it), refuse a bad value, and
give child processes the user's own LD_PRELOAD back."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from src.data.synthetic import translation
from src.models.transformer import EncoderDecoder
from src.speed import runtime
from src.speed.runtime import compile_model, cpu_has_native_bf16, physical_cores, set_threads
from src.tasks.translation import teacher_forcing_pair
from tests.unit.speed.test_compare import TINY

SIZE = dict(d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0)


def test_threads_default_to_physical_cores(monkeypatch):
    saved = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert 1 <= physical_cores() <= (os.cpu_count() or 1)
        assert set_threads(None) == physical_cores() == torch.get_num_threads()
        assert set_threads(1) == 1 == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_threads(None) == 1
    finally:
        torch.set_num_threads(saved)


def test_cpu_has_native_bf16_is_a_bool():
    assert isinstance(cpu_has_native_bf16(), bool)


def synthetic_batches(n_batches=3, batch=16):
    """Batches of the synthetic translation task as word ids (the task's own tokenizer is not needed here)."""
    data = translation(seed=0, n_train=n_batches * batch, n_val=1, n_test=1)["train"].to_dict()
    vocab = {w: i + 4 for i, w in enumerate(sorted({w for t in data["src"] + data["tgt"] for w in t.split()}))}

    def ids(texts):
        rows = [[vocab[w] for w in t.split()] for t in texts]
        out = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out

    return len(vocab) + 4, [(ids(data["src"][i : i + batch]), ids(data["tgt"][i : i + batch]))
                            for i in range(0, n_batches * batch, batch)]


def train_losses(model, batches, steps, autocast_dtype=None, cross_entropy=F.cross_entropy) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
    losses = []
    for step in range(steps):
        src, tgt = batches[step % len(batches)]
        tgt_in, tgt_out = teacher_forcing_pair(tgt)
        with torch.autocast("cpu", dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            logits = model(src, tgt_in)
        loss = cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(), ignore_index=0, label_smoothing=0.1)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def fresh_model(vocab):
    torch.manual_seed(0)
    return EncoderDecoder(vocab, **SIZE)


def test_bf16_autocast_loss_curve_follows_fp32():
    vocab, batches = synthetic_batches()
    fp32 = train_losses(fresh_model(vocab), batches, 12)
    bf16 = train_losses(fresh_model(vocab), batches, 12, torch.bfloat16)
    assert fp32[-1] < 0.8 * fp32[0]  # it learns, so the comparison means something
    assert bf16 != fp32  # autocast really ran the matmuls in bf16
    for a, b in zip(fp32, bf16):
        assert abs(a - b) <= 0.05 * a + 0.02, (fp32, bf16)


@pytest.mark.slow
def test_compiled_model_trains_like_eager():
    """Same initial weights and batches (of different lengths: dynamic shapes): the losses agree step by step, the
    forward and the loss (label smoothing, ignored pads) compiled as train.compile compiles them."""
    torch._dynamo.reset()
    vocab, batches = synthetic_batches()
    eager = train_losses(fresh_model(vocab), batches, 3)
    compiled = train_losses(compile_model(fresh_model(vocab)), batches, 3, cross_entropy=runtime.compile_loss())
    assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-5)


def _bench(tmp_path, malloc: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ARCHBENCH_MALLOC"}
    if malloc:
        env["ARCHBENCH_MALLOC"] = malloc
    return subprocess.run([sys.executable, "-m", "src.bench", *TINY, "bench.peers=false", "bench.train=false",
                           "bench.modes=[fixed]", f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, env=env)


@pytest.mark.skipif(runtime.find_tcmalloc() is None, reason="libtcmalloc not installed (libtcmalloc-minimal4)")
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
    monkeypatch.setenv(runtime._ORIGINAL, before)
    runtime.use_tcmalloc()
    assert os.environ.get("LD_PRELOAD") == (before or None)
    assert runtime._ORIGINAL not in os.environ
