"""A finished run as a model you can use: its config, tokenizer, label set and checkpoint, rebuilt from its directory.

A run dir is self-contained: when the run (src/train.py) builds the data module (`build_run_datamodule`) it saves the trained
tokenizer (`tokenizer.json`) and what the data module needs besides it (`data.json`: task, label set in class-index
order, whether sequences get <bos>/<eos>, max_length) into the run dir, so eval, translate, predict, export and
knowledge distillation work on another machine or after `data.cache_dir` is cleared. A run finished before run dirs
carried these files is rebuilt the old way (the tokenizer from the cache, or trained again on the run's data).

    run = load_run(run_dir, overrides=["decode=beam", "decode.beam_size=5"])
    run.cfg, run.spec        # the run's config (results.json's `config`, else .hydra/config.yaml) + the overrides
    run.dm                   # a data module of the run's tokenizer and label set, with no splits
    run.module               # the task module (LightningModule) on run.device, eval mode
    run.translate(["a b c"]) # -> [["hypothesis"]] (n-best lists)

Checkpoint: `checkpoints/best.ckpt` when present (model selection on validation), else `checkpoints/last.ckpt`.
Overrides of the run's config are Hydra-style `key=value` (Hydra's override grammar): a group choice `data=<name>`
or `decode=<name>` (conf/<group>/<name>.yaml on top of the schema's defaults) and dotted keys under data./decode.;
the model's own settings (arch, task, size) cannot be overridden. A tool's own options (conf/<tool>.yaml) are
parsed from the same command line (`parse_cli`).
"""
from __future__ import annotations

import json
import logging
from contextlib import nullcontext
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from .atomic import write_atomic, write_json_atomic
from .errors import refuse
from .config import ConfigError, DataConfig, DecodeConfig, RunConfig, validate

log = logging.getLogger("archbench")
CONF = Path(__file__).resolve().parent.parent / "conf"
TOKENIZER_FILE, DATA_FILE = "tokenizer.json", "data.json"
CHECKPOINTS = ("best.ckpt", "last.ckpt")  # preferred first
RUN_GROUPS = ("data", "decode")  # config groups a finished run may be given anew
TOKENIZER_KEYS = ("tokenizer", "vocab_size", "cache_dir")  # describe the run's tokenizer: always the run's


# --- the run's hook: a run dir carries its tokenizer and label set -------------------------------------------

def build_run_datamodule(cfg, spec, run_dir: Path):
    """The training run's data module (KD teachers decode through `teacher_translations`), its tokenizer and data
    settings saved into `run_dir`."""
    from .data.build import build_datamodule

    dm = build_datamodule(cfg, spec, teacher=teacher_translations)
    save_run_assets(Path(run_dir), dm)
    return dm


def save_run_assets(run_dir: Path, dm) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    # DDP: every rank writes the same files, each through its own temp file
    write_atomic(run_dir / TOKENIZER_FILE, lambda f: f.write(dm.tokenizer.to_str(pretty=True)))
    data = {"task": dm.task, "labels": dm.label_names if dm.task == "classification" else None,
            "bos_eos": dm.bos_eos, "max_length": dm.max_length}
    write_json_atomic(run_dir / DATA_FILE, data, ensure_ascii=False)


# --- reading a finished run -----------------------------------------------------------------------------------------

