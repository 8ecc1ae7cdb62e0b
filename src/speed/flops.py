"""Model FLOPs (analytic, from shapes) and the device's measured matmul peak, for MFU (Chowdhery et al. 2022, PaLM
appendix B: MFU = achieved model FLOP/s / peak FLOP/s; model FLOPs count no recomputation).

A matmul of (m × k)·(k × n) is 2·m·k·n FLOPs. Per layer, with width d, FFN width f, per token:
  self-attention projections (q, k, v, out)  2·4d²
  FFN                                        2·2df
  attention scores QKᵀ and weights·V         2·2·d·T_keys   (full T_keys, no causal discount, as in PaLM)
  cross-attention (decoder of encdec / nar)  2·2d² per target token (q, out) + 2·2d² per source token (k, v)
                                             + 2·2·d·S
  LM head                                    2·d·V per output position
Training = 3 × forward (backward = 2 × forward). Embeddings, norms, softmax and biases are not counted.
"""
from __future__ import annotations

import time

import torch


def _layer(d: int, f: int, keys: int) -> int:
    return 2 * 4 * d * d + 2 * 2 * d * f + 2 * 2 * d * keys


def forward_flops(arch: str, d: int, f: int, n_layers: int, vocab: int, batch: int, src_len: int, tgt_len: int,
                  n_classes: int = 2) -> int | None:
    """Forward FLOPs of one batch (teacher forcing): encdec/nar (src_len → tgt_len), decoder (an LM over
    src_len + tgt_len tokens), encoder (classify src_len tokens). None for rnn_attn (not a Transformer)."""
    if arch in ("encdec", "nar"):
        enc = src_len * _layer(d, f, src_len)
        dec = tgt_len * (_layer(d, f, tgt_len) + 2 * 2 * d * d + 2 * 2 * d * src_len) + src_len * 2 * 2 * d * d
        return batch * (n_layers * (enc + dec) + tgt_len * 2 * d * vocab)
    if arch == "decoder":
        t = src_len + tgt_len
        return batch * (n_layers * t * _layer(d, f, t) + t * 2 * d * vocab)
    if arch == "encoder":
        return batch * (n_layers * src_len * _layer(d, f, src_len) + 2 * d * n_classes)
    return None


def train_flops(*args, **kw) -> int | None:
    fwd = forward_flops(*args, **kw)
    return None if fwd is None else 3 * fwd


def matmul_peak(device, dtype: torch.dtype, n: int | None = None, repeats: int = 10, budget_s: float = 1.5) -> float:
    """Measured peak FLOP/s: the best of up to `repeats` n×n matmuls (n = 1024 on CPU, 8192 on GPU), stopping
    once `budget_s` is spent (a slow dtype is not probed for minutes). On a loaded machine the peak is
    under-measured, so MFU can read high: check the load average beside it."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best, started = float("inf"), time.perf_counter()
    for i in range(repeats + 1):
        if i > 2 and time.perf_counter() - started > budget_s:
            break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:  # the first is a warm-up
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
