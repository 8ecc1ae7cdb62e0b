"""CTranslate2 decoding speed of an exported model (src/export.py), measured in its own subprocess.

In one process CTranslate2's and torch's OpenMP pools slow each other down (measured ~2.5× on 2 cores), and the best
`intra_threads` is not always all cores (7× slower with 2 than with 1 at batch 1 on a 2-core VM), so
`time_ct2(model_dir, …)` runs `python -m src.speed.ct2` (which imports ctranslate2 and numpy, never torch), times every
(method, batch size) at each thread count (default 1 and all cores), and returns, per (method, batch size), the row
of the fastest thread count with the others' tokens/s beside it.

Inputs: `sources={"<batch size>": [batch, …]}` (each batch a list of token-id lists: a Translator's sources, a
Generator's whole prompts, as given) times exactly those batches, one after the other, per call, and its rows count
every sentence of them; without it, synthetic: one batch of `src_len` random non-special tokens per sentence
(seeded; a Generator's prompt gets `<bos>` appended for task=translation, the prefix LM). Fixed length, as our
benchmark's fixed mode: exactly `new_tokens` output tokens per sentence (min = max decoding length, so <eos> cannot end a
sentence early; `Translator.translate_batch(min_decoding_length=max_decoding_length=N)`,
`Generator.generate_batch(min_length=max_length=N, include_prompt_in_result=False)`), with <pad>/<bos>/<mask>
suppressed as in our decoders; the child checks every output has N tokens. Greedy is beam_size 1; beam is
`beam_size` (default 4), at `beam_batch_sizes` (default: `batch_sizes`). Each setting: `warmup` untimed calls, then the median of `repeats` timed ones, with
spread = (max - min) / median. Rows (as src/speed/inference.py's): {"method", "batch_size", "threads", "ms_per_sentence",
"ms_per_token" (ms / output token over the batch), "tokens_per_s", "output_tokens", "spread", "by_threads"}.

    python -m src.speed.ct2 MODEL_DIR '{"batch_sizes": [1, 32], "methods": ["greedy", "beam"]}'   # JSON rows out
    python -m src.speed.ct2 MODEL_DIR - < params.json     # the parameters on stdin (time_ct2: no argv size limit)
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ..errors import ConfigError

DEFAULTS = {"src_len": 32, "new_tokens": 32, "batch_sizes": [1, 32], "methods": ["greedy", "beam"], "beam_size": 4,
            "beam_batch_sizes": None, "threads": None, "warmup": 1, "repeats": 5, "seed": 0, "sources": None}
QUANTIZATIONS = ("float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16")
ROOT = Path(__file__).resolve().parent.parent.parent


def ct2_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ctranslate2") is not None


def check_ct2(node: str, on: bool | None, quantizations, threads) -> None:
    """The CTranslate2 switches of a run's `bench.*` and of the speed tool's `speed.*`: one-line ConfigErrors."""
    if not (len(quantizations) > 0 and all(q in QUANTIZATIONS for q in quantizations)):
        raise ConfigError(f"{node}.ct2_quantizations={list(quantizations)} must be a non-empty list among: "
                          f"{', '.join(QUANTIZATIONS)}")
    if not (threads is None or (len(threads) > 0 and min(threads) >= 1)):
        raise ConfigError(f"{node}.ct2_threads={threads} must be null or a non-empty list of thread counts >= 1")
    if on and not ct2_installed():
        raise ConfigError(f"{node}.ct2=true needs CTranslate2: pip install -e '.[ct2]'")


def time_ct2(model_dir, timeout: float = 600, **params) -> list[dict]:
    """The best row per (method, batch size) over the thread counts, timed in a subprocess (see the module doc)."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"time_ct2: unknown parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}")
    params = {**DEFAULTS, **params}
    params["threads"] = params["threads"] or sorted({1, os.cpu_count() or 1})
    proc = subprocess.run([sys.executable, "-m", "src.speed.ct2", str(model_dir), "-"], input=json.dumps(params),
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"CTranslate2 timing failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return best_rows(json.loads(proc.stdout.strip().splitlines()[-1]))


def best_rows(rows: list[dict]) -> list[dict]:
    """Per (method, batch size): the row with the most tokens/s, with every thread count's tokens/s in by_threads."""
    out = {}
    for r in rows:
        key = (r["method"], r["batch_size"])
        best = out.get(key)
        by = {**(best or {}).get("by_threads", {}), str(r["threads"]): r["tokens_per_s"]}
        if best is None or r["tokens_per_s"] > best["tokens_per_s"]:
            best = dict(r)
        best["by_threads"] = by
        out[key] = best
    return list(out.values())


def measure(model_dir: str, params: dict) -> list[dict]:
    """Every (threads, method, batch size) row; runs in the child (ctranslate2 + numpy only)."""
    import ctranslate2
    import numpy as np

    model_dir = Path(model_dir)
    info = json.loads((model_dir / "archbench.json").read_text())
    translator = info["class"].endswith("Translator")
    vocab_file = next(p for p in ("shared_vocabulary.json", "source_vocabulary.json", "vocabulary.json")
                      if (model_dir / p).is_file())
    vocab = json.loads((model_dir / vocab_file).read_text())
    specials = set(info["special_tokens"].values())
    words = [t for t in vocab if t not in specials]
    rng = np.random.default_rng(params["seed"])
    n, rows = int(params["new_tokens"]), []
    suppress = info["suppress_sequences"]
    bos = [info["special_tokens"]["bos"]] if info.get("task") == "translation" else []  # prefix LM: source <bos>
    given = params.get("sources")

    def batches_of(b: int) -> list[list[list[str]]]:
        if given:
            return [[[vocab[i] for i in ids] for ids in batch] for batch in given[str(b)]]
        batch = [[words[i] for i in rng.integers(0, len(words), params["src_len"])] for _ in range(b)]
        return [batch if translator else [s + bos for s in batch]]

    for threads in params["threads"]:
        cls = ctranslate2.Translator if translator else ctranslate2.Generator
        model = cls(str(model_dir), device="cpu", inter_threads=1, intra_threads=int(threads))
        for method in params["methods"]:
            beam = 1 if method == "greedy" else int(params["beam_size"])
            sizes = params["batch_sizes"] if method != "beam" else params["beam_batch_sizes"] or params["batch_sizes"]
            for b in sizes:
                batches = batches_of(b)
                if translator:
                    def call():
                        return [r.hypotheses[0] for batch in batches for r in model.translate_batch(
                            batch, beam_size=beam, min_decoding_length=n, max_decoding_length=n,
                            suppress_sequences=suppress)]
                else:
                    def call():
                        return [r.sequences[0] for batch in batches for r in model.generate_batch(
                            batch, beam_size=beam, min_length=n, max_length=n, include_prompt_in_result=False,
                            suppress_sequences=suppress)]
                for _ in range(int(params["warmup"])):
                    call()
                times = []
                for _ in range(int(params["repeats"])):
                    t = time.perf_counter()
                    out = call()
                    times.append(time.perf_counter() - t)
                lengths = sorted({len(h) for h in out})
                if lengths != [n]:
                    raise RuntimeError(f"fixed length broken: output lengths {lengths}, expected {n}")
                sentences = len(out)
                sec, tokens = statistics.median(times), sentences * n
                rows.append({"engine": "ctranslate2", "quantization": info.get("quantization"), "method": method,
                             "beam_size": beam, "batch_size": b, "threads": int(threads), "sentences": sentences,
                             "ms_per_sentence": 1000 * sec / sentences, "ms_per_token": 1000 * sec / tokens,
                             "tokens_per_s": tokens / sec, "output_tokens": n,
                             "spread": (max(times) - min(times)) / sec if sec else 0.0})
        del model
    return rows


if __name__ == "__main__":
    model_dir, raw = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "{}")
    given = json.loads(sys.stdin.read() if raw == "-" else raw)
    print(json.dumps(measure(model_dir, {**DEFAULTS, **given,
                                         "threads": given.get("threads") or sorted({1, os.cpu_count() or 1})})))
