"""How a run (or a tool) ends badly: the error types and the one `error: …` exit path.

  ConfigError   bad input: a config value, data, a run dir that cannot be used         -> exit 2
  Diverged      the training loss went non-finite (DivergenceGuard)                     -> exit 1
  Interrupted   a stop signal arrived and a checkpoint was saved (GracefulStop)         -> exit 128 + signal

Every entry point (`python -m src.run`, `src.speed`, `src.report`, `src.eval`/`translate`/`predict`/`export`, the
sweep launchers) ends bad input through `refuse` (a `main(argv)` that returns its code: `print_error`, return 2): one `error: …` line on stderr and exit code 2. Standard library
only, so a CLI can refuse before anything heavy is imported.
"""
from __future__ import annotations

import signal
import sys
from typing import NoReturn


class ConfigError(ValueError):
    """A bad configuration value; str() is the one-line message shown to the user."""


class Diverged(RuntimeError):
    """Training produced a non-finite loss."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"training diverged at step {step} (loss={loss}); try a lower optim.lr")
        self.step, self.loss = step, loss

    def __reduce__(self):  # picklable: a SLURM multirun member's failed JobReturn carries it back (submitit)
        return Diverged, (self.step, self.loss)


class Interrupted(RuntimeError):
    """A stop signal arrived; a checkpoint was saved. The exit code is 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def print_error(message: str) -> None:
    """`error: <message>` on stderr, each line of a multi-line message prefixed."""
    print("\n".join(f"error: {line}" for line in str(message).splitlines() or [""]), file=sys.stderr, flush=True)


def refuse(message: str, code: int = 2) -> NoReturn:
    """End the process on bad input: `print_error`, exit `code` (2)."""
    print_error(message)
    sys.exit(code)