def finished_record(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run_dir={run_dir} is not a directory")
    try:
        record = json.loads((run_dir / "results.json").read_text())
    except OSError:
        raise ConfigError(f"run_dir={run_dir} is not a finished run (no results.json)") from None
    except ValueError:
        raise ConfigError(f"run_dir={run_dir}: results.json is not readable JSON") from None
    if not isinstance(record, dict):
        raise ConfigError(f"run_dir={run_dir}: results.json is not a run record")
    return record


def run_config(run_dir: Path, record: dict) -> DictConfig:
    """The run's resolved config on top of the schema: results.json's `config`, else .hydra/config.yaml."""
    config = record.get("config")
    if not config:
        hydra_cfg = Path(run_dir) / ".hydra" / "config.yaml"
        if not hydra_cfg.is_file():
            raise ConfigError(f"run_dir={run_dir}: results.json has no config and there is no .hydra/config.yaml")
        config = OmegaConf.to_container(OmegaConf.load(hydra_cfg), resolve=False)
    config = {k: v for k, v in config.items() if k != "results_file"}  # recorded before the key was removed
    try:
        return OmegaConf.merge(OmegaConf.structured(RunConfig), config)
    except Exception as e:  # an older schema
        raise ConfigError(f"run_dir={run_dir}: its config does not fit this version's schema: "
                          f"{str(e).splitlines()[0]}") from None


def checkpoint_of(run_dir: Path) -> Path:
    for name in CHECKPOINTS:
        path = Path(run_dir) / "checkpoints" / name
        if path.is_file():
            return path
    raise ConfigError(f"run_dir={run_dir} holds no checkpoint (checkpoints/{' or '.join(CHECKPOINTS)})")


def apply_overrides(cfg: DictConfig, overrides: list) -> DictConfig:
    """Hydra overrides (parsed `Override`s) of the run's data and decode settings, group choices first."""
    for ov in sorted(overrides, key=lambda o: "." in o.key_or_group):
        key, value = ov.key_or_group, ov.value()
        if key.split(".")[0] not in RUN_GROUPS:
            raise ConfigError(f"{key}: the model comes from the run, so only {', '.join(RUN_GROUPS)} "
                              f"(data=…, data.*=…, decode=…, decode.*=…) can be overridden")
        try:
            if key in RUN_GROUPS:
                path = CONF / key / f"{value}.yaml"
                if not path.is_file():
                    choices = ", ".join(sorted(p.stem for p in (CONF / key).glob("*.yaml")))
                    raise ConfigError(f"{key}={value} is not an option; choose one of: {choices}")
                schema = DataConfig if key == "data" else DecodeConfig
                node = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.load(path))
                if key == "data":  # the tokenizer, max_length and batch sizes stay the run's (data.* may set them)
                    for k in (*TOKENIZER_KEYS, "max_length", "batch_size", "eval_batch_size"):
                        node[k] = cfg.data[k]
                cfg[key] = node
            elif ov.is_delete():
                raise ConfigError(f"~{key}: deleting keys of a finished run's config is not supported")
            else:
                with open_dict(cfg) if ov.is_add() else nullcontext():
                    OmegaConf.update(cfg, key, value, merge=True)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"{ov.input_line}: {str(e).splitlines()[0]}") from None
    return cfg


def parse_cli(argv: list[str], tool: str, groups: tuple[str, ...] = RUN_GROUPS) -> tuple[DictConfig, list]:
    """`key=value` arguments -> (the tool's options: conf/<tool>.yaml with its keys overridden, the overrides of the
    run's config under `groups`). Any other key is an error naming the options."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(argv))
    except Exception as e:
        raise ConfigError(f"bad argument: {str(e).splitlines()[0]}") from None
    options = OmegaConf.load(CONF / f"{tool}.yaml")
    OmegaConf.set_struct(options, True)
    run_overrides = []
    for ov in parsed:
        top = ov.key_or_group.split(".")[0]
        if top in groups:
            run_overrides.append(ov)
            continue
        try:
            if top in RUN_GROUPS:
                raise KeyError(top)
            OmegaConf.update(options, ov.key_or_group, ov.value(), merge=True)
        except Exception:
            known = ", ".join([*(f"{k}=" for k in _leaf_keys(options)), *(f"{g}=…, {g}.*=…" for g in groups)])
            raise ConfigError(f"{ov.input_line}: not an option of src.{tool}; it takes {known}") from None
    if OmegaConf.is_missing(options, "run_dir"):
        raise ConfigError(f"src.{tool} needs run_dir=<a finished run directory>")
    return options, run_overrides


def _leaf_keys(node, prefix=""):
    for k, v in node.items():
        if isinstance(v, DictConfig):
            yield from _leaf_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def stream_lines(stdin, stdout, size: int, handle) -> None:
    """src.translate / src.predict: read stdin `size` lines at a time and write one output line per input line, in
    order; blank lines give blank lines without running the model. `handle(texts, line_numbers)` maps the non-blank
    lines (and their 1-based line numbers) to their outputs."""
    from itertools import islice

    line_no = 0
    while lines := list(islice(stdin, size)):
        lines = [line.rstrip("\r\n") for line in lines]
        rows = [i for i, line in enumerate(lines) if line.strip()]
        out = [""] * len(lines)
        if rows:
            for i, text in zip(rows, handle([lines[i] for i in rows], [line_no + i + 1 for i in rows])):
                out[i] = text
        stdout.write("".join(o + "\n" for o in out))
        stdout.flush()
        line_no += len(lines)


def cli(main, argv: list[str] | None = None) -> None:
    """Run a tool's `main(argv)`; bad input is one `error: …` line on stderr and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("archbench").setLevel(logging.INFO)
    try:
        code = main(sys.argv[1:] if argv is None else argv)
    except ConfigError as e:
        refuse(str(e))
    sys.exit(code or 0)


# --- the run, rebuilt -------------------------------------------------------------------------------------------------

