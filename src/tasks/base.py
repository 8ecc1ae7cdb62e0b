"""What every task's LightningModule shares: AdamW with linear warm-up and cosine decay, token counting."""
from __future__ import annotations

import math

import lightning as L
import torch

from ..config import DecodeConfig, OptimConfig
from ..models.generation import generate
from ..models.vocab import PAD


class TaskModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, datamodule, optim: OptimConfig, decode: DecodeConfig, samples: int = 5):
        super().__init__()
        self.model, self.dm, self.optim, self.decode_cfg, self.n_samples = model, datamodule, optim, decode, samples
        self.train_tokens = 0  # non-pad tokens seen in training (for tokens/s)
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

    def count_tokens(self, *tensors: torch.Tensor) -> None:
        self.train_tokens += int(sum((t != PAD).sum() for t in tensors))

    def generate_tokens(self, src: torch.Tensor, max_new_tokens: int, decode: DecodeConfig | None = None):
        """The model's output token ids for `src` with the configured (or given) decoding."""
        d = decode or self.decode_cfg
        return generate(self.model, src, d.method, max_new_tokens, beam_size=d.beam_size,
                        length_penalty=d.length_penalty, temperature=d.temperature, top_k=d.top_k, top_p=d.top_p,
                        seed=d.seed, passes=d.passes, compile=d.compile)

    @property
    def decode_variants(self) -> dict[str, DecodeConfig]:
        """Decodings scored and timed, by metric prefix: the configured one ("")."""
        return {"": self.decode_cfg}

    # --- inference speed: the task says what "one inference" of a batch is and how many tokens it yields ---
    def infer(self, batch: dict) -> int:
        """Run inference on one batch; return the number of tokens produced (or consumed, for classifiers)."""
        raise NotImplementedError

    def bench_batches(self, n: int, batch_size: int) -> list[dict]:
        """Test batches for timing: `n` single-example batches, or one batch of `batch_size` when n == 0."""
        loader = self.dm.loader("test", batch_size=1 if n else batch_size)
        batches = []
        for batch in loader:
            batches.append({k: v.to(self.device) for k, v in batch.items()})
            if len(batches) >= max(n, 1):
                break
        return batches
