"""Sequence-level knowledge distillation (Kim & Rush 2016): the training targets become a trained teacher's
translations of the training sources, the usual data for non-autoregressive students (Gu et al. 2018).

    python -m src.run experiment=multi30k_gpu                                   # the teacher (encdec, beam 5)
    python -m src.run experiment=multi30k_gpu arch=nar decode=mask_predict data.distill_from=<teacher run dir>

The teacher is rebuilt from its finished run directory (results.json's config + checkpoints/last.ckpt), decodes the
student's training sources with its own configured decoding, and the outputs are cached in data.cache_dir keyed by
the teacher's run_key and the sources. Validation and test keep their raw references.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict

from ..config import ConfigError

log = logging.getLogger("archbench")


def distill(raw: DatasetDict, teacher_dir: str, cache_dir: str | None) -> DatasetDict:
    teacher_dir = Path(teacher_dir)
    try:
        record = json.loads((teacher_dir / "results.json").read_text())
    except (OSError, ValueError):
        raise ConfigError(f"data.distill_from={teacher_dir} holds no readable results.json (a finished run)") from None
    if record.get("task") != "translation" or record.get("arch") == "nar":
        raise ConfigError(f"data.distill_from={teacher_dir} is a {record.get('arch')}/{record.get('task')} run; "
                          "the teacher must be an autoregressive translation run (encdec, decoder, rnn_attn)")
    sources = list(raw["train"]["src"])
    key = hashlib.sha256(json.dumps([record["run_key"], sources]).encode()).hexdigest()[:20]
    cached = Path(os.path.expanduser(cache_dir)) / f"distilled-{key}.json" if cache_dir else None
    if cached and cached.is_file():
        targets = json.loads(cached.read_text())
        log.info("distilled targets: cached %s", cached)
    else:
        targets = translate(record, teacher_dir / "checkpoints" / "last.ckpt", sources)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(targets, ensure_ascii=False))
            tmp.replace(cached)
    out = DatasetDict({**raw, "train": Dataset.from_dict({"src": sources, "tgt": targets})})
    out.source = [*(raw.source if isinstance(getattr(raw, "source", None), list) else [raw.source]),
                  f"train targets: sequence-level KD by {teacher_dir} (run_key {record['run_key']})"]
    return out


@torch.no_grad()
def translate(record: dict, checkpoint: Path, sources: list[str]) -> list[str]:
    """The teacher run's translations of `sources`, with its own tokenizer, model and decoding."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from ..config import RunConfig, validate
    from .build import build_datamodule

    if not checkpoint.is_file():
        raise ConfigError(f"data.distill_from: the teacher checkpoint {checkpoint} does not exist")
    cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), record["config"])
    spec = validate(cfg)
    dm = build_datamodule(cfg, spec)
    size = {k: v for k, v in OmegaConf.to_container(cfg.size).items() if k != "name"}
    model = instantiate(cfg.arch.models["translation"])(vocab_size=dm.vocab_size, n_classes=0, **size,
                                                        **spec.arch.params)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    module = instantiate(cfg.task.module)(model=model, datamodule=dm, optim=spec.optim, decode=spec.decode)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module.to(device).eval()
    ids = [e.ids[: spec.data.max_length] for e in dm.tokenizer.encode_batch(sources)]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    targets: list[str] = [""] * len(ids)
    from .datamodule import pad

    for start in range(0, len(order), spec.data.eval_batch_size):
        rows = order[start : start + spec.data.eval_batch_size]
        out = module.translate(pad([ids[i] for i in rows]).to(device))
        for i, hyp in zip(rows, out.tolist()):
            targets[i] = dm.decode(hyp)
    log.info("distilled %d training targets with the teacher %s", len(targets), checkpoint.parent.parent)
    return targets
