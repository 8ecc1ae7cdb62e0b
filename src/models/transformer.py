"""Transformer encoder, decoder and encoder-decoder (Vaswani et al. 2017, "Attention Is All You Need").

Every box of the diagram is a block here, its formula in its docstring: Embedding, FeedForward, Residual (the
sublayer connection), EncoderLayer, DecoderLayer, Stack. Models: EncoderClassifier (BERT-like), DecoderLM /
DecoderClassifier / PrefixLM (GPT-like), EncoderDecoder (T5/BART-like); the autoregressive ones decode
incrementally through incremental.py's KV cache.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .attention import MultiHeadAttention, padding_mask, self_attention_mask
from .incremental import IncrementalDecoding, LayerCache
from .vocab import BOS, PAD


class Embedding(nn.Module):
    """Token embedding scaled by √d_model plus sinusoidal positions (§3.5; no length limit):
        x = E[token]·√d_model + PE(p),   PE(p, 2i) = sin(p / 10000^(2i/d_model)),  PE(p, 2i+1) = cos(p / 10000^(2i/d_model))
    The sin and cos of each frequency are interleaved (2i, 2i+1)."""

    def __init__(self, vocab_size: int, d_model: int, dropout: float):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        nn.init.normal_(self.tok.weight, std=d_model**-0.5)  # ·√d_model below brings it to unit scale
        self.tok.weight.data[PAD].zero_()
        self.d_model = d_model
        self.drop = nn.Dropout(dropout)
        inv_freq = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        angles = positions[..., None].float() * self.inv_freq  # (B, T, d/2)
        pe = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)
        return self.drop(self.tok(tokens) * math.sqrt(self.d_model) + pe)

    @staticmethod
    def positions(valid: torch.Tensor) -> torch.Tensor:
        """Position ids p that count real tokens only, so left padding does not shift positions."""
        return (valid.long().cumsum(1) - 1).clamp(min=0)


class FeedForward(nn.Sequential):
    """Position-wise feed-forward network (§3.3, with GELU for ReLU): FFN(x) = W₂ · GELU(W₁x + b₁) + b₂."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))


class Residual(nn.Module):
    """The sublayer connection around attention and FFN (§5.4), normalised after (post-LN, the paper's) or before
    (pre-LN, Xiong et al. 2020) the sublayer:
        post-LN  x ← LN(x + Dropout(sublayer(x)))        pre-LN  x ← x + Dropout(sublayer(LN(x)))"""

    def __init__(self, d_model: int, dropout: float, norm_first: bool):
        super().__init__()
        self.norm, self.drop, self.norm_first = nn.LayerNorm(d_model), nn.Dropout(dropout), norm_first

    def forward(self, x: torch.Tensor, sublayer) -> torch.Tensor:
        if self.norm_first:
            return x + self.drop(sublayer(self.norm(x)))
        return self.norm(x + self.drop(sublayer(x)))


class EncoderLayer(nn.Module):
    """X ← Residual(X, SelfAttn) ;  X ← Residual(X, FFN): self-attention sees every real token (padding mask)."""

    def __init__(self, d_model, n_heads, d_ff, dropout, norm_first):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.res1, self.res2 = (Residual(d_model, dropout, norm_first) for _ in range(2))

    def forward(self, x, mask):
        x = self.res1(x, lambda h: self.self_attn(h, mask=mask))
        return self.res2(x, self.ffn)


class DecoderLayer(nn.Module):
    """Y ← Residual(Y, SelfAttn) ;  Y ← Residual(Y, CrossAttn(·, memory)) ;  Y ← Residual(Y, FFN).
    Self-attention is masked (causal) in an autoregressive decoder. Cross-attention (when the model has an encoder)
    takes its Q from the decoder and its K, V from the *final* encoder output, the memory."""

    def __init__(self, d_model, n_heads, d_ff, dropout, norm_first, cross_attention: bool):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout) if cross_attention else None
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.res = nn.ModuleList(Residual(d_model, dropout, norm_first) for _ in range(3 if cross_attention else 2))

    def forward(self, y, self_mask, memory=None, memory_mask=None, cache: LayerCache | None = None, pos=0):
        y = self.res[0](y, lambda h: self.self_attn(h, mask=self_mask, cache=cache.self_kv if cache else None, pos=pos))
        if self.cross_attn is not None:
            memory_kv = cache.memory_kv if cache is not None else None
            y = self.res[1](y, lambda h: self.cross_attn(h, memory, memory_mask, memory_kv=memory_kv))
        return self.res[-1](y, self.ffn)


