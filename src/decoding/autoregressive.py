"""Autoregressive search: greedy, beam and ancestral sampling over one incremental-decoder protocol, with the
repetition controls (no_repeat_ngram, repetition penalty) and the special-token bans every search shares.

Outputs are (B, T) token ids: the target without <bos>, ended by <eos>, right-padded with <pad>.
fixed_length=True (speed measurements): <eos> is banned and every row gets exactly max_new_tokens tokens.
No decoder step runs after the last token is chosen. The searches check "all finished?" (a host sync) only every
SYNC_EVERY steps; rows that finished keep emitting <pad>, and trailing all-<pad> columns are cut (`trim_pads`), so
the output is the same as checking every step.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch

from ..models.vocab import BOS, EOS, MASK, PAD

NEVER_GENERATED = [PAD, BOS, MASK]
SYNC_EVERY = 8  # steps between the host-side "all finished?" checks of the AR searches


class IncrementalDecoder(Protocol):
    """What the searches need of a model: the incremental-decoder protocol, implemented by the transformer decoders
    (src/models/incremental.py: decoder, prefix-LM, encdec), rnn_attn, and static.StaticDecoder (decode.compile).
    The state is the model's own (KV cache, RNN hidden); the searches only pass it back."""

    def prefill(self, src: torch.Tensor, max_new_tokens: int) -> tuple[torch.Tensor, Any]:
        """(logits (B, V) of the first target token, state with room for max_new_tokens tokens): the source encoded
        or the prompt fed."""

    def step(self, tokens: torch.Tensor, state: Any) -> torch.Tensor:
        """(B,) previous tokens -> (B, V) logits of the next token; advances `state` in place."""

    def reorder_state(self, state: Any, index: torch.Tensor, same_source: bool = False) -> None:
        """Row i of `state` becomes old row index[i] (beam search: expansion to B·k, then each step's survivors).
        same_source=True: every row moves to a row of the same source sentence (a beam step's survivors), so what
        depends on the source alone (cross-attention K/V, the source mask, an RNN's encoder outputs) stays put."""


def forbid_special(logits: torch.Tensor, fixed_length: bool = False) -> torch.Tensor:
    """A decoder never emits <pad>, <bos> or <mask> (finished rows are padded by the search itself);
    with fixed_length it never emits <eos> either. In place: a step's logits are its own fresh tensor, and copying
    the (B, V) logits every step would cost time for nothing."""
    return logits.index_fill_(-1, banned_tokens(fixed_length, logits.device), float("-inf"))


def banned_tokens(fixed_length: bool, device) -> torch.Tensor:
    """The token ids no search emits, as a tensor: <pad>, <bos>, <mask>, and <eos> with fixed_length."""
    return torch.tensor(NEVER_GENERATED + ([EOS] if fixed_length else []), device=device)


def constrain_repeats(logits: torch.Tensor, history: torch.Tensor, no_repeat_ngram_size: int = 0,
                      repetition_penalty: float = 1.0) -> torch.Tensor:
    """Repetition controls on next-token logits (B, V) given the tokens generated so far (B, t).
    no_repeat_ngram_size n (fairseq's semantics, over the generated tokens): a token that would complete an n-gram
    already in the row gets -inf. repetition_penalty p (CTRL, Keskar et al. 2019): the logit of every token already
    generated is divided by p if positive, multiplied by p if negative."""
    if repetition_penalty != 1.0 and history.size(1):
        seen = logits.gather(1, history)
        logits = logits.scatter(1, history, torch.where(seen > 0, seen / repetition_penalty, seen * repetition_penalty))
    n, t = no_repeat_ngram_size, history.size(1)
    if n > 0 and t >= n:
        windows = history.unfold(1, n, 1)  # (B, t-n+1, n): every n-gram so far
        match = (windows[:, :, :-1] == history[:, t - n + 1 :][:, None, :]).all(-1)  # its first n-1 = the last n-1
        rows, starts = match.nonzero(as_tuple=True)
        logits = logits.index_put((rows, windows[rows, starts, -1]), torch.tensor(float("-inf"), device=logits.device))
    return logits


