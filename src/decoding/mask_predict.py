"""Mask-predict: the iterative parallel decoding of a conditional masked language model (CMLM, src/models/nar.py),
Ghazvininejad et al. 2019, "Mask-Predict: Parallel Decoding of Conditional Masked Language Models"."""
from __future__ import annotations

from typing import Protocol

import torch

from ..models.vocab import MASK, PAD
from .autoregressive import forbid_special


class MaskPredictModel(Protocol):
    """What mask-predict needs of a non-autoregressive model (`non_autoregressive = True`; CMLM)."""

    non_autoregressive: bool

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) -> (memory, memory_mask)."""

    def predict_length(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """(B,) target lengths L̂."""

    def predict(self, tgt: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """One parallel decoder pass: tgt (B, T) with <mask> at unknown positions -> logits (B, T, V)."""


@torch.no_grad()
def mask_predict(model: MaskPredictModel, src, passes: int = 1, length: int | None = None) -> torch.Tensor:
    """Predict the length L, start from L <mask> tokens, then for pass t = 0..passes-1 predict every masked position
    in parallel and re-mask the n = L·(passes-1-t)/passes least confident ones.
    At most `passes` decoder calls (one per pass); the output never exceeds the predicted length
    (`length` forces L = length for every row: the fixed-length speed mode). Returns (B, L_max), right-padded."""
    memory, memory_mask = model.encode(src)
    if length is None:
        lengths = model.predict_length(memory, memory_mask).clamp(min=1)
    else:
        lengths = torch.full((src.size(0),), length, dtype=torch.long, device=src.device)
    t_max = int(lengths.max())
    real = torch.arange(t_max, device=src.device)[None] < lengths[:, None]
    tokens = torch.where(real, MASK, PAD)
    probs = torch.zeros(tokens.shape, device=src.device)
    for t in range(passes):
        masked = tokens == MASK
        p, pred = forbid_special(model.predict(tokens, memory, memory_mask).float()).softmax(-1).max(-1)
        tokens = torch.where(masked, pred, tokens)
        probs = torch.where(masked, p, probs)
        n_mask = (lengths.float() * (passes - 1 - t) / passes).long()
        if t == passes - 1 or int(n_mask.max()) == 0:
            break
        conf = probs.masked_fill(~real, float("inf"))
        rank = conf.argsort(-1).argsort(-1)  # 0 = least confident
        tokens = torch.where(rank < n_mask[:, None], MASK, tokens)
    return tokens
