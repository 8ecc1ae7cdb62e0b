"""CTranslate2 beside ours: the deployment-engine rows of the speed bench (`python -m src.speed`, `speed.ct2`) and of
a trained run's inference report (`python -m src.run bench.ct2=true`). Helcl et al. 2022 and Kasai et al. 2021
showed that NAR speed-ups shrink or vanish against a well-implemented AR decoder, so the AR side is also timed on
one (Klein et al., CTranslate2).

Our model (the bench's random weights, or the run's trained ones) is exported through src/export.py into a temp dir
for each quantization and timed by src/speed/ct2.py `time_ct2` in its own subprocess (no torch there: in one process
CTranslate2's and torch's OpenMP pools slow each other ~2.5× on 2 cores), at each thread count (default 1 and all
cores); the fastest is reported with its setting (`threads`, and every count's tokens/s in `by_threads`). The
subprocess runs after ours and HF have been timed, while the parent's torch pool is idle.

What is identical to our fixed-mode rows:
- the sources: the exact token ids ours decoded (bench: the first batch ours drew at each batch size, so greedy's;
  run: the same length-stratified test batches as `inference.batch_rows`, batch 1 over `bench.latency_sentences`);
- the output work: exactly `new_tokens` (bench) / `bench.fixed_tokens` (run) tokens per sentence, <eos> banned by
  min = max decoding length, <pad>/<bos>/<mask> suppressed as in our decoders (the child checks every length);
- the search: greedy = beam_size 1; beam = the same beam size, one hypothesis kept (with a fixed length the length
  penalty cannot reorder hypotheses), batch B·k in both engines;
- the network: the same weights, pre/post-LN, exact GELU, our interleaved position table (the export's parity tests).
What is not: the encdec Translator's source is ours as given (no <bos>/<eos> added by either); the decoder-only
prefix LM runs as a CT2 Generator with `source <bos>` as its prompt (ours: the left-padded `source <bos>`), the
bench's decoder (a DecoderLM, as its GPT-2 peer) with the source alone as prompt; CT2 feeds the prompt but its last
token in one pass and then steps, ours prefills the whole prompt (the same token count). CT2 runs on CPU only here,
in float32 or int8 weights whatever our precision is; the decode group's repetition switches (no_repeat_ngram_size,
repetition_penalty) and the compiled step are ours alone. Natural mode, sampling, NAR, encoder and rnn_attn rows
have no CT2 entry.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

log = logging.getLogger("archbench")
METHODS = ("greedy", "beam")  # CT2's searches with our semantics; sampling differs (no exact-equal work)
BENCH_ARCHS = ("encdec", "decoder")


def installed() -> bool:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


def _entry(row: dict) -> dict:
    keys = ("ms_per_token", "tokens_per_s", "threads", "ms_per_sentence", "output_tokens", "spread", "by_threads",
            "quantization")
    return {k: row[k] for k in keys}


def bench_ct2(spec: dict, model, rows: list[dict], sources: dict) -> dict:
    """CT2 entries `ct2_<q>` and `ratio_vs_ct2_<q>` (ours tokens/s / CT2 tokens/s) added in place to the bench's fixed
    greedy / beam `rows`; `sources` maps a batch size to the (B, src_len) ids ours decoded there. Returns what was
    timed (or why nothing was) for bench.json `ct2`."""
    import ctranslate2

    from ..export import export_model
    from .ct2 import time_ct2

    methods = [m for m in spec["methods"] if m in METHODS]
    if spec["arch"] not in BENCH_ARCHS:
        return {"skipped": f"arch={spec['arch']} has no CTranslate2 counterpart"}
    if "fixed" not in spec["modes"] or not methods:
        return {"skipped": "CTranslate2 is timed in fixed mode, greedy and beam only"}
    beam_sizes = spec["beam_batch_sizes"] or spec["batch_sizes"]
    params = dict(src_len=spec["src_len"], new_tokens=spec["new_tokens"], methods=methods,
                  batch_sizes=list(spec["batch_sizes"]), beam_batch_sizes=list(beam_sizes),
                  beam_size=spec["beam_size"], threads=spec["ct2_threads"], warmup=spec["warmup"],
                  repeats=spec["repeats"], seed=spec["seed"],
                  sources={str(b): [x.cpu().tolist()] for b, x in sources.items()})
    positions = max(1024, spec["src_len"] + spec["new_tokens"] + 2)
    summary = {"version": ctranslate2.__version__, "device": "cpu", "process": "its own (python -m src.speed.ct2)",
               "quantizations": list(spec["ct2_quantizations"]), "threads_tried": None,
               "inputs": "the source ids ours decoded (its first batch at each batch size)"}
    with tempfile.TemporaryDirectory(prefix="archbench-ct2-") as tmp:
        for q in spec["ct2_quantizations"]:
            found = {(r["method"], r["batch_size"]): r
                     for r in time_ct2(export_model(model, spec["vocab"], Path(tmp) / q, q, positions), **params)}
            for row in rows:
                ct2 = found.get((row["method"], row["batch_size"])) if row["mode"] == "fixed" else None
                if ct2:
                    row[f"ct2_{q}"] = _entry(ct2)
                    row[f"ratio_vs_ct2_{q}"] = row["ours"]["tokens_per_s"] / ct2["tokens_per_s"]
                    summary["threads_tried"] = sorted(int(t) for t in ct2["by_threads"])
    return summary


def run_ct2(module, bench, speed: dict) -> dict:
    """A trained run's CT2 entries for results.json `inference["decode"]`: {"ct2_<q>": {..., "by_batch": rows}} for
    each of `bench.ct2_quantizations`, timed in fixed mode on the test batches ours was timed on (`speed`: ours'
    inference_speed result, for the ratio). {} with one warning line where the model has no CT2 counterpart."""
    import torch

    from ..export import ct2_class, vocabulary, write_ct2, SPECIALS, NEVER_GENERATED
    from ..models.transformer import PrefixLM
    from ..models.vocab import BOS, PAD
    from .ct2 import time_ct2
    from .inference import batch_rows

    model, d = getattr(module.model, "_orig_mod", module.model), module.decode_cfg
    kind = ct2_class(model)
    if kind is None or not getattr(module, "generative", True):
        log.warning(f"bench.ct2: {type(model).__name__} has no CTranslate2 counterpart (AR encdec / decoder only); "
                    "no CT2 rows")
        return {}
    if d.method not in METHODS:
        log.warning(f"bench.ct2: decode={d.method} is not timed on CTranslate2 (greedy and beam only); no CT2 rows")
        return {}
    n_test = len(module.dm.splits["test"])
    sizes = sorted({1} | {min(b, n_test) for b in bench.batch_sizes})  # as inference_speed
    suffix = [BOS] if isinstance(model, PrefixLM) else []  # the prefix LM's prompt: source <bos>
    sources = {}
    for b in sizes:
        batches = batch_rows(module, b, bench.latency_sentences if b == 1 else b, bench.seed)
        key = "src" if "src" in batches[0] else "tokens"
        sources[str(b)] = [[[t for t in row if t != PAD] + suffix for row in _prompt(x, key).tolist()]
                           for x in batches]
    longest = max(len(s) for batches in sources.values() for batch in batches for s in batch)
    positions = max(1024, 4 * module.dm.max_length, longest + bench.fixed_tokens + 2)
    ours = {r["batch_size"]: r for r in speed["by_batch"] if r["mode"] == "fixed"}
    out = {}
    with tempfile.TemporaryDirectory(prefix="archbench-ct2-") as tmp, torch.no_grad():
        for q in bench.ct2_quantizations:
            info = {"format": "ctranslate2", "class": f"ctranslate2.{kind}", "quantization": q,
                    "task": "translation" if kind == "Translator" or suffix else "lm", "special_tokens": SPECIALS,
                    "suppress_sequences": [[t] for t in NEVER_GENERATED], "position_rows": positions,
                    "note": "archbench: a run's model, exported for its inference report"}
            path = write_ct2(model, vocabulary(module.dm.tokenizer), Path(tmp) / q, q, positions, info)
            rows = time_ct2(path, sources=sources, batch_sizes=sizes, methods=[d.method], beam_size=d.beam_size,
                            new_tokens=bench.fixed_tokens, threads=bench.ct2_threads, warmup=bench.warmup,
                            repeats=bench.repeats, seed=bench.seed)
            by_batch = []
            for r in sorted(rows, key=lambda r: r["batch_size"]):
                row = {"batch_size": r["batch_size"], "mode": "fixed", "sentences": r["sentences"], **_entry(r)}
                if r["batch_size"] in ours:
                    row["ratio_ours_vs_ct2"] = ours[r["batch_size"]]["tokens_per_s"] / r["tokens_per_s"]
                by_batch.append(row)
            out[f"ct2_{q}"] = {"engine": "ctranslate2", "quantization": q, "class": f"ctranslate2.{kind}",
                               "method": d.method, "beam_size": 1 if d.method == "greedy" else d.beam_size,
                               "inputs": "the stratified test batches ours was timed on (fixed mode)",
                               "by_batch": by_batch}
    return out


def _prompt(batch: dict, key: str):
    """What our task decodes from a collated batch: translation's source, the LM's prompt (src/tasks/lm.py)."""
    if key == "src":
        return batch["src"]
    from ..tasks.lm import PROMPT_TOKENS

    return batch["tokens"][:, :PROMPT_TOKENS]
