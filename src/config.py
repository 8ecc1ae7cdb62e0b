"""Typed schema of the composed config, registered in Hydra's ConfigStore as `schema` (first in `defaults:`).

OmegaConf type-checks every value against these dataclasses at composition; `validate()` then builds them
(`OmegaConf.to_object`, which runs `__post_init__`) and checks the arch × task × data matrix. Every error is a
`ConfigError` whose message is one line naming the bad value and the valid choices. Nothing heavy is imported here,
not even Hydra or OmegaConf (imported where used): Hydra-free callers (src/speed/compare.py under
experiments/benchmarks/run_gpu.py) build a DecodeConfig.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from .errors import ConfigError  # re-exported: `from src.config import ConfigError` keeps working
from .speed.ct2 import check_ct2

if TYPE_CHECKING:
    from omegaconf import DictConfig

MISSING: Any = "???"  # omegaconf.MISSING: a value the composed config must set

LM_PROMPT_TOKENS = 4  # <bos> + 3 tokens: the prompt of the LM task's samples and inference timing
VAL_MODES = ("max", "min")
DECODE_METHODS = {"ar": ("greedy", "beam", "sample"), "nar": ("mask_predict",)}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass
class ArchConfig:
    name: str = MISSING
    family: str = "ar"  # ar | nar | encoder: which decoding applies
    models: dict[str, Any] = MISSING  # task name -> partial nn.Module (the tasks this arch supports)
    params: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments
    train_steps: dict[str, int] = field(default_factory=dict)  # task name -> trainer.max_steps (over task.train_steps)


@dataclass
class TaskConfig:
    name: str = MISSING
    module: Any = MISSING  # partial LightningModule
    metric: str = MISSING  # headline metric, e.g. test/exact_match
    val_metric: str = "val/loss"  # model selection: the task's headline on validation data (conf/task/: val/bleu, …)
    val_mode: str = "min"  # max | min: whether a higher val_metric is better
    bleu_tokenize: Optional[str] = None  # translation: sacreBLEU tokenizer; null: from data.tgt_lang (zh, ja-mecab, …)
    train_steps: Optional[int] = None  # trainer.max_steps unless arch.train_steps has this task (conf/config.yaml)

    def __post_init__(self):
        from .tasks.scoring import check_bleu_tokenize

        error = check_bleu_tokenize(self.bleu_tokenize)
        _check(error is None, error or "")
        _check(self.val_mode in VAL_MODES, f"task.val_mode={self.val_mode} is not valid; choose one of: "
               f"{', '.join(VAL_MODES)}")
        _check(str(self.val_metric).startswith("val/"), f"task.val_metric={self.val_metric} is not a validation "
               "metric; choose a logged val/ metric (val/bleu, val/accuracy, val/loss, ...)")


@dataclass
class DataConfig:
    name: str = MISSING
    root: str = "${oc.env:ARCHBENCH_DATA_ROOT,../shared/data}"  # real corpora are read from here
    seed: int = 0  # the data's seed (synthetic data, shuffles): fixed, not the run's seed (src/data/build.py)
    src_lang: Optional[str] = None  # translation direction for parallel corpora
    tgt_lang: Optional[str] = None
    limit: dict[str, Optional[int]] = field(  # split -> keep the first N examples (null: all)
        default_factory=lambda: {"train": None, "validation": None, "test": None})
    distill_from: Optional[str] = None  # a finished translation run dir: its outputs become train targets (KD)
    cache_dir: Optional[str] = "${oc.env:ARCHBENCH_CACHE_DIR,'~/.cache/archbench'}"  # tokenizers, encoded splits
    tokenizer: str = "word"
    vocab_size: int = 8000
    batch_size: int = 64
    eval_batch_size: int = 128
    max_length: int = 256
    tasks: dict[str, Any] = MISSING  # task name -> partial returning a DatasetDict (src/data/build.py)

    def __post_init__(self):
        from .data.tokenizer import KINDS

        _check(self.tokenizer in KINDS, f"data.tokenizer={self.tokenizer} is not valid; choose one of: {', '.join(KINDS)}")
        _check(self.batch_size > 0 and self.eval_batch_size > 0, f"data.batch_size={self.batch_size} must be > 0")
        _check(self.max_length >= 1, f"data.max_length={self.max_length} must be >= 1 (tokens kept per sequence)")
        _check(self.vocab_size > 5,
               f"data.vocab_size={self.vocab_size} must be larger than the 5 special tokens")
        for split, n in self.limit.items():
            _check(n is None or n > 0, f"data.limit.{split}={n} must be a positive number of examples (or null)")


@dataclass
class SizeConfig:
    name: str = MISSING
    d_model: int = MISSING
    n_heads: int = MISSING
    n_layers: int = MISSING
    d_ff: int = MISSING
    dropout: float = 0.1
    target_params: Optional[float] = None  # matched size: d_model solved for this many params ±5 % (src/sizing.py)

    def __post_init__(self):
        _check(self.target_params is None or self.target_params > 0,
               f"size.target_params={self.target_params} must be a positive parameter count (or null)")
        _check(self.d_model > 0 and self.n_heads > 0 and self.n_layers > 0 and self.d_ff > 0,
               f"size={self.name}: d_model, n_heads, n_layers and d_ff must be positive")
        _check(self.d_model % self.n_heads == 0,
               f"size.d_model={self.d_model} is not divisible by size.n_heads={self.n_heads}; choose n_heads among "
               f"{', '.join(str(h) for h in range(1, self.d_model + 1) if self.d_model % h == 0 and h <= 64)}")
        _check(self.d_model % 2 == 0, f"size.d_model={self.d_model} must be even (sinusoidal positions)")
        _check(0.0 <= self.dropout < 1.0, f"size.dropout={self.dropout} must be in [0, 1)")


@dataclass
class DecodeConfig:
    method: str = "greedy"
    max_len_a: float = 1.5  # max target length = a · source length + b
    max_len_b: int = 10
    beam_size: int = 4
    length_penalty: float = 1.0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    passes: int = 4  # NAR refinement passes
    length_beam: int = 5  # NAR: decode the top-ℓ predicted lengths, keep the best average log-prob (Mask-Predict §3.3)
    dedup: bool = False  # NAR: collapse consecutive repeated output tokens (post-processing; not in Mask-Predict)
    no_repeat_ngram_size: int = 0  # AR: never repeat an n-gram of the output (fairseq); 0 = off
    repetition_penalty: float = 1.0  # AR: divide logits of already generated tokens by this (CTRL); 1 = off
    compile: bool = False  # AR transformers: static-shape decode step, compiled (CPU: traced.py; CUDA: CUDA graphs)
    int8: bool = False  # AR transformers on CPU: the static step on int8 weights (eager: fbgemm; compiled: inductor)

    def __post_init__(self):
        valid = sorted({m for ms in DECODE_METHODS.values() for m in ms})
        _check(self.method in valid, f"decode.method={self.method} is not valid; choose one of: {', '.join(valid)}")
        _check(self.beam_size >= 1, f"decode.beam_size={self.beam_size} must be >= 1")
        _check(self.temperature > 0, f"decode.temperature={self.temperature} must be > 0")
        _check(0 < self.top_p <= 1, f"decode.top_p={self.top_p} must be in (0, 1]")
        _check(self.top_k >= 0, f"decode.top_k={self.top_k} must be >= 0 (0 = off)")
        _check(self.passes >= 1, f"decode.passes={self.passes} must be >= 1")
        _check(self.length_beam >= 1, f"decode.length_beam={self.length_beam} must be >= 1 (1 = off)")
        _check(self.no_repeat_ngram_size >= 0, f"decode.no_repeat_ngram_size={self.no_repeat_ngram_size} must be >= 0")
        _check(self.repetition_penalty >= 1.0, f"decode.repetition_penalty={self.repetition_penalty} must be >= 1")


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100
    label_smoothing: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    divergence_patience: int = 0  # stop after this many consecutive non-finite losses (0: at the first)


@dataclass
class TrainConfig:
    """Training fast paths (src/speed/runtime.py). Precision is Lightning's `trainer.precision` (bf16-mixed)."""

    compile: bool = False  # torch.compile the model's forward (dynamic shapes; inductor C++ on CPU)


