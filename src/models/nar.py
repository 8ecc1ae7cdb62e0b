"""Non-autoregressive translation: the conditional masked language model (CMLM) of Ghazvininejad et al. 2019,
"Mask-Predict: Parallel Decoding of Conditional Masked Language Models".

Decoding (mask-predict, T passes) lives in src/decoding/mask_predict.py, driven by encode / predict_length / predict.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import padding_mask
from .transformer import Stack, last_cross_attention, make_lm_head
from .vocab import BOS, EOS, MASK, PAD


class CMLM(nn.Module):
    """Encoder + bidirectional decoder with cross-attention; predicts every masked target token in one pass.
    The decoder's self-attention sees the whole target (<mask> at unknown positions), its cross-attention the final
    encoder output; encoder, decoder and output projection share one embedding matrix E."""

    non_autoregressive = True
    NEVER_PREDICTED = (PAD, BOS, EOS, MASK)  # targets carry no <bos>/<eos>; <pad>/<mask> are never outputs

    def __init__(self, vocab_size, d_model, n_heads, n_layers, d_ff, dropout=0.1, norm_first=True, max_length=256,
                 length_loss_weight=0.1, **_):
        super().__init__()
        self.encoder = Stack(vocab_size, d_model, n_heads, n_layers, d_ff, dropout, norm_first, False, False)
        self.decoder = Stack(vocab_size, d_model, n_heads, n_layers, d_ff, dropout, norm_first, False, True)
        self.decoder.embed.tok = self.encoder.embed.tok  # one shared vocabulary
        self.lm_head = make_lm_head(d_model, vocab_size, self.decoder.embed, tie=True)
        self.length_head = nn.Linear(d_model, max_length + 1)
        self.max_length, self.length_loss_weight = max_length, length_loss_weight
        banned = torch.zeros(vocab_size, dtype=torch.bool)
        banned[list(self.NEVER_PREDICTED)] = True
        self.register_buffer("banned", banned, persistent=False)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory = Enc(x): src (B, S) right-padded -> memory (B, S, D), memory_mask (B, 1, 1, S) True at real
        tokens (a bidirectional Stack, padding mask only)."""
        return self.encoder(src), padding_mask(src, PAD)

    def length_logits(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """(B, max_length+1) logits of P(L | x) = softmax(W_len · mean_{s real} memory_s), L ∈ {0..max_length}."""
        valid = memory_mask[:, 0, 0, :, None].to(memory.dtype)  # (B, S, 1)
        pooled = (memory * valid).sum(1) / valid.sum(1).clamp(min=1)
        return self.length_head(pooled)

    def predict_length(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """(B,) long: L̂ = argmax_L P(L | x)."""
        return self.length_logits(memory, memory_mask).argmax(-1)

    def predict(self, tgt: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """ONE decoder pass, P(y_t | y_obs, x) = softmax(E · Dec(y_obs, memory)_t): tgt (B, T) with <mask> at
        unknown positions and <pad> beyond the length -> logits (B, T, V), −inf on the special tokens that are never
        a target (<pad>, <bos>, <eos>, <mask>)."""
        logits = self.lm_head(self.decoder(tgt, memory, memory_mask))
        return logits.masked_fill(self.banned, float("-inf"))

    def mask_target(self, tgt: torch.Tensor) -> torch.Tensor:
        """(B, T) bool of positions to mask: for a sentence of length L draw n ~ U{1..L}, then n random real
        positions (torch RNG)."""
        real = tgt != PAD
        lengths = real.sum(1)
        n = (torch.rand(lengths.shape, device=tgt.device) * lengths).long() + 1  # floor(u·L) + 1 ∈ {1..L}
        scores = torch.rand(tgt.shape, device=tgt.device).masked_fill(~real, 2.0)  # pads rank last
        rank = scores.argsort(-1).argsort(-1)
        return (rank < n[:, None]) & real

    def loss(self, src: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, int]:
        """loss = −mean_{t masked} log P(y_t | y_obs, x) + λ_len · (−log P(L | x)), the masking drawn by
        `mask_target`. src (B, S), tgt (B, T) right-padded target without <bos>/<eos>. Returns (loss, n masked
        tokens)."""
        memory, memory_mask = self.encode(src)
        masked = self.mask_target(tgt)
        logits = self.predict(tgt.masked_fill(masked, MASK), memory, memory_mask)
        n_tokens = int(masked.sum())
        token_loss = F.cross_entropy(logits[masked].float(), tgt[masked], reduction="sum") / max(n_tokens, 1)
        lengths = (tgt != PAD).sum(1).clamp(max=self.max_length)
        length_loss = F.cross_entropy(self.length_logits(memory, memory_mask).float(), lengths)
        return token_loss + self.length_loss_weight * length_loss, n_tokens  # n_tokens: int, as the AR task loss

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of every target position given the observed tgt (with <mask> where unknown)."""
        return self.predict(tgt, *self.encode(src))

    def cross_attention(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """(B, T, S) cross-attention of the last decoder layer on a known target."""
        return last_cross_attention(self, src, tgt)
