"""Where a training step's time goes at the bench shape (encdec 3+3, d 256, FFN 1024, vocab 8k, batch 32, 32 + 32
tokens), eager, fp32 and bf16 autocast: the step beside its linear layers' GEMMs alone at their real shapes (forward,
dX, dW), which bounds the MFU any step of this model can reach here, and an in-process A/B of SDPA's default CPU
kernel (flash) against its math backend, alternating step by step.

    python experiments/benchmarks/train_ceiling.py        # 2 threads; about 2 minutes on a 2-core VM

Figures: experiments/benchmarks/README.md (the training ceiling). Prints one block per precision.
"""
import statistics

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from src.speed.compare import DEFAULT_SPEC, _ours_loss, _train_fn, build_ours
from src.speed.flops import matmul_peak, train_flops
from src.speed.timing import interleaved, measure

B, S, D, F, V, L = 32, 32, 256, 1024, 8000, 3
N = B * S  # tokens per side
ENC = [(D, 3 * D), (D, D), (D, F), (F, D)]  # (in, out) of each linear: q+kv, out, FFN up, FFN down
DEC = [(D, 3 * D), (D, D), (D, D), (D, 2 * D), (D, D), (D, F), (F, D)]  # self q+kv, out, cross q, kv, out, FFN
LINEARS = ENC * L + DEC * L + [(D, V)]


def gemm_seconds(dtype) -> float:
    """The linears' three GEMMs each (forward x·W, dX = dY·Wᵀ, dW = Xᵀ·dY), timed at their shapes, summed."""
    total, cache = 0.0, {}
    for k, n in LINEARS:
        for a, b in (((N, k), (k, n)), ((N, n), (n, k)), ((k, N), (N, n))):
            if (a, b) not in cache:
                x, w = torch.randn(*a, dtype=dtype), torch.randn(*b, dtype=dtype)
                cache[a, b] = statistics.median(measure(lambda: x @ w, "cpu", warmup=3, repeats=20)[0])
            total += cache[a, b]
    return total


def main() -> None:
    torch.set_num_threads(2)
    flops = train_flops("encdec", D, F, L, V, B, S, S)
    for precision, dtype in (("32-true", torch.float32), ("bf16-mixed", torch.bfloat16)):
        spec = dict(DEFAULT_SPEC, precision=precision)
        torch.manual_seed(0)
        model = build_ours(spec)
        src, tgt = torch.randint(4, V, (B, S)), torch.randint(4, V, (B, S))
        step = _train_fn(model, lambda m, s, t: _ours_loss(m, "encdec", s, t), spec, src, tgt)

        def math_step():
            with sdpa_kernel(SDPBackend.MATH):
                step()

        times = interleaved({"flash": step, "math": math_step}, "cpu", warmup=3, repeats=8)
        flash, math = (statistics.median(times[k]) for k in ("flash", "math"))
        gemms, peak = gemm_seconds(dtype), matmul_peak("cpu", dtype)
        print(f"{precision}: step {flash * 1e3:.1f} ms (MFU {flops / flash / peak:.1%} of the measured peak "
              f"{peak / 1e9:.0f} GFLOP/s); the linear GEMMs alone {gemms * 1e3:.1f} ms "
              f"({flops / gemms / peak:.1%} MFU if the step were only them); outside them {(flash - gemms) * 1e3:.1f} ms "
              f"({(flash - gemms) / flash:.0%}); SDPA math backend {math * 1e3:.1f} ms ({flash / math:.2f}x the default)",
              flush=True)


if __name__ == "__main__":
    main()
