"""Static-shape incremental decoding: one decoder step whose shapes never change, so it can be compiled once
(CPU: inductor's C++ for the layout, called without Dynamo, traced.py) and captured in a CUDA graph
(torch.compile's mode="reduce-overhead") for every position.

`StaticDecoder(model)` is an `autoregressive.IncrementalDecoder` (prefill / step / reorder_state) over fixed
buffers, for the transformer decoders (DecoderLM, PrefixLM, EncoderDecoder); rnn_attn and nar decode eagerly.
What it needs of the model (src/models/incremental.py, `IncrementalDecoding`): `start(src, max_new_tokens)` -> (the
tokens still to feed, a DecodeState), `decode_tokens` (the eager step, for a multi-token prompt), `decoder.embed`,
`decoder.layers` (DecoderLayers taking `cache=` and `pos=`), `decoder.norm` and `lm_head`.

The eager step attends over the filled prefix K[:, :, :pos+1], so its shapes grow by one per token; the static step
(`static_step`) attends over the whole preallocated cache of max_len slots through a mask of the filled ones, with
the cache slot as a tensor that it advances in place. Every tensor of the state is updated in place and pooled by
shape across calls, so a captured graph always sees the same addresses; beam search reorders the buffers in place
(the batch is B·k after the expansion). The prefill runs the model's `start` eagerly (the source through the encoder,
once per call); encdec's single <bos> then goes through the static step like every later token, a decoder's
multi-token prompt through the eager decoder. On CPU the step reads copies of the decoder's weights in the form
that streams fastest (`decode_linear`; compiled, up to 4 rows as inductor's own loops, more through oneDNN's GEMM on
weights blocked once), refreshed in place when the model's weights change; on CUDA the step keeps nn.Linear as it
is. With `int8=True` (CPU) each of those Linears reads int8 weights instead (`int8_linear` eager, `decode_linear`'s
int8 reduction compiled). The matmul forms live in linear.py, the weight copies in weights.py, the compile-and-call
of the CPU step in traced.py. Measured figures behind these choices: experiments/benchmarks/README.md.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import partial

import torch

from torch import nn

from ..models.incremental import LayerCache
from .autoregressive import banned_tokens, beam_select
from .linear import CPU_STEP_OPTIONS
from .traced import compile_flat, module_tensors, substituted
from .weights import DecodeWeights
from ..models.vocab import EOS, PAD

MAX_LAYOUTS = 32  # buffer sets kept per model (one per batch size × max_len × source length)
# layouts a compiled CPU decoder compiles for themselves (`_traced`: no Dynamo per call, but a compile per layout);
# later ones go through torch.compile, whose automatic dynamic shapes serve any number of them with one graph
# (a run's validation batches: a source length each)
TRACED_LAYOUTS = 8
# greedy tokens per greedy_block call (0: the search's own loop picks each token). 1: the pick (bans, argmax, finished
# rows) runs in the step's graph, the same size to compile as the step, 1.14x at batch 1 (greedy, compiled, one
# process). More tokens a call gained 12-14 % more at batch 1 but took 15x the step's compile time for a block of
# 8 (experiments/benchmarks/cpu_2026-12-04_epyc/), not worth it in most runs
BLOCK_TOKENS = 1


class StaticKVCache:
    """Keys/values of one attention layer on fixed (N, H, max_len, d_head) buffers: `update` writes one step at the
    (1,) slot tensor `pos` without a host sync and returns the whole buffers, so every step has the same shapes
    (the caller masks the unfilled slots). The attention layer calls it as it calls the eager KVCache."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = k, v

    def update(self, pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K[:, :, pos] ← k, V[:, :, pos] ← v (index_copy_, in place)."""
        self.k.index_copy_(2, pos, k.to(self.k.dtype)), self.v.index_copy_(2, pos, v.to(self.v.dtype))
        return self.k, self.v


@dataclass
class StaticState:
    """Decoder state on fixed buffers: per-layer caches (self-attention K/V of max_len slots, cross-attention K/V),
    which slots hold real keys (N, max_len), the next position id (N,), the next cache slot (1,)."""

    caches: list[LayerCache]
    key_valid: torch.Tensor
    next_pos: torch.Tensor
    pos: torch.Tensor
    memory_mask: torch.Tensor | None

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor with a batch dimension first (pos, shared by all rows, excluded)."""
        out = [self.key_valid, self.next_pos] + ([self.memory_mask] if self.memory_mask is not None else [])
        for c in self.caches:
            out += [c.self_kv.k, c.self_kv.v, *(c.memory_kv or ())]
        return out

    def target_tensors(self) -> list[torch.Tensor]:
        """The tensors that depend on the target so far (all of `tensors()` but the source's K/V and mask): what a
        beam step reorders."""
        return [self.key_valid, self.next_pos, *(t for c in self.caches for t in (c.self_kv.k, c.self_kv.v))]

    def with_tensors(self, tensors: list[torch.Tensor]) -> StaticState:
        """The same layout on other tensors (in the order of `tensors()`)."""
        it = iter(tensors)
        key_valid, next_pos = next(it), next(it)
        memory_mask = next(it) if self.memory_mask is not None else None
        caches = [LayerCache(StaticKVCache(next(it), next(it)), (next(it), next(it)) if c.memory_kv else None)
                  for c in self.caches]
        return StaticState(caches, key_valid, next_pos, self.pos, memory_mask)


def static_step(model, tok: torch.Tensor, state: StaticState) -> torch.Tensor:
    """(N,) previous tokens -> (N, V) next-token logits; advances `state` in place:
        x = E[tok]·√d_model + PE(next_pos)                       next_pos += [tok ≠ <pad>]
        K[:, :, pos] ← W_k h,  V[:, :, pos] ← W_v h              (each layer; StaticKVCache, no host sync)
        mask_j = key_valid_j ∨ (j = pos),  j ∈ [0, max_len)       softmax(q Kᵀ/√d_k + (−∞ where ¬mask)) V
        pos ← pos + 1
    An unfilled slot gets weight exp(−∞) = 0, so the attention is the eager one's (same tokens, up to float
    rounding)."""
    valid = tok != PAD
    at = torch.arange(state.key_valid.size(1), device=tok.device) == state.pos  # (max_len,) the slot written now
    state.key_valid.logical_or_(at & valid[:, None])
    mask = (state.key_valid | at)[:, None, None, :]  # a pad query (finished row) sees itself only: never all −∞
    x = model.decoder.embed(tok[:, None], state.next_pos[:, None])
    state.next_pos.add_(valid.long())
    for layer, cache in zip(model.decoder.layers, state.caches):
        x = layer(x, mask, None, state.memory_mask, cache=cache, pos=state.pos)
    state.pos.add_(1)
    return model.lm_head(model.decoder.norm(x[:, -1]))


def greedy_block(model, logits: torch.Tensor, state: StaticState, done: torch.Tensor, banned: torch.Tensor,
                 steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`steps` greedy tokens from (N, V) `logits`, each fed back through `static_step`, as the search's own loop
    (autoregressive._search) does them one by one:
        ŷ = argmax(logits with −∞ at `banned`), <pad> where done;  done ∨= (ŷ = <eos>);  logits ← step(ŷ)
    Returns the (N, steps) tokens, `done` and the logits of the next token. Compiled, the whole block is one graph:
    the pick runs in it (BLOCK_TOKENS = 1), and longer blocks make one call per `steps` tokens."""
    tokens = []
    for _ in range(steps):
        tok = logits.index_fill(-1, banned, float("-inf")).argmax(-1).masked_fill(done, PAD)
        done = done | (tok == EOS)
        tokens.append(tok)
        logits = static_step(model, tok, state)
    return torch.stack(tokens, 1), done, logits


def beam_advance(model, logits: torch.Tensor, scores: torch.Tensor, lengths: torch.Tensor, finished: torch.Tensor,
                 state: StaticState, beam_size: int, length_penalty: float, banned: torch.Tensor):
    """One beam step as one function: `beam_select` picks the survivors, the target side of the state moves to
    them (in place), and their tokens go through `static_step`. Compiled, the search's log-softmax, top-k and
    reorders run in the step's graph instead of as a dozen eager ops around it. Returns beam_select's five
    tensors and the (B·k, V) logits of the next token."""
    rows, tok, scores, lengths, finished = beam_select(logits, scores, lengths, finished, beam_size, length_penalty,
                                                       banned)
    for t in state.target_tensors():
        t.copy_(t.index_select(0, rows))
    return rows, tok, scores, lengths, finished, static_step(model, tok, state)


class StaticDecoder:
    """autoregressive.IncrementalDecoder over static buffers; `compile=True` compiles the step (CPU: once per layout
    by traced.compile_flat, called directly, `_traced`; the search's own steps too: beam's choice and reorder,
    `beam_advance`, greedy blocks; CUDA: torch.compile's mode="reduce-overhead", i.e. CUDA graphs); `int8=True`
    (CPU) runs the step on int8 copies of the decoder's weights: eager, fbgemm's int8 GEMMs on dynamically quantized
    activations (`int8_linear`); compiled, the one-row reduction over int8 weights with fp32 activations
    (`decode_linear`'s `q8`)."""

    def __init__(self, model, compile: bool = False, block_size: int = BLOCK_TOKENS, int8: bool = False):
        self._model = weakref.ref(model)  # weak: the per-model registry below must not keep the model alive
        self.cuda = model.lm_head.weight.is_cuda
        if int8 and self.cuda:
            raise ValueError("int8 decoding runs on CPU (fbgemm, or inductor's C++ reduction); not on CUDA")
        self.int8, self.compile = int8, compile
        # beam's choice, reorder and step in one call (the search uses it when not None): compiled CPU steps only
        # (eager it saves nothing; under CUDA graphs the outputs fed back as inputs would need care: untested)
        self.beam_advance = self._beam_advance if compile and not self.cuda else None
        self._banned: dict[tuple, torch.Tensor] = {}
        # greedy tokens per `greedy_block` call (0: none; the search then steps token by token). CPU only: a block
        # under CUDA graphs would need its own care of the graph's outputs, and is untested
        self.block_size = 0 if self.cuda else block_size
        self._pool: dict[tuple, list[torch.Tensor]] = {}  # buffers by layout, reused across calls
        self._compiled: dict[tuple, object] = {}  # CPU: compile_flat's functions by layout (`_traced`)
        self._inputs: list[torch.Tensor] | None = None  # the model's parameters and buffers (traced.module_tensors)
        self._dynamo: dict[object, object] = {}  # function -> its torch.compile'd self (CUDA; CPU past TRACED_LAYOUTS)
        self._warm: set[tuple] = set()  # (function, layout) served by an existing graph since the last prefill
        self._guarded: set[tuple] = set()  # layouts whose guard-free call would have recompiled: always guarded
        linears = [] if self.cuda else [
            m for m in model.decoder.layers.modules() if isinstance(m, nn.Linear)] + [model.lm_head]
        self.weights = DecodeWeights(model, linears, int8, eager_int8=int8 and not compile,
                                     prepacked=compile and not self.cuda)

    @property
    def model(self):
        return self._model()

    def _adopt(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Copy `tensors` into the pooled buffers of the same shapes (created on first use)."""
        key = tuple((t.shape, t.dtype) for t in tensors)
        if key not in self._pool:
            if len(self._pool) >= MAX_LAYOUTS:  # forget the oldest layout
                self._pool.pop(next(iter(self._pool)))
            with torch.inference_mode(False):  # normal tensors: a test stage's buffers are reused outside it
                self._pool[key] = [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in tensors]
            if self.cuda:
                for buf in self._pool[key]:
                    torch._dynamo.mark_static_address(buf)
        bufs = self._pool[key]
        for buf, t in zip(bufs, tensors):
            buf.copy_(t)
        return bufs

    def prefill(self, src: torch.Tensor, max_new_tokens: int) -> tuple[torch.Tensor, StaticState]:
        """The model's `start` (the encoder, once) eagerly; its tokens then go through the static step when there is
        one (encdec's <bos>: the first token is as fast as the others), through the eager decoder when there are
        several (a decoder's prompt)."""
        if self.weights.refresh():
            self._inputs = None  # a parameter may have been replaced
        self._warm.clear()
        prompt, s = self.model.start(src, max_new_tokens)
        logits = self.model.decode_tokens(prompt, s) if prompt.size(1) > 1 else None
        state = StaticState(s.caches, s.key_valid, s.next_pos, None, s.memory_mask)
        state = state.with_tensors(self._adopt(state.tensors()))
        state.pos = self._adopt([torch.tensor([s.pos], device=src.device)])[0]
        return (self.step(prompt[:, 0], state) if logits is None else logits), state

    def _run(self, fn, state: StaticState, *args):
        """fn(model, *args): eagerly, each Linear's forward swapped for its decode_linear one (CPU); compiled on CPU,
        the layout's own compiled function called directly (`_traced`) for the first TRACED_LAYOUTS layouts;
        otherwise through torch.compile (`_through_dynamo`)."""
        kind = self.weights.kind() if self.weights.linears else None
        if not self.compile:
            with self.weights.swapped(self.weights.forwards(kind) if kind is not None else []):
                return fn(self.model, *args)
        # the layout: what a compiled function's graph depends on (the compute kind, the state's and the call's
        # tensor shapes, its Python values)
        layout = (fn, kind, torch.is_autocast_enabled("cpu"), state.key_valid.shape,
                  None if state.memory_mask is None else state.memory_mask.shape,
                  *((a.shape, a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a
                    for a in args if a is not state))
        if not self.cuda and (layout in self._compiled or len(self._compiled) < TRACED_LAYOUTS):
            return self._traced(layout, kind, fn, state, args)
        return self._through_dynamo(layout, kind, fn, args)

    def _traced(self, layout: tuple, kind, fn, state: StaticState, args: tuple):
        """fn(model, *args) compiled for its layout and called without Dynamo (traced.compile_flat). Its inputs,
        gathered at every call (so a new pooled layout or a replaced parameter is read as it is now): the model's
        parameters and buffers, the Linears' copies, the state's buffers, the call's tensors."""
        self.weights.forwards(kind)  # the copies of this kind, made once
        if self._inputs is None:
            self._inputs = module_tensors(self.model)
        tensors = [*self._inputs, *self.weights.flat(kind), *state.tensors(), state.pos,
                   *(a for a in args if isinstance(a, torch.Tensor))]
        if layout not in self._compiled:
            self._compiled[layout] = compile_flat(partial(self._call_over, fn, kind, state, args), tensors,
                                                  CPU_STEP_OPTIONS)
        return self._compiled[layout](tensors)

    def _call_over(self, fn, kind, state: StaticState, args: tuple, *xs: torch.Tensor):
        """fn(model, *args) reading every tensor from `xs`, in `_traced`'s order (fake tensors while tracing)."""
        xs = iter(xs)
        params = {t: next(xs) for t in self._inputs}
        forwards = self.weights.rebuilt(kind, xs)
        st = state.with_tensors([next(xs) for _ in state.tensors()])
        st.pos = next(xs)
        args = [st if a is state else next(xs) if isinstance(a, torch.Tensor) else a for a in args]
        with substituted(self.model, params), self.weights.swapped(forwards):
            return fn(self.model, *args)

    def _through_dynamo(self, layout: tuple, kind, fn, args: tuple):
        """fn(model, *args) through torch.compile (CUDA: CUDA graphs; CPU: automatic dynamic shapes, one graph for the
        layouts past TRACED_LAYOUTS). Within one search (from a prefill to the next) only the values in the state's
        buffers change, so once a guarded call of a compiled function at a layout compiled nothing (its inputs passed
        an existing graph's guards), its later calls at that layout skip Dynamo's guard evaluation
        (`torch.compiler.set_stance(skip_guard_eval_unsafe=True)`): those guards can only pass again. (Not after the
        first call: a cold cache may compile a second graph at the second step of a new batch size, after automatic
        dynamic shapes made the first one dynamic.) Dynamo's guard-free mode still checks the guards that tell its
        cached graphs apart; where those would send a call to a new compile (many graphs of one step: several batch
        sizes, a dynamic one among them, several models), it raises instead, and that layout is guarded from then
        on."""
        from torch._dynamo.utils import counters  # here: importing dynamo costs seconds; compiling imported it
        if fn not in self._dynamo:
            self._dynamo[fn] = (torch.compile(fn, mode="reduce-overhead") if self.cuda else
                                torch.compile(fn, options=CPU_STEP_OPTIONS))
        compiled = self._dynamo[fn]
        if self.cuda:
            torch.compiler.cudagraph_mark_step_begin()
        with self.weights.swapped(self.weights.forwards(kind) if kind is not None else []):
            if layout in self._warm:
                try:
                    with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
                        return compiled(self.model, *args)
                except RuntimeError as e:  # raised on entering the step (one graph), before it changed anything
                    if "skip_guard_eval_unsafe" not in str(e):
                        raise
                    self._warm.discard(layout)  # the guards it skips pick among many graphs: guarded from here on
                    self._guarded.add(layout)
            graphs = counters["stats"]["unique_graphs"]
            out = compiled(self.model, *args)  # guarded: a new batch size, source length or dtype compiles a graph
            if counters["stats"]["unique_graphs"] == graphs and layout not in self._guarded:  # served by a graph
                self._warm.add(layout)
            return out

    def step(self, tok: torch.Tensor, state: StaticState) -> torch.Tensor:
        """A view (beam's tokens, a prompt's first column) is passed as a copy: a compiled step would guard on the
        shape of the view's base, which the layout of a guard-free call does not see."""
        return self._run(static_step, state, tok if tok._base is None else tok.clone(), state)

    def greedy_block(self, logits: torch.Tensor, state: StaticState, done: torch.Tensor,
                     fixed_length: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`block_size` greedy tokens in one call (module-level `greedy_block`; the search's bans: <pad>, <bos>,
        <mask>, and <eos> with fixed_length). The search calls it only when `block_size` > 0."""
        key = (logits.device, fixed_length)
        if key not in self._banned:
            self._banned[key] = banned_tokens(fixed_length, logits.device)
        return self._run(greedy_block, state, logits, state, done, self._banned[key], self.block_size)

    def _beam_advance(self, logits, scores, lengths, finished, state: StaticState, beam_size: int,
                      length_penalty: float, banned: torch.Tensor):
        """Module-level `beam_advance` in one call (compiled CPU steps; the search calls it when present)."""
        return self._run(beam_advance, state, logits, scores, lengths, finished, state, beam_size, length_penalty,
                         banned)

    def reorder_state(self, state: StaticState, index: torch.Tensor, same_source: bool = False) -> None:
        """Row i becomes old row index[i] (beam search): in place, or into pooled buffers when the batch size
        changes (the expansion to B·k, once per call). same_source (a beam step): the target side only."""
        tensors = state.tensors()
        if index.numel() == tensors[0].size(0):
            if same_source:
                tensors = state.target_tensors()
            for t in tensors:
                t.copy_(t.index_select(0, index))
            return
        new = state.with_tensors(self._adopt([t.index_select(0, index) for t in tensors]))
        state.caches, state.key_valid, state.next_pos, state.memory_mask = (
            new.caches, new.key_valid, new.next_pos, new.memory_mask)


_decoders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def static_decoder(model, compile: bool = False, block_size: int = BLOCK_TOKENS, int8: bool = False) -> StaticDecoder:
    """The model's StaticDecoder (one per model, compile flag, greedy block size and int8 flag, so compiled graphs,
    packed weights and buffers are reused)."""
    per_model = _decoders.setdefault(model, {})
    key = (compile, block_size, int8)
    if key not in per_model:
        per_model[key] = StaticDecoder(model, compile, block_size, int8)
    return per_model[key]


def supports_static(model) -> bool:
    """True for the transformer decoders (a `decoder` Stack with KV caches); rnn_attn and nar decode eagerly."""
    return hasattr(model, "decode_tokens")
