"""Eager vs compiled static decode step, interleaved in one process (issue 8, part 2), on the issue's CPU shape:
encdec 3+3 layers, d_model 256, 4 heads, FFN 1024, vocab 8k, source 16 tokens, 32 new tokens (<eos> banned, so
every run produces exactly 32). Prints ms/token (median of repeats; eager and compiled alternate each repeat).

    python experiments/benchmarks/fastpath_speed.py [--repeats 10] [--threads N] [--batch 1 8] [--device cpu|cuda]
                                                    [--methods greedy beam] [--tiny]

--tiny is the smoke run (a 1-layer d 16 model, 4 new tokens: it checks the script, its figures mean nothing).
Run it on a quiet machine: on a loaded one the figures are only indicative. The full benchmark (HF peers,
batch sizes, training) is `python -m src.speed`.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from src.config import DecodeConfig  # noqa: E402
from src.decoding import generate  # noqa: E402
from src.models.transformer import EncoderDecoder  # noqa: E402
from src.speed.timing import interleaved, seconds  # noqa: E402

SHAPE = dict(vocab_size=8000, d_model=256, n_heads=4, n_layers=3, d_ff=1024, src_len=16, new_tokens=32)
TINY = dict(vocab_size=100, d_model=16, n_heads=2, n_layers=1, d_ff=32, src_len=6, new_tokens=4)


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--methods", nargs="+", default=["greedy", "beam"], choices=["greedy", "beam"])
    ap.add_argument("--tiny", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shape, device = TINY if args.tiny else SHAPE, torch.device(args.device)
    torch.manual_seed(0)
    model = EncoderDecoder(shape["vocab_size"], shape["d_model"], shape["n_heads"], shape["n_layers"], shape["d_ff"],
                           dropout=0.0).to(device).eval()
    new = shape["new_tokens"]
    cases = [(f"greedy B={b}", DecodeConfig(method="greedy"), b) for b in args.batch if "greedy" in args.methods]
    cases += [("beam 4 B=1", DecodeConfig(method="beam", beam_size=4), 1)] if "beam" in args.methods else []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}; ms/token, median of {args.repeats}")
    for name, decode, b in cases:
        src = torch.randint(5, shape["vocab_size"], (b, shape["src_len"]), device=device)
        fns = {c: (lambda d=dataclasses.replace(decode, compile=c): generate(model, src, d, new, fixed_length=True))
               for c in (False, True)}  # fixed_length: <eos> banned, exactly `new` tokens per row
        for compiled, fn in fns.items():  # warm-up (and compile)
            t, out = seconds(fn, device)
            assert out.size(1) == new, out.shape
            print(f"  {name} compile={compiled}: first call {t:.1f} s")
        times = interleaved(fns, device, warmup=0, repeats=args.repeats)
        eager, fast = (1000 * statistics.median(times[c]) / new for c in (False, True))
        print(f"{name}: eager {eager:.2f} ms/token, compiled {fast:.2f} ms/token, speed-up {eager / fast:.2f}x")


if __name__ == "__main__":
    main()
