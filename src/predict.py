"""`python -m src.predict run_dir=DIR [decode=… decode.*=…]`: a finished classification or LM run on stdin.

Classification: one JSON object a line, `{"label": <name>, "probabilities": {<name>: p, …}}` (softmax over the run's
label set, in its class order). LM: the continuation of each line (the line is the prompt, after <bos> when the run's
sequences have one; `predict.max_new_tokens`, the configured decoding). An empty line gives an empty line. Text
longer than `data.max_length` tokens is truncated as in training (classification: its first tokens; LM prompts:
their last tokens), with one `warning:` line on stderr. Translation runs: python -m src.translate.
"""
from __future__ import annotations

import json
import sys
import torch

from .config import ConfigError
from .models.vocab import BOS
from .trained import cli, finished_record, load_run, parse_cli, stream_lines


def main(argv: list[str], stdin=None, stdout=None) -> int:
    options, overrides = parse_cli(argv, "predict", groups=("decode", "data"))
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    if any(o.key_or_group == "data" for o in overrides):
        raise ConfigError("data=: src.predict reads stdin; score a data set with python -m src.eval")
    task = finished_record(options.run_dir).get("task")
    if task not in ("classification", "lm"):
        raise ConfigError(f"run_dir={options.run_dir} is a {task} run; use python -m src.translate")
    run = load_run(options.run_dir, overrides, options.predict.device)
    size = 1 if stdin.isatty() else max(1, int(options.predict.batch_size))
    warned = False

    def handle(texts, _line_numbers):
        nonlocal warned
        ids, long = run.encode(texts, keep="last" if task == "lm" else "first")
        if long and not warned:
            print(f"warning: an input is longer than data.max_length={run.spec.data.max_length} tokens: "
                  f"{'its last' if task == 'lm' else 'its first'} {run.spec.data.max_length} are used "
                  "(not reported again)", file=sys.stderr)
            warned = True
        return predict(run, ids, int(options.predict.max_new_tokens))

    stream_lines(stdin, stdout, size, handle)
    return 0


@torch.no_grad()
def predict(run, ids: list[list[int]], max_new_tokens: int) -> list[str]:
    from .data.datamodule import pad

    if run.spec.task.name == "classification":
        probs = run.model(pad(ids).to(run.device)).float().softmax(-1).cpu()
        return [json.dumps({"label": run.labels[int(p.argmax())],
                            "probabilities": {name: round(float(x), 6) for name, x in zip(run.labels, p)}},
                           ensure_ascii=False) for p in probs]
    prompts = [[BOS, *x] if run.bos_eos else (x or [BOS]) for x in ids]
    out = []
    for p in prompts:  # one at a time: LM prompts are left-aligned and unpadded (positions count from the start)
        tokens = run.module.generate_tokens(torch.tensor([p], device=run.device), max_new_tokens)
        out.append(run.dm.decode(tokens[0].tolist()))
    return out


if __name__ == "__main__":
    cli(main)
