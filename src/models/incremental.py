"""Incremental (KV-cache) decoding of the transformer decoders: DecoderLM, PrefixLM and EncoderDecoder implement the
incremental-decoder protocol of src/decoding/autoregressive.py (`IncrementalDecoder`: prefill / step /
reorder_state) through the `IncrementalDecoding` mixin, with prefill = `start` (encode the source / size the cache;
the tokens still to feed) + `decode_tokens` of those tokens."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .attention import KVCache, self_attention_mask
from .vocab import PAD


@dataclass
class LayerCache:
    """One decoder layer's cache: self-attention K/V of the tokens so far, cross-attention K/V of the memory."""

    self_kv: KVCache
    memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None

    def reorder(self, index, same_source=False):
        self.self_kv.reorder(index)
        if self.memory_kv is not None and not same_source:
            self.memory_kv = tuple(t.index_select(0, index) for t in self.memory_kv)


@dataclass
class DecodeState:
    """Incremental state of a transformer decoder: per-layer caches, which cached keys are real, next position."""

    caches: list[LayerCache]
    key_valid: torch.Tensor  # (B, max_len) bool
    next_pos: torch.Tensor  # (B,) position id of the next token (counts real tokens only)
    pos: int = 0  # next cache slot
    memory_mask: torch.Tensor | None = None

    def reorder(self, index, same_source=False):
        for c in self.caches:
            c.reorder(index, same_source)
        self.key_valid = self.key_valid.index_select(0, index)
        self.next_pos = self.next_pos.index_select(0, index)
        if self.memory_mask is not None and not same_source:
            self.memory_mask = self.memory_mask.index_select(0, index)


class IncrementalDecoding:
    """Mixin: cache-based decoding over `self.decoder` (a causal Stack) and `self.lm_head`; the model provides
    `start(src, max_new_tokens) -> (tokens to feed (B, P), DecodeState)`.
    Each step feeds only the new tokens: their K, V are appended to the cache, and their queries attend over
    K[:, :, :pos+T] (the filled prefix), so a step costs O(t) instead of the full pass's O(t²)."""

    def new_state(self, batch, max_len, memory=None, memory_mask=None) -> DecodeState:
        dec, ref = self.decoder, self.lm_head.weight
        caches = []
        for layer in dec.layers:
            attn = layer.self_attn
            kv = KVCache(batch, attn.n_heads, max_len, attn.d_head, dtype=ref.dtype, device=ref.device)
            mem_kv = layer.cross_attn.project_kv(memory) if layer.cross_attn is not None else None
            caches.append(LayerCache(kv, mem_kv))
        return DecodeState(
            caches,
            key_valid=torch.zeros(batch, max_len, dtype=torch.bool, device=ref.device),
            next_pos=torch.zeros(batch, dtype=torch.long, device=ref.device),
            memory_mask=memory_mask,
        )

    def decode_tokens(self, tokens: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """Feed (B, T) tokens (T ≥ 1; pads allowed in a prompt) at cache slot state.pos; return logits of the last."""
        b, t = tokens.shape
        valid = tokens != PAD
        start = state.pos
        state.key_valid[:, start : start + t] = valid
        positions = state.next_pos[:, None] + self.decoder.embed.positions(valid)
        state.next_pos = state.next_pos + valid.sum(1)
        mask = self_attention_mask(state.key_valid[:, : start + t], causal=True, start=start)
        x = self.decoder.embed(tokens, positions)
        for layer, cache in zip(self.decoder.layers, state.caches):
            x = layer(x, mask, None, state.memory_mask, cache=cache, pos=start)
        state.pos = start + t
        return self.lm_head(self.decoder.norm(x[:, -1]))

    def step(self, tokens: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """One decoding step: (B,) previous tokens -> (B, V) next-token logits."""
        return self.decode_tokens(tokens[:, None], state)

    def prefill(self, src: torch.Tensor, max_new_tokens: int):
        """(logits (B, V) of the first new token, state): `start`, then its tokens fed through the decoder."""
        prompt, state = self.start(src, max_new_tokens)
        return self.decode_tokens(prompt, state), state

    @staticmethod
    def reorder_state(state: DecodeState, index: torch.Tensor, same_source: bool = False) -> None:
        state.reorder(index, same_source)
