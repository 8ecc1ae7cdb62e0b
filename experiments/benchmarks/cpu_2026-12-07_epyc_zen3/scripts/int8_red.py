import statistics, time, torch
from src.decoding.traced import compile_flat
from src.decoding.linear import CPU_STEP_OPTIONS
torch.manual_seed(0)
N, K = 8000, 256
w = torch.randn(N, K); q = torch.randint(-127, 128, (N, K), dtype=torch.int8); s = torch.rand(N); x = torch.randn(1, K)
variants = {
 "fp32": (lambda w, x: (w[:, None, :] * x).sum(-1), [w, x]),
 "int8_float": (lambda q, s, x: (q.float()[:, None, :] * x).sum(-1) * s[:, None], [q, s, x]),
 "int8_via_bf16": (lambda q, s, x: (q.to(torch.bfloat16).float()[:, None, :] * x).sum(-1) * s[:, None], [q, s, x]),
 "int8_int32": (lambda q, s, x: (q.to(torch.int32).float()[:, None, :] * x).sum(-1) * s[:, None], [q, s, x]),
}
for name, (fn, args) in variants.items():
    c = compile_flat(fn, args, CPU_STEP_OPTIONS)
    for _ in range(20): c(args)
    ts = []
    for _ in range(200):
        t0 = time.perf_counter(); c(args); ts.append(time.perf_counter() - t0)
    print(name, round(statistics.median(ts) * 1e6, 1), "us")
