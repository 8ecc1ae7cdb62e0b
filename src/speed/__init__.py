"""Speed: how fast our models train and decode, measured honestly, and against HF peers of the same shape.

timing (the one timing loop, spread, machine), inference (a trained run's inference timing, results.json),
compare (ours vs the peers: `benchmark(spec)` + markdown), peers (the HF models), flops (model FLOPs, matmul peak,
MFU), ct2 (CTranslate2 timed in its own process), runtime (threads, allocator, compile, bf16), __main__ (`python -m src.speed`). Plain Python but __main__:
nothing here imports Hydra, so experiments/benchmarks/run_gpu.py runs on an image without it.
"""
