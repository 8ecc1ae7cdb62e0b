"""`python -m src.eval run_dir=DIR [data=… data.*=…] [decode=… decode.*=…] [eval.name=NAME]`: a finished run
evaluated on the test split of any data set, with any decoding (the template's `eval.py ckpt_path=…`, fairseq's
`fairseq-generate`).

    python -m src.eval run_dir=outputs/…/run data=parallel data.root=/corpus data.tasks.translation.files.test=newstest2014
    python -m src.eval run_dir=outputs/…/run decode=beam decode.beam_size=5          # the run's own test set, beam 5
    python -m src.eval run_dir=outputs/…/run attention.sentences='["I love you."]'   # + attention_sentences.png

The run's config (results.json's `config`) is the base; `data=<name>` replaces its data node by conf/data/<name>.yaml
(the tokenizer settings, max_length and batch sizes stay the run's unless given as data.*), `decode=` likewise.
Only the test split is loaded (the local-file loaders need no train file). Tokenizer, label set and model always
come from the run dir (src/trained.py): data whose task, languages or label set do not match the model is refused.
Writes `<run_dir>/eval/<name>/results.json` (metrics, samples, the test data's identity, the overrides) and its
predictions (`hypotheses.jsonl` for translation, `predictions.jsonl` for classification); never anything else in the
run dir. An existing evaluation of that name is refused (choose `eval.name=`). Bad input: one `error:` line, exit 2.
"""
from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path

from omegaconf import OmegaConf

from .config import ConfigError
from .trained import cli, finished_record, load_run, parse_cli

EVAL_DIR = "eval"


def main(argv: list[str]) -> int:
    options, overrides = parse_cli(argv, "eval")
    run_dir = Path(options.run_dir)
    finished_record(run_dir)  # a clear refusal before anything heavy is imported
    started = time.perf_counter()
    quiet_lightning()
    run = load_run(run_dir, overrides, options.eval.device)
    dm = eval_datamodule(run)
    name = options.eval.name or default_name(run, dm.identity)
    if not re.fullmatch(r"[\w.+=-]+", name) or name.startswith("."):
        raise ConfigError(f"eval.name={name!r}: use letters, digits and . _ + = - only")
    out = run_dir / EVAL_DIR / name
    if (out / "results.json").exists():
        raise ConfigError(f"{out / 'results.json'} already holds this evaluation; choose another eval.name=")
    sentences = list(options.attention.sentences)
    if sentences and run.spec.task.name != "translation":
        raise ConfigError(f"attention.sentences: the run is a {run.spec.task.name} run; it applies to translation")
    record = evaluate(run, dm, out, [o.input_line for o in overrides], name)
    if sentences:
        from .tasks.translation import attention_for_sentences

        record["artifacts"] = {"attention_sentences": attention_for_sentences(
            run.module, sentences, out / "attention_sentences.png")}
    record["wall_seconds"] = time.perf_counter() - started
    from .results import write_results

    write_results(out / "results.json", record)
    for k, v in record["metrics"].items():
        print(f"{k}\t{v:.4f}")
    own = (run.record.get("metrics") or {}).get(record["headline_metric"])
    print(f"eval {name}: {record['headline_metric']} = {record['metrics'].get(record['headline_metric'], float('nan')):.4f}"
          + (f" (the run's own test set: {own:.4f})" if isinstance(own, (int, float)) else "") + f" · {out}")
    return 0


