"""Decoding: one `generate()` for every model family, one module per decoding family (fairseq's split).

    autoregressive.py  greedy, beam and sampling search over the incremental-decoder protocol
                       (`autoregressive.IncrementalDecoder`: prefill / step / reorder_state), repetition controls
                       and special-token bans: decoder, prefix-LM, encdec, rnn_attn
    mask_predict.py    CMLM mask-predict (Ghazvininejad et al. 2019): nar
    static.py          the static-shape, compilable decoder step of the transformer decoders, itself an
                       IncrementalDecoder (decode.compile)
    linear.py          that step's x·Wᵀ on CPU in the form that streams W fastest per row count (decode_linear)
    weights.py         the decoder's weights as that step reads them: copies per dtype / int8, refreshed (DecodeWeights)
    traced.py          a function compiled by inductor for one layout and called without Dynamo (the CPU step)
    int8.py            int8 weights for that step (decode.int8): fbgemm eagerly, inductor's reduction compiled

The models (src/models/) implement the protocols and import nothing from here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .autoregressive import beam_search, greedy, sample
from .mask_predict import mask_predict
from .static import static_decoder, supports_static

if TYPE_CHECKING:
    from ..config import DecodeConfig


@torch.no_grad()
def generate(model, src: torch.Tensor, decode: DecodeConfig, max_new_tokens: int,
             fixed_length: bool = False) -> torch.Tensor:
    """The model's output token ids (B, T) for `src` under `decode` (its fields are the only defaults; vary them
    with `dataclasses.replace(decode, ...)`). A non-autoregressive model runs mask-predict with `decode.passes`,
    `decode.length_beam` and `decode.dedup`; an autoregressive one `decode.method`, on the compiled static step when
    `decode.compile` and the model has one (rnn_attn decodes eagerly), on its int8 weights with `decode.int8`. fixed_length=True (speed measurements): <eos> is banned and every AR row gets
    exactly max_new_tokens tokens; mask-predict's length (every length-beam candidate's) is forced to max_new_tokens."""
    if getattr(model, "non_autoregressive", False):
        return mask_predict(model, src, decode.passes, length=max_new_tokens if fixed_length else None,
                            length_beam=decode.length_beam, dedup=decode.dedup)
    repeats = {"no_repeat_ngram_size": decode.no_repeat_ngram_size, "repetition_penalty": decode.repetition_penalty}
    if (decode.compile or decode.int8) and supports_static(model):
        model = static_decoder(model, compile=decode.compile, int8=decode.int8)
    if decode.method == "greedy":
        return greedy(model, src, max_new_tokens, fixed_length, **repeats)
    if decode.method == "beam":
        return beam_search(model, src, max_new_tokens, decode.beam_size, decode.length_penalty, fixed_length,
                           **repeats)[0][:, 0]
    if decode.method == "sample":
        return sample(model, src, max_new_tokens, decode.temperature, decode.top_k, decode.top_p, decode.seed,
                      fixed_length, **repeats)
    raise ValueError(f"decode method {decode.method!r} is not one of greedy, beam, sample")
