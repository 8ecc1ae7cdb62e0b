"""Run-level performance switches: CPU threads, the compiled training model, bf16 support.

- threads: one OpenMP pool of `threads` (default: $OMP_NUM_THREADS if set, else the physical cores; hyper-threads share a core's FMA units,
  so they add contention, not matmul throughput), set before any heavy work; the tokenizers' own Rust pool is
  turned off so it does not compete with it.
- train.compile: `torch.compile` of the model's forward (inductor: C++/OpenMP on CPU, Triton on GPU), with
  dynamic shapes because batches are bucketed by length; backward is compiled with it (AOTAutograd).
- bf16: Lightning's `trainer.precision=bf16-mixed` runs the forward under torch.autocast(bfloat16) (matmuls in
  bf16, reductions and the loss in fp32). On CPU it pays off only with native bf16 dot products (avx512_bf16 or
  AMX); `cpu_has_native_bf16()` says whether this CPU has them.
The decode fast path (decode.compile) lives in src/models/static_decode.py.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch


def physical_cores() -> int:
    """Physical cores available to this process (logical CPUs in our affinity mask / threads per core)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        siblings = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list").read_text()
        per_core = sum(b - a + 1 for a, b in ((int(x), int(y or x)) for x, _, y in
                                              (part.partition("-") for part in siblings.strip().split(","))))
    except (OSError, ValueError):
        per_core = 1
    return max(1, logical // max(1, per_core))


def set_threads(threads: int | None) -> int:
    """One intra-op pool of `threads` (None: $OMP_NUM_THREADS if set, else the physical cores); returns it."""
    n = threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or physical_cores()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(n)
    return n


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """Compile the model's forward in place (its state_dict keys are unchanged, checkpoints stay portable)."""
    model.compile(dynamic=True)
    return model


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 dot-product instructions (x86: avx512_bf16 or AMX-BF16; ARM: bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in (" avx512_bf16", " amx_bf16", " bf16"))


def warn_if_slow_bf16(precision: str, device: torch.device) -> None:
    """bf16 autocast on a CPU without bf16 instructions emulates every matmul (measured here: ~1 GFLOP/s in bf16
    against ~50 in fp32, 1 thread): say so instead of silently running many times slower."""
    if str(precision).startswith("bf16") and device.type == "cpu" and not cpu_has_native_bf16():
        logging.getLogger("archbench").warning(
            "trainer.precision=%s on a CPU without avx512_bf16/AMX: bf16 matmuls are emulated and much slower "
            "than fp32; use trainer.precision=32-true here", precision)