def eval_datamodule(run):
    """The test split of the configured data, encoded with the run's tokenizer, after the compatibility checks."""
    from .config import validate
    from .data.build import build_datamodule

    cfg, task = run.cfg, run.spec.task.name
    trained_on = (run.record.get("config") or {}).get("data") or {}
    if task == "translation":
        for side in ("src_lang", "tgt_lang"):
            was, now = trained_on.get(side), cfg.data.get(side)
            if was and now and was != now:
                raise ConfigError(f"data.{side}={now}: the run translates {trained_on.get('src_lang')}→"
                                  f"{trained_on.get('tgt_lang')}, the eval data is {cfg.data.src_lang}→{cfg.data.tgt_lang}")
    node = cfg.data.tasks[task]
    if task == "classification" and "labels" in node:  # a label-set loader (tsv): the run's label set
        given = node.labels
        if given is not None and [str(x) for x in given] != run.labels:
            raise ConfigError(f"data.tasks.classification.labels={list(given)} is not the run's label set {run.labels}")
        node.labels = list(run.labels)
    spec = validate(cfg)
    dm = build_datamodule(cfg, spec, tokenizer=run.tokenizer, labels=run.labels, splits=("test",))
    if task == "classification":
        feature = dm.raw["test"].features["label"]
        names = getattr(feature, "names", None)
        if names is not None and list(names) != run.labels:
            raise ConfigError(f"the eval data's label set {list(names)} is not the run's {run.labels}")
        top = max(dm.raw["test"]["label"])
        if top >= len(run.labels):
            raise ConfigError(f"the eval data has label {top}; the run has {len(run.labels)} classes")
    return dm


def default_name(run, identity: dict) -> str:
    spec, node = run.spec, run.cfg.data.tasks[run.spec.task.name]
    test = OmegaConf.select(node, "files.test") or (node.get("test") if node.get("test") != "validation" else None)
    parts = [spec.data.name] + ([Path(str(test)).name] if test else [])
    if spec.task.name != "classification":
        d = spec.decode
        parts.append(d.method + (str(d.beam_size) if d.method == "beam" else "")
                     + (f"{d.passes}" if d.method == "mask_predict" else "") + ("+int8" if d.int8 else ""))
    return re.sub(r"[^\w.+=-]", "_", ".".join(parts)) + "-" + identity["hash"][:8]


def evaluate(run, dm, out: Path, overrides: list[str], name: str) -> dict:
    import lightning as L
    import torch

    from .results import SCHEMA_VERSION, git_commit

    spec = run.spec
    module = run.module_for(dm)
    trainer = L.Trainer(accelerator="cuda" if run.device.type == "cuda" else "cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        precision=run.cfg.trainer.get("precision", "32-true"), default_root_dir=str(out))
    metrics = {k: float(v) for k, v in trainer.test(module, datamodule=dm, verbose=False)[0].items()}
    out.mkdir(parents=True, exist_ok=True)
    if spec.task.name == "translation":
        from .tasks.translation import write_hypotheses

        write_hypotheses(module, out / "hypotheses.jsonl")
    elif spec.task.name == "classification":
        write_predictions(module, run.labels, out / "predictions.jsonl")
    d = spec.decode
    return {
        "schema": SCHEMA_VERSION, "kind": "eval", "name": name,
        "run_dir": str(run.path.resolve()), "run_key": run.record.get("run_key"),
        "checkpoint": str(run.checkpoint.relative_to(run.path)),
        "arch": spec.arch.name, "task": spec.task.name, "data": spec.data.name, "size": spec.size.name,
        "seed": spec.seed,
        "decode": {"method": d.method, **({"passes": d.passes, "length_beam": d.length_beam, "dedup": d.dedup}
                                      if spec.arch.family == "nar" else {}),
                   **({"beam_size": d.beam_size, "length_penalty": d.length_penalty} if d.method == "beam" else {})},
        "headline_metric": run.record.get("headline_metric") or spec.task.metric,
        "metrics": metrics, "samples": module.samples, "data_identity": dm.identity, "overrides": overrides,
        "config": {"data": OmegaConf.to_container(run.cfg.data, resolve=True),
                   "decode": OmegaConf.to_container(run.cfg.decode, resolve=True)},
        "device": torch.cuda.get_device_name(run.device) if run.device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "git_commit": git_commit(),
    }


def quiet_lightning() -> None:
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    import datasets

    datasets.disable_progress_bars()


def write_predictions(module, labels: list[str], path: Path) -> None:
    """One JSON line per test example: {"text", "label", "prediction"} (label names)."""
    text, gold = list(module.dm.raw["test"]["text"]), list(module.dm.raw["test"]["label"])
    with open(path, "w", encoding="utf-8") as f:
        for i in sorted(module.predictions):
            row = {"text": text[i], "label": labels[gold[i]], "prediction": labels[module.predictions[i]]}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    cli(main)