@dataclass
class BudgetConfig:
    """How long a run trains (src/budget.py): trainer.max_steps (tokens and flops null), or until it has trained on
    `tokens` tokens or spent `flops` training FLOPs (3 × forward, src/speed/flops.py); `val_points` validations
    a run when trainer.val_check_interval is null."""

    tokens: Optional[float] = None
    flops: Optional[float] = None
    val_points: int = 8

    def __post_init__(self):
        _check(self.tokens is None or self.flops is None,
               f"budget.tokens={self.tokens:g} and budget.flops={self.flops:g} are both set; set one (or neither: "
               "trainer.max_steps)" if self.tokens is not None and self.flops is not None else "")
        for name in ("tokens", "flops"):
            value = getattr(self, name)
            _check(value is None or value > 0, f"budget.{name}={value} must be > 0 (or null)")
        _check(self.val_points >= 1, f"budget.val_points={self.val_points} must be >= 1")


@dataclass
class BenchConfig:
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32, 128])  # capped by the test set size
    latency_sentences: int = 16  # sentences timed one at a time (batch 1)
    fixed_tokens: int = 32  # fixed-length mode: <eos> banned, exactly this many new tokens (AR and NAR)
    warmup: int = 1
    repeats: int = 5
    seed: int = 0  # which test sentences are drawn (stratified by length)
    ct2: bool = False  # also time the model exported to CTranslate2 (src/speed/deploy.py): costs an export
    ct2_quantizations: list[str] = field(default_factory=lambda: ["float32", "int8"])
    ct2_threads: Optional[list[int]] = None  # CT2 thread counts tried, the best reported (None: 1 and all cores)

    def __post_init__(self):
        _check_sizes("bench.batch_sizes", self.batch_sizes)
        for name in ("latency_sentences", "fixed_tokens", "repeats"):
            _check(getattr(self, name) >= 1, f"bench.{name}={getattr(self, name)} must be >= 1")
        _check(self.warmup >= 0, f"bench.warmup={self.warmup} must be >= 0")
        check_ct2("bench", self.ct2, self.ct2_quantizations, self.ct2_threads)


