"""Eager vs compiled static decode step, interleaved in one process (issue 8, part 2), on the issue's CPU shape:
encdec 3+3 layers, d_model 256, 4 heads, FFN 1024, vocab 8k, source 16 tokens, 32 new tokens (<eos> banned, so
every run produces exactly 32). Prints ms/token (median of repeats; eager and compiled alternate each repeat).

    python experiments/benchmarks/fastpath_speed.py [--repeats 10] [--threads N]

Run it on a quiet machine: on a loaded one the figures are only indicative. The full benchmark (HF peers,
batch sizes, training) is `python -m src.bench`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from src.models import generation  # noqa: E402
from src.models.transformer import EncoderDecoder  # noqa: E402
from src.models.vocab import EOS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = EncoderDecoder(8000, 256, 4, 3, 1024, dropout=0.0).eval()
    generation.NEVER_GENERATED.append(EOS)  # fixed length: exactly 32 tokens per row
    new = 32
    cases = [(f"greedy B={b}", dict(method="greedy"), b) for b in args.batch]
    cases.append(("beam 4 B=1", dict(method="beam", beam_size=4), 1))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms/token, median of {args.repeats}")
    for name, kw, b in cases:
        src = torch.randint(5, 8000, (b, 16))
        times = {False: [], True: []}
        for compiled in (False, True):  # warm-up (and compile)
            t = time.perf_counter()
            out = generation.generate(model, src, max_new_tokens=new, compile=compiled, **kw)
            assert out.size(1) == new, out.shape
            print(f"  {name} compile={compiled}: first call {time.perf_counter() - t:.1f} s")
        for _ in range(args.repeats):
            for compiled in (False, True):
                t = time.perf_counter()
                generation.generate(model, src, max_new_tokens=new, compile=compiled, **kw)
                times[compiled].append(1000 * (time.perf_counter() - t) / new)
        eager, fast = statistics.median(times[False]), statistics.median(times[True])
        print(f"{name}: eager {eager:.2f} ms/token, compiled {fast:.2f} ms/token, speed-up {eager / fast:.2f}x")


if __name__ == "__main__":
    main()
