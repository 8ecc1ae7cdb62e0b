"""Model FLOPs (analytic, from shapes) and the device's measured matmul peak, for MFU (Chowdhery et al. 2022, PaLM
appendix B: MFU = achieved model FLOP/s / peak FLOP/s; model FLOPs count no recomputation) and for compute-matched
training budgets (src/budget.py).

A matmul of (m × k)·(k × n) is 2·m·k·n FLOPs. Per Transformer layer, with width d, FFN width f, per token:
  self-attention projections (q, k, v, out)  2·4d²
  FFN                                        2·2df
  attention scores QKᵀ and weights·V         2·2·d·T_keys   (full T_keys, no causal discount, as in PaLM)
  cross-attention (decoder of encdec / nar)  2·2d² per target token (q, out) + 2·2d² per source token (k, v)
                                             + 2·2·d·S
  LM head                                    2·d·V per output position (classifiers: 2·d·C once per sequence)
  NAR length head                            2·d·(max_length + 1) once per sequence
RNN encoder-decoder (src/models/rnn_attn.py), G gates (GRU 3, LSTM 4), L layers, width d:
  encoder, per source token   bidirectional: layer 1  2·2·G·d·(d + d),  layers ≥ 2  2·2·G·d·(2d + d)
                              + W_p 2·2d·d  + the source side of the score (bahdanau W₁, general W) 2·d²
  bridge, per sequence        W_i (and LSTM's cell bridge) 2·2d·d per layer
  decoder, per target step    layer 1 (input feeding: [emb; h̃]) 2·G·d·(2d + d),  layers ≥ 2  2·G·d·(d + d)
                              attention: bahdanau W₂ 2·d² + vᵀ 2·d·S,  dot / general scores 2·d·S;  c_t 2·d·S
                              (none: no attention at all);  W_c 2·2d·d;  W_o 2·d·V
Training = 3 × forward (backward = 2 × forward): per token, 6N for the N matmul parameters plus the attention
terms, the convention of Kaplan et al. 2020 (§2.1, C ≈ 6N per token) and Chinchilla (Hoffmann et al. 2022,
appendix F, which also counts attention). Embeddings, norms, softmax, gate nonlinearities and biases are not
counted. tests/unit/speed/test_flops.py checks every arch against torch's FlopCounterMode on a real forward pass.
"""
from __future__ import annotations

import time

import numpy as np
import torch


def _layer(d: int, f: int, keys) -> int:
    return 2 * 4 * d * d + 2 * 2 * d * f + 2 * 2 * d * keys


RNN_GATES = {"gru": 3, "lstm": 4}


def rnn_forward_flops(d: int, n_layers: int, vocab: int, batch: int, src_len, tgt_len, cell: str = "gru",
                      attention: str = "bahdanau"):
    """Forward FLOPs of one teacher-forced batch of src/models/rnn_attn.py's RNNAttention (module docstring)."""
    g, rest = RNN_GATES[cell], n_layers - 1
    enc = 2 * 2 * g * d * 2 * d + rest * 2 * 2 * g * d * 3 * d + 2 * 2 * d * d  # both directions + W_p
    enc += 2 * d * d if attention in ("bahdanau", "general") else 0  # precomputed source side of the score
    bridge = n_layers * 2 * 2 * d * d * (2 if cell == "lstm" else 1)
    dec = 2 * g * d * 3 * d + rest * 2 * g * d * 2 * d + 2 * 2 * d * d + 2 * d * vocab  # RNN, W_c, W_o
    if attention == "bahdanau":
        dec += 2 * d * d + 2 * d * src_len + 2 * d * src_len  # W₂ h_t, vᵀ tanh(…), c_t
    elif attention in ("dot", "general"):
        dec += 2 * d * src_len + 2 * d * src_len  # scores, c_t
    return batch * (src_len * enc + bridge + tgt_len * dec)


def forward_flops(arch: str, d: int, f: int, n_layers: int, vocab: int, batch: int, src_len, tgt_len,
                  n_classes: int = 2, *, task: str = "translation", cell: str = "gru", attention: str = "bahdanau",
                  length_classes: int = 0):
    """Forward FLOPs of one batch (teacher forcing): encdec/nar (src_len → tgt_len; nar: + a length head of
    `length_classes`), rnn_attn / rnn_seq2seq (the same, `cell` and `attention` as the arch's params; rnn_seq2seq is
    attention none), decoder (an LM over src_len + tgt_len tokens; the LM head on every token for task=lm, on the
    tgt_len target tokens for the translation prefix LM, on the last token for classification),
    encoder (classify src_len tokens). Lengths may be numpy arrays (one example each, batch=1)."""
    if arch in ("encdec", "nar"):
        enc = src_len * _layer(d, f, src_len)
        dec = tgt_len * (_layer(d, f, tgt_len) + 2 * 2 * d * d + 2 * 2 * d * src_len) + src_len * 2 * 2 * d * d
        return batch * (n_layers * (enc + dec) + tgt_len * 2 * d * vocab + 2 * d * length_classes)
    if arch in ("rnn_attn", "rnn_seq2seq"):
        return rnn_forward_flops(d, n_layers, vocab, batch, src_len, tgt_len, cell,
                                 "none" if arch == "rnn_seq2seq" else attention)
    if arch == "decoder":
        t = src_len + tgt_len
        scored = tgt_len if task == "translation" else t  # the prefix LM scores its target only
        head = 2 * d * n_classes if task == "classification" else scored * 2 * d * vocab
        return batch * (n_layers * t * _layer(d, f, t) + head)
    if arch == "encoder":
        return batch * (n_layers * src_len * _layer(d, f, src_len) + 2 * d * n_classes)
    raise ValueError(f"no FLOPs count for arch {arch!r}")


def train_flops(*args, **kw):
    """Training FLOPs of one batch: 3 × forward (backward = 2 × forward)."""
    return 3 * forward_flops(*args, **kw)


def example_shapes(arch: str, task: str, lengths: dict):
    """Per training example (numpy arrays of token counts from the encoded split): (src_len, tgt_len) as the model
    sees them, and the tokens a run counts as trained on (src/tasks: non-pad source + target, an LM's inputs after
    the first token, a classifier's inputs). Translation AR models read <bos> y (target + 1), the NAR model y."""
    if task == "translation":
        s, t = lengths["src"], lengths["tgt"]
        return s, (t if arch == "nar" else t + 1), s + t
    if task == "lm":
        n = np.maximum(lengths["text"] - 1, 0)
        return n, 0 * n, n
    s = lengths["text"]
    return s, 0 * s, s


def flops_per_token(arch: str, task: str, size: dict, params: dict, vocab: int, n_classes: int,
                    lengths: dict) -> float:
    """Training FLOPs per trained token of a run: 3 × Σ forward FLOPs of each training example at its own
    (unpadded) lengths / Σ its tokens; the attention terms grow with length, so this is exact over the split, not
    at a mean length. `size`: d_model, d_ff, n_layers; `params`: the arch's (cell, attention, max_length)."""
    src, tgt, tokens = example_shapes(arch, task, {k: np.asarray(v, dtype=np.float64) for k, v in lengths.items()})
    fwd = forward_flops(arch, size["d_model"], size["d_ff"], size["n_layers"], vocab, 1, src, tgt, n_classes,
                        task=task, cell=params.get("cell", "gru"), attention=params.get("attention", "bahdanau"),
                        length_classes=params.get("max_length", 256) + 1 if arch == "nar" else 0)
    return 3 * float(np.sum(fwd)) / max(float(np.sum(tokens)), 1.0)


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