@dataclass
class TrainedRun:
    path: Path
    record: dict
    cfg: DictConfig  # the run's config with the overrides
    spec: RunConfig
    tokenizer: object
    labels: list[str] | None
    bos_eos: bool
    model: torch.nn.Module
    checkpoint: Path
    device: torch.device
    dm: object = None  # the run's tokenizer and label set, no splits
    module: object = None  # the task module on dm, on device, eval mode

    def module_for(self, dm):
        """The task module of this run's model on another data module (eval data), on the run's device."""
        from hydra.utils import instantiate

        module = instantiate(self.cfg.task.module)(model=self.model, datamodule=dm, optim=self.spec.optim,
                                                   decode=self.spec.decode, samples=self.spec.samples)
        return module.to(self.device).eval()

    def encode(self, texts: list[str], keep: str = "first") -> tuple[list[list[int]], list[int]]:
        """Token ids of each text, truncated to data.max_length (keep="last": the last tokens, for LM prompts);
        also the indices of the texts that were truncated."""
        n = self.spec.data.max_length
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts))] if texts else []
        long = [i for i, x in enumerate(ids) if len(x) > n]
        return [x[-n:] if keep == "last" else x[:n] for x in ids], long

    @torch.no_grad()
    def translate(self, texts: list[str], decode: DecodeConfig | None = None, batch_size: int | None = None,
                  nbest: int = 1) -> list[list[str]]:
        """n-best detokenized translations of each text (nbest > 1: beam search's best `nbest`, best first)."""
        from .data.datamodule import pad
        from .decoding.autoregressive import beam_search

        d = decode or self.spec.decode
        ids, _ = self.encode(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[list[str]] = [[] for _ in ids]
        size = batch_size or self.spec.data.eval_batch_size
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            src = pad([ids[i] for i in rows]).to(self.device)
            if nbest > 1:
                max_new = int(d.max_len_a * src.size(1) + d.max_len_b)
                tokens, _ = beam_search(self.model, src, max_new, d.beam_size, d.length_penalty,
                                        no_repeat_ngram_size=d.no_repeat_ngram_size,
                                        repetition_penalty=d.repetition_penalty)
                for i, hyps in zip(rows, tokens.tolist()):
                    out[i] = [self.dm.decode(h) for h in hyps[:nbest]]
            else:
                for i, hyp in zip(rows, self.module.translate(src, d).tolist()):
                    out[i] = [self.dm.decode(hyp)]
        return out


def load_run(run_dir, overrides: list | None = None, device: str | torch.device | None = None) -> TrainedRun:
    """Rebuild a finished run: config (+ overrides), tokenizer, label set, model from its checkpoint, task module."""
    from .data.datamodule import TextDataModule

    run_dir = Path(run_dir)
    record = finished_record(run_dir)
    cfg = run_config(run_dir, record)
    run_spec = validate(cfg.copy())
    cfg = apply_overrides(cfg, overrides or [])
    spec = validate(cfg)
    checkpoint = checkpoint_of(run_dir)
    tokenizer, data = _assets(run_dir, cfg, run_spec)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    from datasets import DatasetDict

    dm = TextDataModule(spec.task.name, DatasetDict(), tokenizer, spec.data.batch_size, spec.data.eval_batch_size,
                        spec.data.max_length, spec.seed, bos_eos=data["bos_eos"], labels=data["labels"])
    model = build_model(cfg, spec, dm.vocab_size, len(data["labels"] or []))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    run = TrainedRun(run_dir, record, cfg, spec, tokenizer, data["labels"], data["bos_eos"], model.to(device).eval(),
                     checkpoint, device, dm)
    run.module = run.module_for(dm)
    return run


def build_model(cfg, spec, vocab_size: int, n_classes: int) -> torch.nn.Module:
    """The run's model at its size (size.target_params: solved again, deterministically: src/sizing.py)."""
    from .sizing import build

    return build(cfg, spec, vocab_size, n_classes)[0]


def _assets(run_dir: Path, cfg, run_spec) -> tuple[object, dict]:
    """(tokenizer, data.json) of the run; for a run dir from before they were saved, rebuilt from its own data."""
    from tokenizers import Tokenizer

    if (run_dir / TOKENIZER_FILE).is_file() and (run_dir / DATA_FILE).is_file():
        return Tokenizer.from_file(str(run_dir / TOKENIZER_FILE)), json.loads((run_dir / DATA_FILE).read_text())
    log.warning("%s has no %s (it finished before run dirs carried their tokenizer): rebuilding it from the run's "
                "training data", run_dir, TOKENIZER_FILE)
    from .data.build import build_datamodule

    original = run_config(run_dir, finished_record(run_dir))
    dm = build_datamodule(original, run_spec, teacher=teacher_translations)
    return dm.tokenizer, {"task": dm.task, "labels": dm.label_names if dm.task == "classification" else None,
                          "bos_eos": dm.bos_eos, "max_length": dm.max_length}


def teacher_translations(teacher_dir, sources: list[str]) -> list[str]:
    """Knowledge distillation (src/data/distill.py): the teacher run's translations of `sources`, with its own
    tokenizer, checkpoint and configured decoding."""
    run = load_run(teacher_dir)
    targets = [hyps[0] for hyps in run.translate(sources)]
    log.info("distilled %d training targets with the teacher %s", len(targets), teacher_dir)
    return targets
