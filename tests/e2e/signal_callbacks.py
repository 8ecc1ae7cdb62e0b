"""A Lightning callback for the signal tests: SIGTERM to its own process at one step, during its validation (from
the first batch, `when="batch"`, or after the last one, `when="end"`) or at the end of its training batch, after
the run's own callbacks have checked for a signal (`when="train_batch_end"`: Lightning's stop takes it)."""
import os
import signal

import lightning as L


class SigtermAtStep(L.Callback):
    def __init__(self, at_step: int, when: str = "batch"):
        self.at_step, self.when, self.sent = at_step, when, False

    def _send(self, trainer, when: str) -> None:
        if when == self.when and trainer.global_step == self.at_step and not self.sent and not trainer.sanity_checking:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    def on_validation_batch_start(self, trainer, *args, **kwargs):
        self._send(trainer, "batch")

    def on_validation_end(self, trainer, *args, **kwargs):
        self._send(trainer, "end")

    def on_train_batch_end(self, trainer, *args, **kwargs):
        self._send(trainer, "train_batch_end")
