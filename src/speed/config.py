"""The speed benchmark's own typed config node, `speed.*` (conf/speed.yaml; `python -m src.speed`).

It is not the run's `bench.*` node (src/config.py `BenchConfig`: how `python -m src.run` times its own inference):
the two share a few names (batch_sizes, warmup, repeats) with different defaults and meanings, so they are two
nodes. `python -m src.bench` (the old name) still takes `bench.*` overrides for this node: src/speed/__main__.py
renames them. What is compiled is the run's own switches, `train.compile` and `decode.compile`; `speed.compile=true`
sets both. `speed.ct2` (null: on when ctranslate2 is installed and the device is the CPU) adds CTranslate2 rows
for AR archs (src/speed/deploy.py). Validation raises `ConfigError` with one line naming the bad value and the valid
choices.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import DictConfig

from ..config import ConfigError, DecodeConfig, SizeConfig, typed
from .ct2 import check_ct2, ct2_installed

METHODS = ("greedy", "beam", "sample")
MODES = ("fixed", "natural")
DEVICES = ("cpu", "cuda")
WANDB_MODES = ("offline", "online", "disabled")
SPECIAL_TOKENS = 5  # synthetic inputs are drawn from [5, vocab) (src/speed/compare.py FIRST_ID)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _sizes_ok(sizes) -> bool:
    return len(sizes) > 0 and min(sizes) >= 1


@dataclass
class SpeedConfig:
    vocab: int = 8000
    src_len: int = 32
    new_tokens: int = 32
    methods: list[str] = field(default_factory=lambda: ["greedy", "beam"])  # nar: mask-predict 1 and decode.passes
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    beam_batch_sizes: Optional[list[int]] = field(default_factory=lambda: [1])  # None: the same as batch_sizes
    modes: list[str] = field(default_factory=lambda: ["fixed"])  # fixed: <eos> banned, exactly new_tokens
    train: bool = True  # time a training step too
    train_batch: int = 32
    warmup: int = 2
    repeats: int = 10
    device: str = "cpu"
    threads: Optional[int] = None  # torch CPU threads (None: torch's default)
    compile: bool = False  # alias: sets train.compile and decode.compile (our fast paths)
    peers: bool = True  # HF side by side when transformers is installed
    dropout: float = 0.0
    wandb: str = "offline"
    seed: int = 0
    ct2: Optional[bool] = None  # CTranslate2 rows (AR archs); None: on when ctranslate2 is installed, on CPU
    ct2_quantizations: list[str] = field(default_factory=lambda: ["float32", "int8"])
    ct2_threads: Optional[list[int]] = None  # CT2 intra_threads tried (None: 1 and all cores), the best reported

    def __post_init__(self):
        for key, valid in (("methods", METHODS), ("modes", MODES)):
            _require(len(getattr(self, key)) > 0, f"speed.{key}=[] is empty; choose among: {', '.join(valid)}")
            bad = [m for m in getattr(self, key) if m not in valid]
            _require(not bad, f"speed.{key} has {bad[0] if bad else ''}; choose among: {', '.join(valid)}")
        _require(self.device in DEVICES, f"speed.device={self.device} is not valid; choose one of: cpu, cuda")
        _require(self.wandb in WANDB_MODES,
                 f"speed.wandb={self.wandb} is not valid; choose one of: {', '.join(WANDB_MODES)}")
        _require(_sizes_ok(self.batch_sizes),
                 f"speed.batch_sizes={list(self.batch_sizes)} must be a non-empty list of sizes >= 1")
        _require(self.beam_batch_sizes is None or _sizes_ok(self.beam_batch_sizes),
                 f"speed.beam_batch_sizes={self.beam_batch_sizes} must be null or a non-empty list of sizes >= 1")
        _require(self.vocab > SPECIAL_TOKENS,
                 f"speed.vocab={self.vocab} must be larger than the {SPECIAL_TOKENS} special tokens")
        for key in ("src_len", "new_tokens", "train_batch", "repeats"):
            _require(getattr(self, key) >= 1, f"speed.{key}={getattr(self, key)} must be >= 1")
        _require(self.warmup >= 0, f"speed.warmup={self.warmup} must be >= 0")
        _require(self.threads is None or self.threads >= 1, f"speed.threads={self.threads} must be null or >= 1")
        _require(0.0 <= self.dropout < 1.0, f"speed.dropout={self.dropout} must be in [0, 1)")
        check_ct2("speed", self.ct2, self.ct2_quantizations, self.ct2_threads)
        _require(not (self.ct2 and self.device != "cpu"),
                 f"speed.ct2=true times CTranslate2 on the CPU only; with speed.device={self.device} use "
                 "speed.ct2=false")

    @property
    def ct2_on(self) -> bool:
        """Whether CT2 rows are timed: speed.ct2, or when null, ctranslate2 installed and the CPU benchmarked."""
        return bool(self.ct2) if self.ct2 is not None else (self.device == "cpu" and ct2_installed())


def speed_config(node: DictConfig) -> SpeedConfig:
    """The composed `speed` node, typed and validated; a bad type or value is a one-line ConfigError."""
    return typed(node, SpeedConfig, "speed.")


def validate(cfg: DictConfig) -> SpeedConfig:
    """The whole composed config of `python -m src.speed`: its size and decode groups checked as a run checks them,
    and its typed speed node."""
    for key, schema in (("size", SizeConfig), ("decode", DecodeConfig)):
        typed(cfg[key], schema, f"{key}.")
    return speed_config(cfg.speed)