def _check_sizes(key: str, sizes: list[int]) -> None:
    _check(len(sizes) > 0 and min(sizes) >= 1, f"{key}={list(sizes)} must be a non-empty list of sizes >= 1")


@dataclass
class AttentionConfig:
    """Cross-attention heatmaps of a translation run: `examples` test sentences across lengths (attention.png), and
    exactly `sentences` (attention_sentences.png), e.g. attention.sentences='["I love you."]'."""

    examples: int = 3
    sentences: list[str] = field(default_factory=list)

    def __post_init__(self):
        _check(self.examples >= 0, f"attention.examples={self.examples} must be >= 0 (0: no test heatmap)")
        for i, s in enumerate(self.sentences):
            _check(isinstance(s, str) and s.strip() != "", f"attention.sentences[{i}]={s!r} must be a non-empty "
                   "sentence, e.g. attention.sentences='[\"I love you.\"]'")


@dataclass
class LoggerConfig:
    name: str = MISSING
    project: str = "archbench"
    group: Optional[str] = None
    job_type: str = "train"
    tags: list[str] = field(default_factory=list)


@dataclass
class GpuConfig:  # conf/gpu/<type>.yaml: where a SLURM job asking for this GPU type runs (hydra/launcher=slurm)
    name: str = MISSING
    partition: Optional[str] = None
    gres: Optional[str] = None
    constraint: Optional[str] = None
    cpus_per_gpu: Optional[int] = None  # --cpus-per-task of a job's task (one task per GPU); null: launcher default
    mem_gb_per_gpu: Optional[int] = None  # --mem per node = this x GPUs per node (tasks_per_node)