class Stack(nn.Module):
    """Embedding + N layers (+ final LayerNorm for pre-LN). The encoder is a bidirectional stack of EncoderLayers;
    a decoder stack of DecoderLayers is causal (AR) or bidirectional (NAR), with or without cross-attention."""

    def __init__(self, vocab_size, d_model, n_heads, n_layers, d_ff, dropout, norm_first, causal, cross_attention):
        super().__init__()
        self.embed = Embedding(vocab_size, d_model, dropout)
        self.causal, self.is_decoder = causal, causal or cross_attention
        if self.is_decoder:
            self.layers = nn.ModuleList(
                DecoderLayer(d_model, n_heads, d_ff, dropout, norm_first, cross_attention) for _ in range(n_layers)
            )
        else:
            self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout, norm_first) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()

    def forward(self, tokens, memory=None, memory_mask=None):
        """Full (training) pass: tokens (B, T) -> hidden (B, T, D). Pad tokens are never attended to."""
        valid = tokens != PAD
        x = self.embed(tokens, self.embed.positions(valid))
        mask = self_attention_mask(valid, self.causal)
        for layer in self.layers:
            x = layer(x, mask, memory, memory_mask) if self.is_decoder else layer(x, mask)
        return self.norm(x)


def make_lm_head(d_model, vocab_size, embed: Embedding, tie: bool) -> nn.Linear:
    """The output projection logits = h Wᵀ; tied (§3.4, Press & Wolf 2017): W is the token embedding matrix E."""
    head = nn.Linear(d_model, vocab_size, bias=False)
    if tie:
        head.weight = embed.tok.weight
    return head


class EncoderClassifier(nn.Module):
    """Bidirectional encoder (padding mask only) + mean-pooled linear classifier (BERT-like):
    logits = W · mean_{t real} h_t + b."""

    def __init__(self, vocab_size, n_classes, d_model, n_heads, n_layers, d_ff, dropout=0.1, norm_first=True, **_):
        super().__init__()
        self.encoder = Stack(vocab_size, d_model, n_heads, n_layers, d_ff, dropout, norm_first, False, False)
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, tokens):
        h = self.encoder(tokens)
        valid = (tokens != PAD).unsqueeze(-1)
        return self.head((h * valid).sum(1) / valid.sum(1).clamp(min=1))


class DecoderLM(IncrementalDecoding, nn.Module):
    """Causal self-attention language model (GPT-like): P(x_{t+1} | x_≤t) = softmax(h_t Wᵀ) at every position t."""

    def __init__(self, vocab_size, d_model, n_heads, n_layers, d_ff, dropout=0.1, norm_first=True, tie_weights=True, **_):
        super().__init__()
        self.decoder = Stack(vocab_size, d_model, n_heads, n_layers, d_ff, dropout, norm_first, True, False)
        self.lm_head = make_lm_head(d_model, vocab_size, self.decoder.embed, tie_weights)

    def forward(self, tokens):
        return self.lm_head(self.decoder(tokens))

    def start(self, prompt: torch.Tensor, max_new_tokens: int):
        """Left-padded prompt (B, P) -> (the prompt, an empty state with room for it and the new tokens)."""
        return prompt, self.new_state(prompt.size(0), prompt.size(1) + max_new_tokens)


