"""Ours vs the HF peers, as plain Python (no Hydra; `python -m src.speed` wraps it): `benchmark(spec) -> dict`.

Synthetic inputs of the configured shape (source length, new tokens, vocab), untrained weights (speed only; in
fixed-length mode <eos> is banned so every decoder produces exactly `new_tokens` tokens). Measures training tokens/s
and MFU (flops.py), inference for each method × batch size × mode, peak memory, and — where an HF peer exists
and transformers is installed — the same work on the peer (peers.py), interleaved repeat by repeat in the same
process so machine load hits both alike (timing.interleaved). ratio = ours / HF speed (> 1: we are faster).
With `ct2=True` (AR archs) our model is also exported to CTranslate2 per quantization and timed in its own
subprocess after ours and HF (deploy.py: what is and is not identical): rows gain `ct2_<q>` and
`ratio_vs_ct2_<q>` = ours / CT2 tokens/s.
"""
from __future__ import annotations

import contextlib
import importlib
import resource
import statistics

import torch
import torch.nn.functional as F

from ..config import DecodeConfig
from ..decoding import generate
from ..models.vocab import BOS, PAD
from . import peers
from .flops import matmul_peak, train_flops
from .runtime import compile_loss
from .timing import cpu_line, interleaved, machine, spread_of

FIRST_ID = 5  # ids below are the special tokens

DEFAULT_SPEC = dict(
    arch="encdec", model="src.models.transformer.EncoderDecoder", arch_params={"norm_first": True, "tie_weights": True},
    vocab=8000, d_model=256, n_heads=4, n_layers=3, d_ff=1024, dropout=0.0, src_len=32, new_tokens=32,
    methods=["greedy", "beam"], batch_sizes=[1, 32], beam_batch_sizes=[1], modes=["fixed"], beam_size=4, passes=4, decode={},
    train_batch=32, train=True, warmup=2, repeats=10, device="cpu", precision="32-true",
    compile=False, train_compile=False, decode_compile=False,  # compile=True: both fast paths (see resolve)
    peers=True, seed=0,
    ct2=False, ct2_quantizations=["float32", "int8"], ct2_threads=None,  # CTranslate2 rows (deploy.py); threads:
)                                                                        # None = 1 and all cores


def _cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def _autocast(spec):
    if "bf16" in str(spec["precision"]):
        return torch.autocast(torch.device(spec["device"]).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _peak_memory(device) -> float:
    """MiB: CUDA max_memory_allocated since the last reset, or the process's peak RSS on CPU."""
    if _cuda(device):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_ours(spec) -> torch.nn.Module:
    module, name = spec["model"].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    return cls(vocab_size=spec["vocab"], n_classes=2, d_model=spec["d_model"], n_heads=spec["n_heads"],
               n_layers=spec["n_layers"], d_ff=spec["d_ff"], dropout=spec["dropout"], **spec["arch_params"])


def _ours_loss(model, arch, src, tgt, cross_entropy=F.cross_entropy):
    """The training loss of ours; `cross_entropy`: the tasks' token loss (compiled under train_compile)."""
    if arch == "nar":
        return model.loss(src, tgt)[0]
    if arch == "encoder":
        return F.cross_entropy(model(src), tgt[:, 0] % 2)
    if arch == "decoder":
        tokens = torch.cat([src, tgt], 1)
        logits = model(tokens[:, :-1])
        return cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
    tgt_in = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], 1)
    return cross_entropy(model(src, tgt_in).flatten(0, 1), tgt.flatten())


