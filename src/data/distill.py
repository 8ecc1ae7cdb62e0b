"""Sequence-level knowledge distillation (Kim & Rush 2016): the training targets become a trained teacher's
translations of the training sources, the usual data for non-autoregressive students (Gu et al. 2018).

    python -m src.run experiment=multi30k_gpu                                   # the teacher (encdec, beam 5)
    python -m src.run experiment=multi30k_gpu arch=nar decode=mask_predict data.distill_from=<teacher run dir>

The teacher is a finished run directory; `translate(teacher_dir, sources) -> targets` decodes the student's
training sources with it (src/trained.py `teacher_translations`: the run's own tokenizer, checkpoint and configured
decoding; passed in by the caller, so this module imports nothing that rebuilds a run). The outputs are cached in
data.cache_dir keyed by the teacher's run_key and the sources. Validation and test keep their raw references.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from datasets import Dataset, DatasetDict

from ..atomic import write_json_atomic
from ..config import ConfigError

log = logging.getLogger("archbench")


def distill(raw: DatasetDict, teacher_dir: str, cache_dir: str | None, translate=None) -> DatasetDict:
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
        if translate is None:
            raise ConfigError("data.distill_from: no teacher translator was given (build the data module through "
                              "src.trained.build_run_datamodule)")
        targets = translate(teacher_dir, sources)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(cached, targets, indent=None, ensure_ascii=False)
    out = DatasetDict({**raw, "train": Dataset.from_dict({"src": sources, "tgt": targets})})
    out.source = [*(raw.source if isinstance(getattr(raw, "source", None), list) else [raw.source]),
                  f"train targets: sequence-level KD by {teacher_dir} (run_key {record['run_key']})"]
    return out
