"""What every task's LightningModule shares: AdamW with linear warm-up and cosine decay, token counting, and the
per-example test predictions (`prediction_rows`, written to <run_dir>/predictions.jsonl by `write_predictions`)."""
from __future__ import annotations

import json
import math
import random

import lightning as L
import torch
import torch.nn.functional as F

from ..config import DecodeConfig, OptimConfig
from ..decoding import generate
from ..models.vocab import PAD


class TaskModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, datamodule, optim: OptimConfig, decode: DecodeConfig, samples: int = 5):
        super().__init__()
        self.model, self.dm, self.optim, self.decode_cfg, self.n_samples = model, datamodule, optim, decode, samples
        self.train_tokens = 0  # non-pad tokens seen in training (for tokens/s)
        self.cross_entropy = F.cross_entropy  # the token loss over the vocabulary; train.compile compiles it
        self.samples: list[dict] = []  # decoded test examples

    def configure_optimizers(self):
        o = self.optim
        params = list(self.model.parameters())  # weight decay on matrices, not on biases and norms
        opt = torch.optim.AdamW(
            [{"params": [p for p in params if p.dim() >= 2], "weight_decay": o.weight_decay},
             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
            lr=o.lr, betas=tuple(o.betas), fused=True,  # one fused kernel per step, on CPU and GPU
        )
        total = max(1, self.trainer.max_steps) if self.trainer.max_steps > 0 else 10_000

        def schedule(step):
            if step < o.warmup_steps:
                return (step + 1) / o.warmup_steps
            progress = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_before_optimizer_step(self, optimizer):
        """Clip the global gradient norm here (Lightning's own clipping refuses fused optimizers under AMP)."""
        if self.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim.grad_clip)

    def on_save_checkpoint(self, checkpoint):
        """What a resumed run needs beyond Lightning's state: tokens seen so far and the RNG (dropout, CMLM masks)."""
        checkpoint["archbench"] = {"train_tokens": self.train_tokens, "torch_rng": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint):
        state = checkpoint.get("archbench", {})
        self.train_tokens = state.get("train_tokens", 0)
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])

    def count_tokens(self, *tensors: torch.Tensor) -> None:
        self.train_tokens += int(sum((t != PAD).sum() for t in tensors))

    def generate_tokens(self, src: torch.Tensor, max_new_tokens: int, decode: DecodeConfig | None = None,
                        fixed_length: bool = False):
        """The model's output token ids for `src` with the configured (or given) decoding."""
        return generate(self.model, src, decode or self.decode_cfg, max_new_tokens, fixed_length)

    def prediction_rows(self) -> list[dict]:
        """Per-example test predictions of the last test epoch, in test-set order, each with "id" (the raw test
        row); [] for a task that writes its own file (translation: hypotheses.jsonl)."""
        return []

    @property
    def decode_variants(self) -> dict[str, DecodeConfig]:
        """Decodings scored and timed, by metric prefix: the configured one ("")."""
        return {"": self.decode_cfg}

    # --- inference speed: the task says what "one inference" of a batch is and how many tokens it yields ---
    generative = True  # infer() decodes: timed in natural and fixed-length mode (src/speed/inference.py)

    def infer(self, batch: dict, new_tokens: int | None = None) -> int:
        """Run inference on one batch; return the number of real output tokens (or tokens consumed, for
        classifiers). new_tokens=N: fixed-length mode, <eos> banned, exactly N output tokens per row."""
        raise NotImplementedError


def spread_over_lengths(lengths: list[int], n: int, seed: int) -> list[int]:
    """Indices of n examples drawn across the length distribution: sort by length, cut into n equal bins and pick
    one example per bin at random (seeded), shortest bin first. Not the n shortest (the test loader is sorted)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    n, rng = min(n, len(order)), random.Random(seed)
    return [order[rng.randrange(len(order) * k // n, len(order) * (k + 1) // n)] for k in range(n)]


def write_predictions(module: TaskModule, path) -> bool:
    """<run_dir>/predictions.jsonl: one JSON line per test example (`module.prediction_rows()`); False, and no file,
    when the task has none. The report's paired tests and bootstrap intervals read it back (src/report/)."""
    rows = module.prediction_rows()
    if not rows:
        return False
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return True
