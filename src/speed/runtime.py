"""The process's runtime switches: CPU threads, the memory allocator, the compiled training model, bf16 support.

- threads: one OpenMP pool of `threads` (default: $OMP_NUM_THREADS if set, else the physical cores; hyper-threads
  share a core's FMA units, so they add contention, not matmul throughput), set before any heavy work; the
  tokenizers' own Rust pool is turned off so it does not compete with it.
- allocator: glibc's malloc, or tcmalloc with `ARCHBENCH_MALLOC=tcmalloc`. glibc returns every freed block of 32 MB
  or more (and a heap top above its trim threshold) to the kernel, so a training step that allocates the same large
  tensors at every step (the logits, their log-softmax and gradient, the FFN activations) gets them back as fresh
  pages; tcmalloc keeps freed memory for reuse. PyTorch's CPU performance guide recommends the same (tcmalloc or
  jemalloc through LD_PRELOAD; jemalloc's default decay returns pages as glibc does). It is not the default because
  it is not a win everywhere: the default run's tiny model trains slower on it (experiments/benchmarks/README.md
  has the measurements). `use_tcmalloc()`, called first by the `python -m src.run` and `python -m src.speed`
  entry points, re-executes the command (same process id, so SLURM's signals still reach it) with libtcmalloc in
  LD_PRELOAD when ARCHBENCH_MALLOC=tcmalloc and the library is installed (Debian/Ubuntu: `apt-get install
  libtcmalloc-minimal4`); child processes get the user's own LD_PRELOAD back. `slurm/run.sbatch` runs
  `python -m src.run` and so re-executes too; members of a `hydra/launcher=slurm` sweep run inside submitit's own
  process and stay on glibc unless the job preloads it
  (`hydra.launcher.setup=["export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"]`).
  `allocator_name()` says which allocator this process runs on; results.json and bench.json record it.
- train.compile: `torch.compile` of the model's forward (inductor: C++/OpenMP on CPU, Triton on GPU), with
  dynamic shapes because batches are bucketed by length; backward is compiled with it (AOTAutograd). The token
  loss over the vocabulary (`compile_loss`: cross-entropy with label smoothing and ignored pads) is compiled too:
  eager, its log-softmax, smoothing and NLL each pass over the (tokens, vocab) logits and their gradient, where
  inductor fuses them into one loop forward and one backward.
- bf16: Lightning's `trainer.precision=bf16-mixed` runs the forward under torch.autocast(bfloat16) (matmuls in
  bf16, reductions and the loss in fp32). On CPU it pays off only with native bf16 dot products (avx512_bf16 or
  AMX); `cpu_has_native_bf16()` says whether this CPU has them.
The decode fast path (decode.compile) lives in src/decoding/static.py.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import refuse

CHOICES = ("system", "tcmalloc")
LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
_ORIGINAL = "ARCHBENCH_LD_PRELOAD_BEFORE"  # set across the re-exec: the user's own LD_PRELOAD (and "we did it")


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


def compile_loss() -> Callable[..., torch.Tensor]:
    """F.cross_entropy compiled (dynamic shapes: the token count changes with every batch), for the training tasks'
    `cross_entropy` under train.compile."""
    return torch.compile(F.cross_entropy, dynamic=True)


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 dot-product instructions (x86: avx512_bf16 or AMX-BF16; ARM: bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in (" avx512_bf16", " amx_bf16", " bf16"))


def warn_if_slow_bf16(precision: str, device: torch.device) -> None:
    """bf16 autocast on a CPU without bf16 instructions emulates every matmul, many times slower than fp32
    (experiments/benchmarks/README.md): say so instead of silently running slower."""
    if str(precision).startswith("bf16") and device.type == "cpu" and not cpu_has_native_bf16():
        logging.getLogger("archbench").warning(
            "trainer.precision=%s on a CPU without avx512_bf16/AMX: bf16 matmuls are emulated and much slower "
            "than fp32; use trainer.precision=32-true here", precision)


def find_tcmalloc() -> str | None:
    for directory in LIBRARY_DIRS:
        for lib in LIBRARIES:
            if (Path(directory) / lib).is_file():
                return str(Path(directory) / lib)
    return None


def allocator_name() -> str:
    """"tcmalloc" or "glibc": the allocator mapped into this process."""
    try:
        return "tcmalloc" if "tcmalloc" in Path("/proc/self/maps").read_text() else "glibc"
    except OSError:
        return "unknown"


def use_tcmalloc() -> None:
    """Re-execute this command on tcmalloc when ARCHBENCH_MALLOC=tcmalloc (the module docstring says why)."""
    if _ORIGINAL in os.environ:  # the re-executed process: children get the user's LD_PRELOAD back
        before = os.environ.pop(_ORIGINAL)
        if before:
            os.environ["LD_PRELOAD"] = before
        else:
            os.environ.pop("LD_PRELOAD", None)
        return
    choice = os.environ.get("ARCHBENCH_MALLOC", "system")
    if choice not in CHOICES:
        refuse(f"ARCHBENCH_MALLOC={choice} is not valid; choose one of: {', '.join(CHOICES)}")
    if choice == "system" or allocator_name() == "tcmalloc":
        return
    lib = find_tcmalloc()
    if lib is None:
        print("warning: ARCHBENCH_MALLOC=tcmalloc but libtcmalloc is not installed "
              "(apt-get install libtcmalloc-minimal4); running on glibc's malloc", file=sys.stderr)
        return
    before = os.environ.get("LD_PRELOAD", "")
    env = {**os.environ, "LD_PRELOAD": f"{lib} {before}".strip(), _ORIGINAL: before}
    sys.stdout.flush(), sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)
