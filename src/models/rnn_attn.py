"""RNN encoder-decoder with attention: the pre-transformer translation baseline.

Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning to Align and Translate" (additive
attention, bidirectional encoder); Luong, Pham & Manning 2015, "Effective Approaches to Attention-based Neural
Machine Translation" (global attention with dot/general/concat scores, attentional hidden state, input feeding).
The decoder follows Luong's recipe; the Bahdanau (additive) score is one choice of score function within it.
attention="none" is the fixed context vector of Sutskever, Vinyals & Le 2014 ("Sequence to Sequence Learning with
Neural Networks") / Cho et al. 2014. The same `_step` serves teacher forcing (forward) and incremental decoding
(prefill / step / reorder_state).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .vocab import BOS, PAD

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
SCORES = ("bahdanau", "dot", "general", "none")


class Attention(nn.Module):
    """Global attention over the encoder outputs h_s, for the decoder state h_t:
        score     bahdanau: vᵀ tanh(W₁h_s + W₂h_t)   dot: h_tᵀh_s   general: h_tᵀ W h_s      (pad positions -> -inf)
        a_t = softmax_s(score(h_t, h_s)),   c_t = Σ_s a_ts h_s
        none      c_t = s_0 of the top layer for every t: the decoder sees the source only through the final encoder
                  states, never the per-position outputs h_s (no attention, no heatmap)
    The source-side part of the score is precomputed once (`keys`)."""

    def __init__(self, d_model: int, kind: str):
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            self.w1 = nn.Linear(d_model, d_model, bias=False)  # W₁ h_s
            self.w2 = nn.Linear(d_model, d_model)  # W₂ h_t
            self.v = nn.Linear(d_model, 1, bias=False)
        elif kind == "general":
            self.w = nn.Linear(d_model, d_model, bias=False)  # W h_s

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """(B, S, D) encoder outputs -> (B, S, D) source-side score terms."""
        if self.kind == "bahdanau":
            return self.w1(memory)
        return self.w(memory) if self.kind == "general" else memory

    def forward(self, h: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor):
        """h (B, D) query, mask (B, S) True at real source tokens -> context (B, D), weights (B, S)."""
        if self.kind == "none":  # memory is the single fixed summary slot (B, 1, D)
            return memory[:, 0], mask.float()
        if self.kind == "bahdanau":
            scores = self.v(torch.tanh(keys + self.w2(h)[:, None])).squeeze(-1)  # vᵀ tanh(W₁h_s + W₂h_t)
        else:
            scores = (keys @ h[:, :, None]).squeeze(-1)  # h_tᵀ h_s  or  h_tᵀ W h_s
        a = scores.masked_fill(~mask, float("-inf")).softmax(-1)  # exactly 0 on pads
        return (a[:, None] @ memory).squeeze(1), a  # c_t = Σ_s a_ts h_s


@dataclass
class RNNState:
    """Decoder state: RNN hidden (and LSTM cell), the last attentional state h̃, and what attention reads."""

    h: torch.Tensor  # (L, B, D)
    c: torch.Tensor | None  # (L, B, D) LSTM cell, None for GRU
    feed: torch.Tensor  # (B, D) h̃_{t-1}, fed back as input
    memory: torch.Tensor  # (B, S, D) projected encoder outputs h_s
    keys: torch.Tensor  # (B, S, D) precomputed source side of the score
    mask: torch.Tensor  # (B, S) bool, True at real source tokens

    def reorder(self, index: torch.Tensor, same_source: bool = False) -> None:
        """Select batch rows (beam search): row i becomes old row index[i]; with same_source (a beam step's
        survivors: rows of the same sentence) the source side stays as it is."""
        self.h, self.feed = self.h.index_select(1, index), self.feed.index_select(0, index)
        self.c = self.c.index_select(1, index) if self.c is not None else None
        if not same_source:
            self.memory, self.keys = self.memory.index_select(0, index), self.keys.index_select(0, index)
            self.mask = self.mask.index_select(0, index)


class RNNAttention(nn.Module):
    """Bidirectional RNN encoder + input-feeding RNN decoder with global attention, one shared vocabulary."""

    def __init__(self, vocab_size, d_model, n_layers, dropout=0.1, cell="gru", attention="bahdanau", **_):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell {cell!r} is not one of {', '.join(CELLS)}")
        if attention not in SCORES:
            raise ValueError(f"attention {attention!r} is not one of {', '.join(SCORES)}")
        rnn, inter = CELLS[cell], dropout if n_layers > 1 else 0.0
        self.is_lstm = cell == "lstm"
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.drop = nn.Dropout(dropout)
        self.encoder = rnn(d_model, d_model, n_layers, batch_first=True, bidirectional=True, dropout=inter)
        self.enc_proj = nn.Linear(2 * d_model, d_model)  # W_p
        self.init_h = nn.Linear(2 * d_model, d_model)  # W_i
        self.init_c = nn.Linear(2 * d_model, d_model) if self.is_lstm else None
        self.decoder = rnn(2 * d_model, d_model, n_layers, batch_first=True, dropout=inter)
        self.attn = Attention(d_model, attention)
        self.attends = attention != "none"  # no cross-attention weights to draw
        self.combine = nn.Linear(2 * d_model, d_model, bias=False)  # W_c
        self.lm_head = nn.Linear(d_model, vocab_size)  # W_o

    def init_state(self, src: torch.Tensor) -> RNNState:
        """Encode right-padded src (B, S) with a bidirectional GRU/LSTM over the packed (unpadded) source, so that
        outputs and final states do not depend on the padding:
            h_s = W_p [→h_s; ←h_s]          s_0 = tanh(W_i [→h_S; ←h_1])  per layer, from the final states"""
        b, s = src.shape
        mask = src != PAD
        lengths = mask.sum(1).clamp(min=1)  # an empty source reads a single <pad> (whose embedding is 0)
        mask = torch.arange(s, device=src.device)[None] < lengths[:, None]
        packed = pack_padded_sequence(self.drop(self.embed(src)), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.encoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=s)
        memory = self.enc_proj(out)  # (B, S, D)

        def bridge(x, proj):  # (2L, B, D) -> (L, B, D): tanh(W [→h; ←h]) per layer
            return torch.tanh(proj(x.view(-1, 2, b, x.size(-1)).transpose(1, 2).flatten(-2)))

        h, c = final if self.is_lstm else (final, None)
        h = bridge(h, self.init_h)
        if not self.attends:  # one memory slot: the final-state summary c = s_0 (top layer), the same at every step
            memory, mask = h[-1][:, None], mask[:, :1]
        return RNNState(
            h=h,
            c=bridge(c, self.init_c) if self.is_lstm else None,
            feed=memory.new_zeros(b, memory.size(-1)),
            memory=memory,
            keys=self.attn.keys(memory),
            mask=mask,
        )

    def _step(self, tokens: torch.Tensor, state: RNNState) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) previous tokens -> logits (B, V), attention (B, S); advances `state` in place:
            h_t = RNN([emb(y_{t-1}); h̃_{t-1}], h_{t-1})     input feeding, h̃_0 = 0
            h̃_t = tanh(W_c [c_t; h_t]),  logits = W_o h̃_t   c_t from `Attention`"""
        x = torch.cat([self.drop(self.embed(tokens)), state.feed], -1)[:, None]  # [emb(y_{t-1}); h̃_{t-1}]
        hidden = (state.h, state.c) if self.is_lstm else state.h
        out, hidden = self.decoder(x, hidden)
        state.h, state.c = hidden if self.is_lstm else (hidden, None)
        h_t = out[:, 0]
        ctx, a = self.attn(h_t, state.keys, state.memory, state.mask)
        state.feed = self.drop(torch.tanh(self.combine(torch.cat([ctx, h_t], -1))))  # h̃_t = tanh(W_c[c_t; h_t])
        return self.lm_head(state.feed), a

    def _teacher_forced(self, src, tgt_in):
        state = self.init_state(src)
        steps = [self._step(tgt_in[:, t], state) for t in range(tgt_in.size(1))]
        return torch.stack([s[0] for s in steps], 1), torch.stack([s[1] for s in steps], 1)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """src (B, S) right-padded, tgt_in (B, T) = <bos> y₁..y_{T-1}. Returns (B, T, V) logits."""
        return self._teacher_forced(src, tgt_in)[0]

    def cross_attention(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """(B, T, S) attention weights of a teacher-forced pass; rows sum to 1 over real src, 0 on pads."""
        return self._teacher_forced(src, tgt_in)[1]

    def prefill(self, src: torch.Tensor, max_new_tokens: int):
        """Encode, initialise the decoder, feed <bos>: (logits (B, V) of the first target token, state)."""
        state = self.init_state(src)
        bos = torch.full((src.size(0),), BOS, dtype=torch.long, device=src.device)
        return self.step(bos, state), state

    def step(self, tokens: torch.Tensor, state: RNNState) -> torch.Tensor:
        """One decoding step: (B,) previous tokens -> (B, V) next-token logits."""
        return self._step(tokens, state)[0]

    @staticmethod
    def reorder_state(state: RNNState, index: torch.Tensor, same_source: bool = False) -> None:
        state.reorder(index, same_source)