class DecoderClassifier(nn.Module):
    """Causal decoder; the class is read from the last real token, the only one that has seen the whole input:
    logits = W h_last + b."""

    def __init__(self, vocab_size, n_classes, d_model, n_heads, n_layers, d_ff, dropout=0.1, norm_first=True, **_):
        super().__init__()
        self.decoder = Stack(vocab_size, d_model, n_heads, n_layers, d_ff, dropout, norm_first, True, False)
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, tokens):
        h = self.decoder(tokens)
        last = (tokens != PAD).sum(1).clamp(min=1) - 1
        return self.head(h[torch.arange(h.size(0), device=h.device), last])


def left_pad(src: torch.Tensor, append: int) -> torch.Tensor:
    """Right-padded (B, S) -> left-padded (B, S+1) with `append` after each sequence's last real token."""
    lengths = (src != PAD).sum(1)
    out = torch.full((src.size(0), src.size(1) + 1), PAD, dtype=src.dtype, device=src.device)
    shift = src.size(1) - lengths  # where each row's first real token lands
    cols = torch.arange(src.size(1), device=src.device)
    target = (cols[None] + shift[:, None]).clamp(max=src.size(1))
    out.scatter_(1, torch.where(src != PAD, target, torch.full_like(target, src.size(1))), src)
    out[:, -1] = append
    return out


class PrefixLM(DecoderLM):
    """Translation with a decoder only: the sequence is `source <bos> target <eos>`, loss on the target only."""

    def forward(self, src, tgt_in):
        """src (B, S) right-padded, tgt_in (B, T) = <bos> y₁..y_{T-1}. Returns (B, T, V) target logits."""
        prompt = left_pad(src, append=BOS)[:, :-1]  # left-padded source; tgt_in supplies the <bos> separator
        seq = torch.cat([prompt, tgt_in], 1)
        h = self.decoder(seq)  # left pads: positions count real tokens only, as in decoding
        return self.lm_head(h[:, prompt.size(1) :])  # the head on target positions only: no logits for the source

    def start(self, src: torch.Tensor, max_new_tokens: int):
        return super().start(left_pad(src, append=BOS), max_new_tokens)


class EncoderDecoder(IncrementalDecoding, nn.Module):
    """Encoder + decoder with cross-attention on the final encoder output (T5/BART-like)."""

    def __init__(self, vocab_size, d_model, n_heads, n_layers, d_ff, dropout=0.1, norm_first=True, tie_weights=True, **_):
        super().__init__()
        self.encoder = Stack(vocab_size, d_model, n_heads, n_layers, d_ff, dropout, norm_first, False, False)
        self.decoder = Stack(vocab_size, d_model, n_heads, n_layers, d_ff, dropout, norm_first, True, True)
        self.decoder.embed.tok = self.encoder.embed.tok  # one shared vocabulary
        self.lm_head = make_lm_head(d_model, vocab_size, self.decoder.embed, tie_weights)

    def encode(self, src):
        return self.encoder(src), padding_mask(src, PAD)

    def forward(self, src, tgt_in):
        memory, memory_mask = self.encode(src)
        return self.lm_head(self.decoder(tgt_in, memory, memory_mask))

    def start(self, src, max_new_tokens: int):
        """Encode the source: (<bos> (B, 1), a state with its cross-attention K/V and an empty self-attention cache)."""
        memory, memory_mask = self.encode(src)
        state = self.new_state(src.size(0), max_new_tokens + 1, memory, memory_mask)
        return torch.full((src.size(0), 1), BOS, dtype=torch.long, device=src.device), state

    def cross_attention(self, src, tgt_in) -> torch.Tensor:
        return last_cross_attention(self, src, tgt_in)


def last_cross_attention(model: nn.Module, src, tgt) -> torch.Tensor:
    """Head-averaged cross-attention of the last decoder layer during model(src, tgt): (B, T_tgt, S_src), rows sum
    to 1 over the real source tokens."""
    attn = model.decoder.layers[-1].cross_attn
    attn.keep_weights = True
    try:
        model(src, tgt)
    finally:
        attn.keep_weights = False
    return attn.weights
