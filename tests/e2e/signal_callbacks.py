"""A Lightning callback for the signal tests: SIGTERM to its own process during the validation at one step, from
its first batch (`when="batch"`) or after its last one (`when="end"`)."""
import os
import signal

import lightning as L


class SigtermDuringValidation(L.Callback):
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
