"""Int8 weights for the static decode step (static.py, `decode.int8`): per-channel symmetric quantization of each
Linear's weight, W ≈ s ⊙ Q, read eagerly through fbgemm's int8 GEMM on dynamically quantized activations
(`int8_linear` over `int8_packed`), or compiled as the int8 reduction of linear.decode_linear (`int8_weights`)."""
from __future__ import annotations

from functools import lru_cache

import torch


def int8_weights(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W ≈ s ⊙ Q: per output row r, s_r = max_k |W_rk| / 127 and Q_rk = round(W_rk / s_r) ∈ [−127, 127] (symmetric,
    per channel). Returns (Q int8 (N, K), s fp32 (N,))."""
    w = weight.detach().float()
    scale = w.abs().amax(1).clamp_min(1e-12) / 127
    return (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8), scale


def int8_packed(weight: torch.Tensor, bias: torch.Tensor | None):
    """`int8_weights` packed once for fbgemm with the fp32 bias (torch.ops.quantized: deprecated in favour of torchao,
    still shipped)."""
    q, scale = int8_weights(weight)
    q = torch._make_per_channel_quantized_tensor(q, scale.double(), torch.zeros(q.size(0), dtype=torch.long), 0)
    return torch.ops.quantized.linear_prepack(q, None if bias is None else bias.detach().float())


@lru_cache(None)
def int8_reduce_range() -> bool:
    """fbgemm's u8·s8 products are summed in pairs into saturating int16 (vpmaddubsw) except on avx512_vnni, so
    activations get 7 bits there (reduce_range) and the full 8 bits only with VNNI."""
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512_vnni" not in f.read()
    except OSError:
        return True


def int8_linear(x: torch.Tensor, packed, out_features: int) -> torch.Tensor:
    """x·Wᵀ + b with int8 W (`int8_packed`) and x quantized to uint8 per call over its own range (dynamic
    quantization, fbgemm's int8 GEMM with int32 accumulation): a quarter of fp32's weight bytes to stream per step."""
    y = torch.ops.quantized.linear_dynamic(x.reshape(-1, x.size(-1)).float(), packed, int8_reduce_range())
    return y.reshape(*x.shape[:-1], out_features).to(x.dtype)