def trim_pads(tokens: torch.Tensor) -> torch.Tensor:
    """Cut the trailing columns that are <pad> in every row (written after all rows had finished)."""
    filled = (tokens.flatten(0, -2) != PAD).any(0).nonzero()
    return tokens[..., : int(filled.max()) + 1 if filled.numel() else 1]


def _search(model: IncrementalDecoder, src, max_new_tokens, choose, fixed_length=False, blocks=False,
            **repeats) -> torch.Tensor:
    """One token per row per step, picked by `choose` from the constrained logits (greedy and sampling).
    blocks=True (greedy on a decoder with a `greedy_block`, no repetition controls): whole blocks of
    `model.block_size` tokens come from one call each, the rest from the loop below; the same tokens."""
    logits, state = model.prefill(src, max_new_tokens)
    out = torch.full((src.size(0), max_new_tokens), PAD, dtype=torch.long, device=src.device)
    done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    start = 0
    while blocks and start + model.block_size < max_new_tokens:  # the block's last step feeds a token still read
        out[:, start : start + model.block_size], done, logits = model.greedy_block(logits, state, done, fixed_length)
        start += model.block_size
        if not fixed_length and bool(done.all()):
            return trim_pads(out)
    for t in range(start, max_new_tokens):
        tok = choose(forbid_special(constrain_repeats(logits, out[:, :t], **repeats), fixed_length)).masked_fill(done, PAD)
        out[:, t] = tok
        done |= tok == EOS
        if t == max_new_tokens - 1:
            break  # the last token is chosen: no decoder step for a token nobody reads
        if not fixed_length and t % SYNC_EVERY == SYNC_EVERY - 1 and bool(done.all()):
            break
        logits = model.step(tok, state)
    return trim_pads(out)


@torch.no_grad()
def greedy(model: IncrementalDecoder, src, max_new_tokens=64, fixed_length=False, **repeats):
    """ŷ_t = argmax_y P(y | ŷ_<t, x) at every step. A decoder with `block_size` > 0 (static.StaticDecoder:
    `greedy_block`, k steps and their argmaxes in one compiled graph) decodes block by block unless a repetition
    control needs the history."""
    blocks = getattr(model, "block_size", 0) > 0 and not repeats_on(**repeats)
    return _search(model, src, max_new_tokens, lambda logits: logits.argmax(-1), fixed_length, blocks, **repeats)


def repeats_on(no_repeat_ngram_size: int = 0, repetition_penalty: float = 1.0) -> bool:
    """True when a repetition control is on (constrain_repeats then changes the logits)."""
    return no_repeat_ngram_size > 0 or repetition_penalty != 1.0


@torch.no_grad()
def sample(model: IncrementalDecoder, src, max_new_tokens=64, temperature=1.0, top_k=0, top_p=1.0, seed=0,
           fixed_length=False, **repeats):
    """Ancestral sampling from softmax(logits / temperature), restricted to the top-k tokens and/or the smallest
    set whose probability reaches top_p (nucleus). Seeded: the same seed gives the same samples."""
    gen = torch.Generator(device=src.device).manual_seed(seed)

    def choose(logits):
        logits = logits.float() / max(temperature, 1e-6)
        if top_k > 0:
            kth = logits.topk(min(top_k, logits.size(-1))).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p < 1.0:
            sorted_logits, order = logits.sort(-1, descending=True)
            probs = sorted_logits.softmax(-1)
            drop = probs.cumsum(-1) - probs >= top_p  # tokens after the nucleus is already full
            logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
        return torch.multinomial(logits.softmax(-1), 1, generator=gen).squeeze(-1)

    return _search(model, src, max_new_tokens, choose, fixed_length, **repeats)