@dataclass
class RunConfig:
    arch: ArchConfig = MISSING
    task: TaskConfig = MISSING
    data: DataConfig = MISSING
    size: SizeConfig = MISSING
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    logger: LoggerConfig = MISSING
    trainer: dict[str, Any] = field(default_factory=dict)  # lightning.Trainer keyword arguments
    seed: int = 0
    threads: Optional[int] = None  # torch CPU threads, one OpenMP pool (None: the physical cores)
    samples: int = 5  # decoded test examples printed and logged
    select_best: bool = True  # test the best checkpoint by task.val_metric (callbacks.best_checkpoint); false: the last
    checkpoint_every_n_steps: int = 250  # periodic last.ckpt, so a kill without warning loses little (0: off)
    progress_every_s: float = 15.0  # one progress line in the log this often
    results_file: Optional[str] = None  # removed: a value set is refused in validate() (always results.json)
    callbacks: dict[str, Any] = field(default_factory=dict)  # conf/callbacks/: name -> Lightning callback node
    gpu: Optional[GpuConfig] = None  # requested GPU type (SLURM sweeps); None: wherever the launcher sends it


def register() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=RunConfig)


def typed(cfg: DictConfig, schema: type | None = None, prefix: str = ""):
    """The config built as its dataclasses, which runs their checks (`schema`: the dataclass of an untyped node);
    OmegaConf's own errors (a wrong type, an unknown key) become one-line ConfigErrors naming the key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(cfg if schema is None else OmegaConf.merge(OmegaConf.structured(schema), cfg))
    except ConfigError:
        raise
    except OmegaConfBaseException as e:
        key = f"{prefix}{e.full_key}: " if prefix and getattr(e, "full_key", None) else ""
        raise ConfigError(key + str(e).splitlines()[0]) from None


def validate(cfg: DictConfig) -> RunConfig:
    """Check the composed config before anything is built. Raises ConfigError with a one-line message."""
    _check(cfg.get("results_file") is None, "results_file is no longer configurable: results are always "
           "<run_dir>/results.json")
    run: RunConfig = typed(cfg)
    arch, task = run.arch, run.task.name
    if task not in arch.models:
        pairs = ", ".join(f"arch={a} task={t}" for a, t in valid_pairs())
        raise ConfigError(
            f"arch={arch.name} does not support task={task}; {arch.name} supports task="
            f"{'|'.join(arch.models)}. Valid pairs: {pairs}"
        )
    _check(task in run.data.tasks,
           f"data={run.data.name} has no {task} task; it provides task={'|'.join(run.data.tasks)}")
    if task == "lm":
        _check(run.data.max_length >= LM_PROMPT_TOKENS, f"data.max_length={run.data.max_length} is too short for "
               f"task=lm: its samples use a {LM_PROMPT_TOKENS}-token prompt; use data.max_length >= {LM_PROMPT_TOKENS}")
    if task == "translation" and run.task.val_metric == "val/bleu" and run.select_best:
        _check(bool((run.task.module or {}).get("val_bleu")), "task.val_metric=val/bleu needs "
               "task.module.val_bleu=true (model selection on validation BLEU); or select_best=false")
    _check(not run.attention.sentences or task == "translation",
           f"attention.sentences applies to task=translation only (this run is task={task})")
    if task != "classification" and arch.family in DECODE_METHODS:
        methods = DECODE_METHODS[arch.family]
        _check(run.decode.method in methods,
               f"decode={run.decode.method} does not apply to arch={arch.name}; choose decode={'|'.join(methods)}")
    return run


def valid_pairs() -> list[tuple[str, str]]:
    """(arch, task) pairs declared by conf/arch/*.yaml."""
    from pathlib import Path

    from omegaconf import OmegaConf

    pairs = []
    for path in sorted((Path(__file__).parent.parent / "conf" / "arch").glob("*.yaml")):
        arch = OmegaConf.load(path)
        pairs += [(arch.name, t) for t in arch.models]
    return pairs
