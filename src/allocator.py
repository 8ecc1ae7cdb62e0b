"""The process's CPU memory allocator: glibc's malloc, or tcmalloc with `ARCHBENCH_MALLOC=tcmalloc`.

glibc returns every freed block of 32 MB or more (and a heap top above its trim threshold) to the kernel, so a
training step that allocates the same large tensors at every step (the logits, their log-softmax and gradient, the
FFN activations) gets them back as fresh pages. Measured on a 2-core EPYC VM, encdec 3+3 d 256 vocab 8k, 1,024
target tokens a step: 12k-60k page faults a step with glibc, ~500 with tcmalloc, which keeps freed memory for reuse:
training tokens/s +15 % in fp32 and +33 % in bf16 autocast (ours and HF's alike, `python -m src.bench`). PyTorch's
CPU performance guide recommends the same (tcmalloc or jemalloc through LD_PRELOAD; jemalloc's default decay returned
pages as glibc does here: 58k faults a step). It is not the default because it is not a win everywhere: the default
run's tiny model (d 64, 4k-element tensors) trains 18 % slower on it (fit 25.5 vs 21.0 s, two runs each).

`use_tcmalloc()`, called first by the `python -m src.run` and `python -m src.bench` entry points, re-executes the
command (same process id, so SLURM's signals still reach it) with libtcmalloc in LD_PRELOAD when
ARCHBENCH_MALLOC=tcmalloc and the library is installed (Debian/Ubuntu: `apt-get install libtcmalloc-minimal4`);
child processes get the user's own LD_PRELOAD back. `slurm/run.sbatch` runs `python -m src.run` and so re-executes
too; members of a `hydra/launcher=slurm` sweep run inside submitit's own process and stay on glibc unless the job
preloads it (`hydra.launcher.setup=["export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"]`).
`name()` says which allocator this process runs on; results.json and bench.json record it beside threads and load.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

CHOICES = ("system", "tcmalloc")
LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
_ORIGINAL = "ARCHBENCH_LD_PRELOAD_BEFORE"  # set across the re-exec: the user's own LD_PRELOAD (and "we did it")


def find_tcmalloc() -> str | None:
    for directory in LIBRARY_DIRS:
        for lib in LIBRARIES:
            if (Path(directory) / lib).is_file():
                return str(Path(directory) / lib)
    return None


def name() -> str:
    """"tcmalloc" or "glibc": the allocator mapped into this process."""
    try:
        return "tcmalloc" if "tcmalloc" in Path("/proc/self/maps").read_text() else "glibc"
    except OSError:
        return "unknown"


def use_tcmalloc() -> None:
    if _ORIGINAL in os.environ:  # the re-executed process: children get the user's LD_PRELOAD back
        before = os.environ.pop(_ORIGINAL)
        if before:
            os.environ["LD_PRELOAD"] = before
        else:
            os.environ.pop("LD_PRELOAD", None)
        return
    choice = os.environ.get("ARCHBENCH_MALLOC", "system")
    if choice not in CHOICES:
        print(f"error: ARCHBENCH_MALLOC={choice} is not valid; choose one of: {', '.join(CHOICES)}", file=sys.stderr)
        sys.exit(2)
    if choice == "system" or name() == "tcmalloc":
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