def length_penalty_of(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT length penalty lp(|Y|) = ((5 + |Y|) / 6)^α; hypotheses are ranked by log P(Y|X) / lp(|Y|)."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def beam_select(logits: torch.Tensor, scores: torch.Tensor, lengths: torch.Tensor, finished: torch.Tensor,
                beam_size: int, length_penalty: float, banned: torch.Tensor):
    """One beam step's choice over (B·k, V) next-token `logits` (fairseq's BeamSearch.step): the k best of each
    sentence's k·V continuations by length-normalised score,
        log p = log_softmax(logits with −∞ at `banned`)      a finished row: log p(<pad>) = 0, every other −∞
        cand  = scores + log p,   rank by cand / lp(lengths + [not finished])
    Returns (rows: the hypothesis each survivor extends (B·k,), its token, cand, lengths and finished of the
    survivors). Out of place and free of host syncs, so a compiled decoder can fuse it with its step
    (static.StaticDecoder.beam_advance)."""
    k, vocab = beam_size, logits.size(-1)
    b = logits.size(0) // k
    logp = logits.float().index_fill(-1, banned, float("-inf")).log_softmax(-1)
    frozen = torch.where(torch.arange(vocab, device=logits.device) == PAD, 0.0, float("-inf"))  # <pad> only
    logp = torch.where(finished[:, None], frozen, logp)
    cand = scores[:, None] + logp  # (B·k, V) total log-probability
    new_len = lengths + (~finished).long()
    ranked = (cand / length_penalty_of(new_len, length_penalty)[:, None]).view(b, k * vocab)
    idx = ranked.topk(k, dim=-1).indices  # (B, k)
    rows = (torch.arange(b, device=logits.device)[:, None] * k + idx // vocab).view(-1)
    tok = (idx % vocab).view(-1)
    return (rows, tok, cand.view(b, k * vocab).gather(1, idx).view(-1), new_len.index_select(0, rows),
            finished.index_select(0, rows) | (tok == EOS))


@torch.no_grad()
def beam_search(model: IncrementalDecoder, src, max_new_tokens=64, beam_size=4, length_penalty=1.0,
                fixed_length=False, **repeats):
    """Batched beam search: all B×k hypotheses advance in one step() call per position (`beam_select` chooses).
    A hypothesis that emitted <eos> is frozen (only <pad> continues it, at no cost) and keeps competing by its
    length-normalised score log P(Y|X) / lp(|Y|); the search stops early once every hypothesis has finished.
    A decoder with `beam_advance` (the compiled static step) chooses, reorders its state and steps in one call,
    unless a repetition control needs the history. Returns tokens (B, k, T) and normalised scores (B, k), best
    first."""
    b, k = src.size(0), beam_size
    logits, state = model.prefill(src, max_new_tokens)
    expand = torch.arange(b, device=src.device).repeat_interleave(k)
    model.reorder_state(state, expand)
    logits = logits.index_select(0, expand)
    scores = torch.zeros(b, k, device=src.device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    scores = scores.view(-1)
    tokens = torch.full((b * k, max_new_tokens), PAD, dtype=torch.long, device=src.device)
    lengths = torch.zeros(b * k, dtype=torch.long, device=src.device)
    finished = torch.zeros(b * k, dtype=torch.bool, device=src.device)
    banned = banned_tokens(fixed_length, src.device)
    advance = None if repeats_on(**repeats) else getattr(model, "beam_advance", None)
    for t in range(max_new_tokens):
        last = t == max_new_tokens - 1
        if advance is not None and not last:  # choose, reorder and step in one call
            rows, tok, scores, lengths, finished, logits = advance(
                logits, scores, lengths, finished, state, k, length_penalty, banned)
        else:
            logits = constrain_repeats(logits.float(), tokens[:, :t], **repeats)
            rows, tok, scores, lengths, finished = beam_select(logits, scores, lengths, finished, k, length_penalty,
                                                               banned)
        tokens = tokens.index_select(0, rows)
        tokens[:, t] = tok
        if last or (t % SYNC_EVERY == SYNC_EVERY - 1 and bool(finished.all())):
            break  # (after beam_advance, its step's logits go unread)
        if advance is None:
            model.reorder_state(state, rows, same_source=True)
            logits = model.step(tok, state)
    tokens = trim_pads(tokens.view(b, k, -1))
    final = (scores / length_penalty_of(lengths, length_penalty)).view(b, k)
    final, order = final.sort(-1, descending=True)
    return tokens.gather(1, order[:, :, None].expand_as(tokens)), final
