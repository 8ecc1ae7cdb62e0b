"""The decoder's Linear weights as the static decode step reads them on CPU (static.py): copies in each compute kind
(the autocast dtype, or int8), one decode_linear forward per Linear over them (linear.py), oneDNN's blocked copies,
and their refresh when training moves the weights (`DecodeWeights`)."""
from __future__ import annotations

import contextlib
import weakref
from functools import partial

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from .int8 import int8_linear, int8_packed, int8_weights
from .linear import INT8_REDUCTION, can_prepack, decode_linear, prepack

_optimizer_steps = 0  # optimizer steps taken in this process (`_count_optimizer_step`)


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    """A post-hook of every optimizer's step: fused optimizers (AdamW(fused=True), the tasks' own) update the
    parameters without bumping their version counters, so versions alone cannot tell that the weights moved."""
    global _optimizer_steps
    _optimizer_steps += 1


register_optimizer_step_post_hook(_count_optimizer_step)


class DecodeWeights:
    """Per kind (a dtype, or "int8"), what decode_linear reads for each of `linears`: `copies[kind]`, a tuple
    (W, Wᵀ contiguous, b, q8) per Linear, and `handles[kind]`, its `prepacked_linear` handle or None. `prepacked`:
    block the weights for oneDNN (compiled steps, where oneDNN blocks the dtype). `int8` eager: fbgemm's packed
    weights instead (`int8_linear`)."""

    def __init__(self, model: nn.Module, linears: list[nn.Linear], int8: bool, eager_int8: bool, prepacked: bool):
        self._model, self.linears = weakref.ref(model), linears  # weak: see static.StaticDecoder
        self.int8, self.eager_int8, self.prepacked = int8, eager_int8, prepacked
        self.copies: dict[object, list[tuple]] = {}
        self.handles: dict[object, list[int | None]] = {}
        self._forwards: dict[object, list[partial]] = {}  # kind -> one forward per Linear, built once
        self._blocked: dict[int, torch.Tensor] = {}  # handle -> the blocked weight (kept alive here)
        self._versions = self._weight_versions()

    def kind(self):
        """What the step computes the Linears in: "int8", or the autocast dtype (CPU), or the weights' dtype."""
        if self.int8:
            return "int8"
        return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else self.linears[0].weight.dtype

    @staticmethod
    def _tensors_of(lin: nn.Linear, kind) -> tuple:
        """What decode_linear reads for `lin`: (W, Wᵀ contiguous, b, q8) in the compute dtype `kind` (the parameter
        itself when it has that dtype), or for kind "int8" W = s ⊙ Q in fp32 with q8 = (Q, s) (`int8_weights`; None
        where the compiled reduction would read int8 slowly, INT8_REDUCTION: there it reads W)."""
        if kind == "int8":
            q, scale = int8_weights(lin.weight)
            w = q.float() * scale[:, None]
            return (w, w.t().contiguous(), None if lin.bias is None else lin.bias.detach().float(),
                    (q, scale) if INT8_REDUCTION else None)

        def as_dtype(t):
            return t if t is None or t.dtype == kind else t.detach().to(kind)
        return as_dtype(lin.weight), lin.weight.detach().t().to(kind).contiguous(), as_dtype(lin.bias), None

    def forwards(self, kind) -> list[partial]:
        """One forward per Linear, built once per kind: decode_linear over copies of the weights in the compute
        dtype (bf16 under autocast: half the bytes to stream, and no cast of every weight at every step) or in int8
        (compiled); fbgemm's int8_linear (eager int8)."""
        if kind in self._forwards:
            return self._forwards[kind]
        if self.eager_int8:  # dropped by refresh when the weights change: repacked here
            self._forwards[kind] = [partial(int8_linear, packed=int8_packed(lin.weight, lin.bias),
                                            out_features=lin.out_features) for lin in self.linears]
            return self._forwards[kind]
        with torch.inference_mode(False):  # normal tensors: refreshable in and out of inference mode
            self.copies[kind] = [self._tensors_of(lin, kind) for lin in self.linears]
            blocked = self.prepacked and can_prepack(self.copies[kind][0][0].dtype)
            self.handles[kind] = [self._pack(w) if blocked else None for w, *_ in self.copies[kind]]
        self._forwards[kind] = self.decode_linears(self.copies[kind], self.handles[kind])
        return self._forwards[kind]

    def flat(self, kind) -> list[torch.Tensor]:
        """The tensors of `copies[kind]`, flat, in the order `rebuilt` reads them back."""
        return [t for w, wt, b, q8 in self.copies[kind] for t in (w, wt, b, *(q8 or ())) if t is not None]

    def rebuilt(self, kind, tensors) -> list[partial]:
        """The forwards of `kind` over other tensors (an iterator in `flat`'s order: a compiled step's inputs)."""
        def take(t):
            return None if t is None else next(tensors)
        copies = [(take(w), take(wt), take(b), None if q8 is None else (next(tensors), next(tensors)))
                  for w, wt, b, q8 in self.copies[kind]]
        return self.decode_linears(copies, self.handles[kind])

    @staticmethod
    def decode_linears(copies: list[tuple], handles: list[int | None]) -> list[partial]:
        return [partial(decode_linear, weight=w, weight_t=wt, bias=b, q8=q8, packed=h)
                for (w, wt, b, q8), h in zip(copies, handles)]

    @contextlib.contextmanager
    def swapped(self, forwards: list):
        """Each Linear's forward swapped for `forwards`, through the instance dict directly (nn.Module's
        __setattr__/__delattr__ cost time at every step); back to nn.Linear.forward on exit."""
        for lin, forward in zip(self.linears, forwards):
            vars(lin)["forward"] = forward
        try:
            yield
        finally:
            for lin in self.linears:
                del vars(lin)["forward"]

    def _pack(self, weight: torch.Tensor, handle: int | None = None) -> int:
        handle, blocked = prepack(weight, handle)
        self._blocked[handle] = blocked
        return handle

    def _weight_versions(self) -> tuple[int, list[tuple[int, int]]]:
        """What changes when the weights do: the process's optimizer steps, each parameter's version (in-place
        edits, load_state_dict) and address (a parameter replaced)."""
        return _optimizer_steps, [(p._version, p.data_ptr()) for p in self._model().parameters()]

    def refresh(self) -> bool:
        """Bring the copies up to date if the weights changed (training went on since the last call): in place, so
        compiled steps read them where they are; fbgemm's and oneDNN's packed weights are packed again. True if they
        changed."""
        versions = self._weight_versions()
        if versions == self._versions:
            return False
        if self.eager_int8:
            self._forwards.clear()
        for kind, copies in self.copies.items():
            for lin, old in zip(self.linears, copies):
                new = self._tensors_of(lin, kind)
                for o, n in zip([*old[:3], *(old[3] or ())], [*new[:3], *(new[3] or ())]):
                    if o is not None and o is not n:  # a parameter used as it is needs no copy
                        o.copy_(n)
            for (w, *_), handle in zip(copies, self.handles[kind]):
                if handle is not None:
                    self._pack(w, handle)  # blocked again under the same handle, which the graphs hold
        self._versions = versions
        return True