def _train_fn(model, loss_of, spec, src, tgt):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    model.train()

    def step():
        with _autocast(spec):
            loss = loss_of(model, src, tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def _infer_fn(model, spec, method, src, mode, peer: bool):
    arch, n, fixed = spec["arch"], spec["new_tokens"], mode == "fixed"
    if arch == "encoder":
        return lambda: (model(input_ids=src) if peer else model(src)), src.numel()
    if peer:
        return lambda: peers.peer_generate(model, src, method, n, fixed, spec["beam_size"]), None
    return lambda: generate(model, src, decode_config(spec, method), n, fixed), None


def decode_config(spec: dict, method: str) -> DecodeConfig:
    """The DecodeConfig of one timed method: the spec's decode switches (the decode group's other keys), its beam
    size and decode_compile; nar's methods are mask-predict passes ("pass1", "pass4")."""
    nar = spec["arch"] == "nar"
    fields = {**spec["decode"], "method": "mask_predict" if nar else method, "beam_size": spec["beam_size"],
              "compile": spec["decode_compile"]}
    if nar:
        fields["passes"] = int(method[4:])
    return DecodeConfig(**fields)


def _output_tokens(out, src, peer: bool, arch: str) -> int:
    if peer and arch == "decoder":
        out = out[:, src.size(1):]
    elif peer and arch == "encdec":
        out = out[:, 1:]  # the decoder start token
    return int(((out != PAD) & (out != 2)).sum())


def resolve(spec: dict) -> dict:
    """DEFAULT_SPEC under `spec`. `compile=True` is the alias that turns both fast paths on (`train_compile`: the
    compiled training forward, `decode_compile`: the compiled static decode step); `compile` then records whether
    both are on."""
    spec = {**DEFAULT_SPEC, **spec}
    if spec["compile"]:
        spec["train_compile"] = spec["decode_compile"] = True
    spec["compile"] = bool(spec["train_compile"] and spec["decode_compile"])
    return spec


def _models(spec, device) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """Ours and, where one exists and transformers is installed, the HF peer of the same shape, on `device`."""
    ours = build_ours(spec).to(device)
    peer = None
    if spec["peers"] and spec["arch"] in peers.PEER_OF and peers.available():
        peer = peers.build_peer(spec["arch"], spec["vocab"], spec["d_model"], spec["n_heads"], spec["n_layers"],
                                spec["d_ff"], spec["dropout"],
                                max_positions=spec["src_len"] + spec["new_tokens"] + 2).to(device)
    if spec["train_compile"]:  # the training fast path; the decode one is generate(compile=True)
        ours.compile()
    return ours, peer


def _train(spec, ours, peer, ids) -> dict:
    """Training tokens/s of ours (and the peer's, interleaved), one optimizer step per repeat (MFU: `_add_mfu`)."""
    device, arch, b = torch.device(spec["device"]), spec["arch"], spec["train_batch"]
    src, tgt = ids(b, spec["src_len"]), ids(b, spec["new_tokens"])
    ce = compile_loss() if spec["train_compile"] else F.cross_entropy  # as the tasks train (src/train.py)
    fns = {"ours": _train_fn(ours, lambda m, s, t: _ours_loss(m, arch, s, t, ce), spec, src, tgt)}
    if peer:
        fns["hf"] = _train_fn(peer, lambda m, s, t: peers.peer_forward_loss(m, arch, s, t), spec, src, tgt)
    if _cuda(device):
        torch.cuda.reset_peak_memory_stats(device)
    times = interleaved(fns, device, spec["warmup"], spec["repeats"])
    tokens = b * (spec["src_len"] + spec["new_tokens"])
    rnn = {k: v for k, v in spec["arch_params"].items() if k in ("cell", "attention")}
    flops = train_flops(arch, spec["d_model"], spec["d_ff"], spec["n_layers"], spec["vocab"], b, spec["src_len"],
                        spec["new_tokens"], **rnn)
    train = {"batch": b, "tokens_per_step": tokens, "flops_per_step": flops, "peak_memory_mib": _peak_memory(device)}
    for name, ts in times.items():
        sec = statistics.median(ts)
        train[name] = {"tokens_per_s": tokens / sec, "spread": spread_of(ts)}
    if peer:
        train["ratio"] = train["ours"]["tokens_per_s"] / train["hf"]["tokens_per_s"]
    return train


def _add_mfu(train: dict, peak: float) -> None:
    for name in ("ours", "hf"):
        if name in train:
            steps_per_s = train[name]["tokens_per_s"] / train["tokens_per_step"]
            train[name]["mfu"] = train["flops_per_step"] * steps_per_s / peak if train["flops_per_step"] else None


def _peaks(device) -> dict:
    return {"fp32": matmul_peak(device, torch.float32), "bf16": matmul_peak(device, torch.bfloat16)}


def _inference_row(spec, models: dict, method: str, b: int, mode: str, src) -> dict:
    """One row: `method` at batch `b` in `mode`, ours and the peer interleaved; ratio = ours / peer tokens/s."""
    device, arch = torch.device(spec["device"]), spec["arch"]
    fns, counts = {}, {}
    for name, model in models.items():
        if model is None or (name == "hf" and method == "sample" and mode == "natural"):
            continue
        fn, fixed_count = _infer_fn(model, spec, method, src, mode, name == "hf")
        counts[name] = fixed_count or _output_tokens(fn(), src, name == "hf", arch)
        fns[name] = fn
    if _cuda(device):
        torch.cuda.reset_peak_memory_stats(device)
    times = interleaved(fns, device, spec["warmup"], spec["repeats"])
    row = {"method": method, "batch_size": b, "mode": mode, "peak_memory_mib": _peak_memory(device)}
    for name, ts in times.items():
        sec = statistics.median(ts)
        row[name] = {"ms_per_sentence": 1000 * sec / b, "ms_per_token": 1000 * sec / max(1, counts[name]),
                     "tokens_per_s": counts[name] / sec, "output_tokens": counts[name] / b, "spread": spread_of(ts),
                     "threads": torch.get_num_threads()}
    if "hf" in row:  # speed ratio: tokens/s (the same count in fixed mode)
        row["ratio"] = row["ours"]["tokens_per_s"] / row["hf"]["tokens_per_s"] if counts["hf"] else None
    return row


def _inference(spec, ours, peer, ids) -> list[dict]:
    """Rows for each method × batch size × mode (encoder: one forward; nar: mask-predict 1 and `passes` passes)."""
    arch = spec["arch"]
    ours.eval()
    if peer:
        peer.eval()
    methods = ["forward"] if arch == "encoder" else (
        [f"pass{p}" for p in sorted({1, spec["passes"]})] if arch == "nar" else spec["methods"])
    modes = ["natural"] if arch == "encoder" else spec["modes"]
    rows = []
    with torch.inference_mode(), _autocast(spec):
        for method in methods:
            sizes = spec["beam_batch_sizes"] if method == "beam" and spec["beam_batch_sizes"] else spec["batch_sizes"]
            for b in sizes:
                src = ids(b, spec["src_len"])
                rows += [_inference_row(spec, {"ours": ours, "hf": peer}, method, b, mode, src) for mode in modes]
    return rows


def benchmark(spec: dict) -> dict:
    """The whole comparison for `spec` (DEFAULT_SPEC's keys): machine, peaks, parameters, training, inference."""
    spec = resolve(spec)
    device = torch.device(spec["device"])
    torch.manual_seed(spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"])
    ours, peer = _models(spec, device)
    dtype_peaks = _peaks(device)
    result = {"spec": spec, "machine": {**machine(), "device": torch.cuda.get_device_name(device) if _cuda(device)
                                        else "cpu", "torch": torch.__version__},
              "peak_flops": dtype_peaks,
              "params": {"ours": sum(p.numel() for p in ours.parameters()),
                         "hf": sum(p.numel() for p in peer.parameters()) if peer else None},
              "peer": peers.PEER_OF.get(spec["arch"]) if peer else None, "train": None, "inference": []}

    def ids(b, t):
        return torch.randint(FIRST_ID, spec["vocab"], (b, t), generator=gen).to(device)

    if spec["train"]:
        result["train"] = _train(spec, ours, peer, ids)
        # the peaks again after the timed steps, the higher kept: one short reading on a noisy VM can under-measure
        # the peak (an MFU over 100 % was seen), never over-measure it
        dtype_peaks.update({k: max(v, dtype_peaks[k]) for k, v in _peaks(device).items()})
        _add_mfu(result["train"], dtype_peaks["bf16" if "bf16" in str(spec["precision"]) else "fp32"])
    drawn = {}  # batch size -> the first sources ours decoded at it, for CTranslate2's rows

    def inference_ids(b, t):
        x = ids(b, t)
        drawn.setdefault(b, x)
        return x

    result["inference"] = _inference(spec, ours, peer, inference_ids)
    if spec["ct2"]:
        from .deploy import bench_ct2

        result["ct2"] = bench_ct2(spec, ours, result["inference"], drawn)
    result["machine"]["load_avg_1min_end"] = machine()["load_avg_1min"]
    return result


def markdown(result: dict) -> str:
    """The result as markdown tables: training, then inference rows; the HF columns and ratios only with a peer."""
    s, m = result["spec"], result["machine"]
    peer = result["peer"]
    header = (f"# archbench speed: {s['arch']} L={s['n_layers']} d={s['d_model']} h={s['n_heads']} ff={s['d_ff']} "
              f"V={s['vocab']} src={s['src_len']} new={s['new_tokens']} · {m['device']} · {m['threads']} threads · "
              f"load {m['load_avg_1min']:.2f} · {m.get('allocator', '?')} malloc · {s['precision']} · "
              f"{_compiled(s)}" + (" · int8 decode (decode.int8)" if (s.get("decode") or {}).get("int8") else ""))
    params = f"params: ours {result['params']['ours']:,}" + (f" · {peer} {result['params']['hf']:,}" if peer else "")
    if m.get("cpu"):  # bench.json from before the machine line has none
        header += f"\n\nmachine: {cpu_line(m['cpu'])} · threads: ours {_threads(result, 'ours')}" + (
            f", {peer} {_threads(result, 'hf')}" if peer else "") + (
            f", CT2 {_threads(result, 'ct2')}" if _ct2_quantizations(result) else "")
    lines = [header, "", f"{params} · peak matmul fp32 {result['peak_flops']['fp32'] / 1e9:.0f} GFLOP/s, bf16 "
             f"{result['peak_flops']['bf16'] / 1e9:.0f} GFLOP/s", ""]
    vs = [f"{peer} tokens/s", f"ratio ours/{peer}"] if peer else []
    t = result["train"]
    if t:
        cells = [f"{t['hf']['tokens_per_s']:,.0f}", f"{t['ratio']:.2f}×"] if peer else []
        lines += [_row(["training", "ours tokens/s", "ours MFU", *vs]), _row(["---"] * (3 + len(vs))),
                  _row([f"B={t['batch']}", f"{t['ours']['tokens_per_s']:,.0f}", f"{(t['ours']['mfu'] or 0) * 100:.1f} %",
                        *cells]), ""]
    vs = [f"{peer} ms/token", f"{peer} tokens/s", f"ratio ours/{peer}"] if peer else []
    ct2 = _ct2_quantizations(result)
    vs += [c for q in ct2 for c in (f"CT2 {q} ms/token", f"CT2 {q} tokens/s (threads)", f"ratio ours/CT2 {q}")]
    cols = ["method", "batch", "mode", "tokens out", "ours ms/token", "ours tokens/s", *vs, "spread ours", "peak MiB"]
    lines += [_row(cols), _row(["---"] * len(cols))]
    for r in result["inference"]:
        o, h = r["ours"], r.get("hf")
        cells = ([f"{h['ms_per_token']:.3f}", f"{h['tokens_per_s']:,.0f}", f"{r['ratio'] or float('nan'):.2f}×"]
                 if h else ["–"] * 3) if peer else []
        for q in ct2:
            c = r.get(f"ct2_{q}")
            cells += ([f"{c['ms_per_token']:.3f}", f"{c['tokens_per_s']:,.0f} ({c['threads']})",
                       f"{r[f'ratio_vs_ct2_{q}']:.2f}×"] if c else ["–"] * 3)
        lines.append(_row([r["method"], r["batch_size"], r["mode"], f"{o['output_tokens']:.1f}",
                           f"{o['ms_per_token']:.3f}", f"{o['tokens_per_s']:,.0f}", *cells, f"{o['spread']:.2f}",
                           f"{r['peak_memory_mib']:.0f}"]))
    if ct2:
        c = result.get("ct2") or {}
        lines += ["", f"CTranslate2 {c.get('version', '?')} on CPU in its own process, the fastest of threads "
                      f"{c.get('threads_tried')} (in brackets); the same sources and exactly the same output tokens "
                      "as ours (fixed mode, <eos> banned); ratio = ours / CT2 tokens/s."]
    elif (result.get("ct2") or {}).get("skipped"):
        lines += ["", f"CTranslate2: {result['ct2']['skipped']}."]
    return "\n".join(lines) + "\n"


def _threads(result: dict, engine: str) -> str:
    """The thread counts `engine` ("ours", "hf", "ct2": every quantization) was timed at, over the inference rows."""
    counts = sorted({e["threads"] for r in result["inference"] for k, e in r.items() if isinstance(e, dict)
                     and (k == engine or k.startswith(f"{engine}_")) and e.get("threads") is not None})
    return "/".join(map(str, counts)) or str(result["machine"].get("threads", "?"))


def _ct2_quantizations(result: dict) -> list[str]:
    """The CT2 quantizations some inference row carries (`ct2_<q>`), in the order first seen."""
    seen = [k[4:] for r in result["inference"] for k in r if k.startswith("ct2_")]
    return list(dict.fromkeys(seen))


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _compiled(spec: dict) -> str:
    """Which fast paths the table timed (bench.json from before train_compile / decode_compile: `compile` alone)."""
    train, decode = spec.get("train_compile", spec["compile"]), spec.get("decode_compile", spec["compile"])
    if train and decode:
        return "fast paths (compile)"
    return {(True, False): "compiled training, eager decode", (False, True): "eager training, compiled decode"}.get(
        (bool(train), bool(decode)), "eager")
