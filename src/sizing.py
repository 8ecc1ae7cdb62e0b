"""Matched model size: `size.target_params=1.5e6` solves for the width d_model that brings an arch's parameter count
within 5 % of the target, so archs are compared at equal size (the practice of Kaplan et al. 2020 and of every
"at matched parameters" comparison).

What is solved, and why: d_model only, over multiples of lcm(n_heads, 2) (the heads divide d_model, the sinusoidal
positions need it even), with d_ff = the size's own d_ff / d_model ratio × d_model; n_layers and n_heads stay the
size's. Depth is kept because it changes the architecture's inductive bias (and its sequential cost), width only
its capacity; the RNNs' d_model is their hidden size (they have no d_ff or heads). Parameters are counted exactly
by building the model on the meta device (no memory, milliseconds) with the run's real vocabulary, so tied
embeddings, biases and heads are all in; the count grows with d_model, so a bisection finds the nearest width.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch

from .errors import ConfigError

TOLERANCE = 0.05
SHAPE_KEYS = ("d_model", "n_heads", "n_layers", "d_ff", "dropout")


def shape_of(size) -> dict:
    """The model constructor's size arguments of a `size` config node (name and target_params left out)."""
    return {k: size[k] for k in SHAPE_KEYS}


def count_params(make: Callable[..., torch.nn.Module], shape: dict) -> int:
    """Exact parameter count of make(**shape), built on the meta device (shared/tied weights counted once)."""
    with torch.device("meta"):
        return sum(p.numel() for p in make(**shape).parameters())


def match_size(make: Callable[..., torch.nn.Module], shape: dict, target: float, arch: str,
               tolerance: float = TOLERANCE) -> tuple[dict, dict]:
    """(the solved shape, results.json's "size_match"): the d_model (a multiple of lcm(n_heads, 2), d_ff scaled with
    it) whose parameter count is nearest `target`; ConfigError when even the nearest is more than `tolerance` off."""
    step, ratio = math.lcm(shape["n_heads"], 2), shape["d_ff"] / shape["d_model"]

    def at(k: int) -> dict:
        return {**shape, "d_model": k * step, "d_ff": max(1, round(ratio * k * step))}

    params = functools.cache(lambda k: count_params(make, at(k)))
    hi = 1
    while params(hi) < target and hi * step < 1 << 16:
        hi *= 2
    lo = 1
    while lo < hi:  # the smallest k with params(k) >= target (or the largest tried)
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if params(mid) < target else (lo, mid)
    best = min({max(1, lo - 1), lo}, key=lambda k: abs(params(k) - target))
    rel = params(best) / target - 1
    solved = at(best)
    if abs(rel) > tolerance:
        raise ConfigError(
            f"size.target_params={target:g} is out of reach for arch={arch}: the nearest width, d_model="
            f"{solved['d_model']}, has {params(best):,} parameters ({100 * rel:+.0f} %, more than "
            f"{100 * tolerance:.0f} % off) with n_layers={shape['n_layers']}, n_heads={shape['n_heads']}; "
            "change the target, size.n_layers or size.n_heads")
    record = {"target_params": float(target), "params": params(best), "rel_error": rel,
              "solved": {k: solved[k] for k in ("d_model", "d_ff", "n_heads", "n_layers")}}
    return solved, record


def build(cfg, spec, vocab_size: int, n_classes: int) -> tuple[torch.nn.Module, dict, dict | None]:
    """The run's nn.Module at its configured size, or at the size solved for `size.target_params`; its shape; and
    the "size_match" record (None without a target). A finished run is rebuilt through here too (src/trained.py):
    the solve is deterministic given the run's vocabulary."""
    from hydra.utils import instantiate

    make = functools.partial(instantiate(cfg.arch.models[spec.task.name]), vocab_size=vocab_size,
                             n_classes=n_classes, **spec.arch.params)
    shape, match = shape_of(spec.size.__dict__), None
    if spec.size.target_params is not None:
        shape, match = match_size(make, shape, spec.size.target_params, spec.arch.name)
    return make(**shape), shape, match
