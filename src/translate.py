"""`python -m src.translate run_dir=DIR [decode=… decode.*=…] [translate.batch_size=64] [translate.nbest=1]`:
translate stdin to stdout with a finished translation run (fairseq's `fairseq-interactive`).

One sentence a line in, one line out, in order; an empty (or all-whitespace) line gives an empty line without
running the model. With `translate.nbest=N` (decode=beam, N <= decode.beam_size) each output line holds the N best
translations, best first, separated by tabs. A sentence longer than `data.max_length` tokens (the run's; may be
overridden as data.max_length=…) is translated from its first data.max_length tokens, as in training, with one
`warning:` line on stderr for the first such line. Lines are read `translate.batch_size` at a time (1 when stdin is a
terminal), so output follows input as a pipe is read; within them, sentences are batched by length, with
`decode.max_len_a · S + max_len_b` output tokens at most, S the batch's longest source (as in training's test and
src.eval, which give the same translations for the same batch). `attention.sentences='["I love you."]'` first draws
the cross-attention of exactly those sentences into `attention.out` (default attention_sentences.png; with
`< /dev/null` only that). Bad input: one `error:` line, exit 2.
"""
from __future__ import annotations

import sys
from .config import ConfigError
from .trained import cli, finished_record, load_run, parse_cli, stream_lines


def main(argv: list[str], stdin=None, stdout=None) -> int:
    options, overrides = parse_cli(argv, "translate", groups=("decode", "data"))
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    if any(o.key_or_group == "data" for o in overrides):
        raise ConfigError("data=: src.translate reads stdin; score a data set with python -m src.eval")
    record = finished_record(options.run_dir)
    if record.get("task") != "translation":
        raise ConfigError(f"run_dir={options.run_dir} is a {record.get('task')} run; use python -m src.predict")
    run = load_run(options.run_dir, overrides, options.translate.device)
    nbest, d = int(options.translate.nbest), run.spec.decode
    if nbest < 1 or (nbest > 1 and (d.method != "beam" or nbest > d.beam_size)):
        raise ConfigError(f"translate.nbest={nbest} needs decode=beam with decode.beam_size >= {nbest}"
                          if nbest >= 1 else f"translate.nbest={nbest} must be >= 1")
    if options.attention.sentences:  # the heatmap of exactly these sentences (src/tasks/translation.py)
        from .tasks.translation import attention_for_sentences

        drawn = attention_for_sentences(run.module, list(options.attention.sentences), options.attention.out)
        if drawn:
            print(f"attention: {options.attention.out} ({len(drawn)} sentences)", file=sys.stderr)
    size = 1 if stdin.isatty() else max(1, int(options.translate.batch_size))
    warned = False

    def handle(texts, line_numbers):
        nonlocal warned
        _, long = run.encode(texts)
        if long and not warned:
            print(f"warning: line {line_numbers[long[0]]} is longer than data.max_length="
                  f"{run.spec.data.max_length} tokens: translated from its first {run.spec.data.max_length} "
                  "(so is any later one; not reported again)", file=sys.stderr)
            warned = True
        return ["\t".join(hyps) for hyps in run.translate(texts, batch_size=size, nbest=nbest)]

    stream_lines(stdin, stdout, size, handle)
    return 0


if __name__ == "__main__":
    cli(main)
