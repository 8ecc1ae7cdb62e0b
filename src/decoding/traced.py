"""A function compiled by inductor for one layout of its inputs and called without Dynamo (`compile_flat`): the
compiled CPU decode step (static.py).

`torch.compile` pays, at every call, for finding the frame's compiled graph, evaluating its guards (or, guard-free,
the guards that tell its graphs apart), and gathering the graph's inputs (~100 tensors: parameters, weight copies,
KV buffers) by bytecode; at batch 1 that is a quarter of a decode step. Here `make_fx` traces fn(*tensors) once into
an ATen graph over an explicit flat list of tensors, inductor compiles it (`compile_fx`, the backend torch.compile
uses, so the same C++ kernels), and every call passes that list straight to the compiled code. Nothing is checked
per call but inductor's own size/stride asserts: the caller keys each compiled function on everything the trace
baked in (input shapes, dtypes and strides, Python scalars, the autocast dtype) and keeps the tensors' addresses
fixed or passes the current ones.

While tracing, `torch.compiler.is_compiling()` is True, as under Dynamo, so the code takes the forms it takes when
compiled (decode_linear's reduction, attention's explicit product). A module's parameters and buffers enter as
inputs like any tensor: `module_tensors` lists them, `substituted` makes the module read the traced ones. Measured
figures: experiments/benchmarks/."""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils import _pytree as pytree


@contextlib.contextmanager
def _compiling():
    """torch.compiler.is_compiling() reads this flag; Dynamo sets it while it traces, we while make_fx does."""
    before = torch.compiler._is_compiling_flag
    torch.compiler._is_compiling_flag = True
    try:
        yield
    finally:
        torch.compiler._is_compiling_flag = before


def module_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """The module's parameters and buffers, each once (tied weights and shared modules included): what a function
    over the module reads, as inputs of `compile_flat` (`substituted` puts them back in place while it traces)."""
    return list(dict.fromkeys(t for _, _, t in _slots(module)))


def _slots(module: torch.nn.Module) -> list[tuple[dict, str, torch.Tensor]]:
    """Every (a submodule's _parameters or _buffers dict, name, tensor), a shared module or tied weight once per place
    it is reached from."""
    return [(slots, name, t) for m in module.modules(remove_duplicate=False)
            for slots in (m._parameters, m._buffers) for name, t in slots.items() if t is not None]


@contextlib.contextmanager
def substituted(module: torch.nn.Module, tensors: dict[torch.Tensor, torch.Tensor]):
    """Each parameter or buffer t of `module` reads as tensors[t] inside (every place it is reached from: torch.func's
    reparametrization untied encdec's shared embedding after the call); the originals are back on exit."""
    slots = _slots(module)
    try:
        for slots_of, name, t in slots:
            slots_of[name] = tensors[t]
        yield
    finally:
        for slots_of, name, t in slots:
            slots_of[name] = t


def compile_flat(fn: Callable, tensors: list[torch.Tensor], options: dict) -> Callable[[list[torch.Tensor]], object]:
    """fn(*tensors) -> a pytree of tensors, traced (fake tensors: nothing runs, nothing is mutated) and compiled for
    exactly these shapes, dtypes and strides, with inductor `options`. Returns run(tensors), fn's output structure:
    in-place updates fn makes to its inputs happen in the compiled code too. Inputs the graph does not read are
    dropped from its signature (run picks the others)."""
    from torch._inductor import config
    from torch._inductor.compile_fx import compile_fx

    spec = []

    def flat(*xs):
        leaves, out_spec = pytree.tree_flatten(fn(*xs))
        spec.append(out_spec)
        return leaves

    with _compiling(), torch.no_grad():
        gm = make_fx(flat, tracing_mode="fake")(*tensors)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    used = [i for i, n in enumerate(placeholders) if n.users]
    for n in placeholders:
        if not n.users:
            gm.graph.erase_node(n)
    gm.recompile()
    with config.patch(options), torch.no_grad():
        compiled = compile_fx(gm, [tensors[i] for i in used])

    def run(xs: list[torch.Tensor]):
        return pytree.tree_unflatten(compiled(*[xs[i] for i in used]), spec[0])

    return run
