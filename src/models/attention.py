"""Multi-head attention (Vaswani et al. 2017, §3.2), its masks and the incremental KV cache.

One module serves every use in this package: encoder self-attention (padding mask only), decoder masked
self-attention (causal + padding), and cross-attention whose K, V come from the encoder's final output.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Preallocated keys/values of one attention layer, indexed by position: `k`, `v` are (B, H, max_len, d_head)
    buffers. (The compiled decode step brings its own cache with the same `update`: src/decoding/static.py.)"""

    def __init__(self, batch: int, n_heads: int, max_len: int, d_head: int, *, dtype, device):
        self.k = torch.zeros(batch, n_heads, max_len, d_head, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)

    def update(self, pos: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new steps k, v (B, H, T, d_head) at slots pos..pos+T-1; return the filled prefix K, V[:, :, :pos+T]."""
        end = pos + k.size(2)
        if end > self.k.size(2):
            raise ValueError(f"KV cache overflow: position {end} > max_len {self.k.size(2)}")
        self.k[:, :, pos:end] = k
        self.v[:, :, pos:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search): row i becomes old row index[i]."""
        self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W_O,  head_i = Attention(Q W_Q,i, K W_K,i, V W_V,i),
    Attention(Q, K, V) = softmax(QKᵀ / √d_k + M) V,  M = 0 where the mask allows attention, −∞ elsewhere.
    The per-head projections are one d_model × d_model matrix for Q (`q_proj`), one d_model × 2·d_model for K and
    V together (`kv_proj`)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.keep_weights = False  # set True to keep the last head-averaged attention matrix in `.weights`
        self.weights: torch.Tensor | None = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, H, T, d_head)
        return x.unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv_proj(x).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        pos: int | torch.Tensor = 0,
        memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x: (B, Tq, D) queries. Keys/values come from `memory` (cross-attention), from precomputed `memory_kv`,
        or from x itself (self-attention, appended to `cache` at `pos` when decoding incrementally).
        mask: bool, broadcastable to (B, H, Tq, Tk), True where attention is allowed."""
        q = self._heads(self.q_proj(x))
        if memory_kv is not None:
            k, v = memory_kv
        else:
            k, v = self.project_kv(x if memory is None else memory)
            if cache is not None:
                k, v = cache.update(pos, k, v)
        if self.keep_weights or (q.size(2) == 1 and q.device.type == "cpu" and torch.compiler.is_compiling()):
            # the explicit product: kept weights, or one query in a compiled CPU decode step, where inductor fuses it
            # into the step's own loops (the fused kernel's per-call setup dominates at one query)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            attn = scores.softmax(-1)
            if self.keep_weights:
                self.weights = attn.mean(1).detach()
            out = attn @ v
        else:
            out = fused_attention(q, k, v, mask, self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).flatten(-2))


def fused_attention(q, k, v, mask, dropout_p: float) -> torch.Tensor:
    """softmax(QKᵀ / √d_k + M) V in torch's fused kernel. bf16 operands on CPU that need gradients (training under
    bf16 autocast) are computed in fp32 and the output cast back: the CPU kernel's bf16 backward is several times
    slower than its fp32 one. Without gradients (validation, decoding) its bf16 forward is the faster and is kept
    (figures: experiments/benchmarks/README.md)."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.requires_grad:
        with torch.autocast("cpu", enabled=False):
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, dropout_p=dropout_p)
        return out.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(B, T) tokens -> (B, 1, 1, T) bool, True at real tokens: no query may attend to a pad key."""
    return (tokens != pad_id)[:, None, None, :]


def causal_mask(t: int, device=None) -> torch.Tensor:
    """(T, T) bool look-ahead mask, True on and below the diagonal: position i sees positions ≤ i only."""
    return torch.ones(t, t, dtype=torch.bool, device=device).tril()


def self_attention_mask(valid: torch.Tensor, causal: bool, start: int = 0) -> torch.Tensor:
    """(B, T) bool of real keys -> (B, 1, T-start, T) for the queries at positions start..T-1 (start > 0: the new
    tokens of an incremental step): keys must be real (and not in the future if causal). Each position may always
    see itself, so rows of pad queries never become all -inf (NaN)."""
    t = valid.size(1)
    mask = valid[:, None, None, :]
    if causal:
        mask = mask & causal_mask(t, valid.device)[start:]
    return mask | torch.eye(t, dtype=torch.bool, device=valid.device)[start:]
