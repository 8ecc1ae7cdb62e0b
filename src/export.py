"""`python -m src.export run_dir=DIR format=ct2 [out=DIR] [quantization=float32|int8|int8_float32]`: a finished run
as a CTranslate2 model (Klein et al., CTranslate2: the OpenNMT inference engine), written through CT2's model-spec
API the way its own converters (converters/fairseq.py, opennmt_py.py) fill a spec.

    arch=encdec  task=translation   ctranslate2.specs.TransformerSpec         -> ctranslate2.Translator
    arch=decoder task=translation   ctranslate2.specs.TransformerDecoderModelSpec -> ctranslate2.Generator
                                     (prefix-LM: the prompt is `source tokens + <bos>`, the continuation the target)
    arch=decoder task=lm            the same decoder spec -> ctranslate2.Generator (prompt `<bos> + text tokens`)
Other archs (rnn_attn, nar, encoder) and classifier heads have no CT2 counterpart: one `error:` line, exit 2.

Our Transformer, box by box, in CT2's terms (src/models/transformer.py, attention.py):
  embedding   E[token]·√d_model + PE: `scale_embeddings=True`; PE is our *interleaved* table
              PE(p, 2i) = sin(p·ω_i), PE(p, 2i+1) = cos(p·ω_i), written explicitly into `position_encodings.encodings`
              (CT2's built-in sinusoids concatenate [sin | cos], a different layout). Rows: `positions` (default
              max(1024, 4·data.max_length)); a longer input or output is an error in CT2, so inputs are truncated to
              data.max_length as in training and decoding lengths stay below the table.
  layers      pre-LN (`pre_norm=True`, final LayerNorm) or post-LN (`pre_norm=False`), LayerNorm ε = 1e-5 (torch's)
  attention   self-attention: our q_proj and kv_proj (K rows, then V rows) fused into CT2's one QKV projection;
              cross-attention: q_proj, then our kv_proj as CT2's fused KV projection; scale 1/√d_head (CT2's)
  FFN         Linear → exact (erf) GELU (`Activation.GELU`, not GELUTanh) → Linear
  output      the LM head (tied to the embedding: CT2 aliases the identical arrays), no bias
Special tokens are our ids 0..4: <pad> <bos> <eos> <unk> <mask>; CT2 vocabulary token i is our token id i
(`tokenizer.id_to_token(i)`), so ids map one to one. The export dir also holds `tokenizer.json` (the run's) and
`archbench.json` + README.md: how to tokenize for it and how to read its output back (see `ct2_translate`).

`export_ct2(run, …)` exports a loaded run; `write_ct2(model, vocab, out, …)` any model of ours (the part that needs no
run dir), and `export_model(model, vocab_size, out, …)` one with no tokenizer over a synthetic vocabulary (the
speed bench's random weights, src/speed/deploy.py).

No Hugging Face export: the nearest classes are not our model (GPT-2: learned positions, unscaled embeddings and the
tanh GELU; BART/Marian: learned or concatenated positions, other norms), so an export would not be exact.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from .config import ConfigError
from .speed.ct2 import QUANTIZATIONS
from .trained import cli, finished_record, load_run, parse_cli

FORMATS = ("ct2",)
SPECIALS = {"pad": "<pad>", "bos": "<bos>", "eos": "<eos>", "unk": "<unk>", "mask": "<mask>"}
NEVER_GENERATED = ["<pad>", "<bos>", "<mask>"]  # as our decoders (src/decoding/autoregressive.py); pass as suppress_sequences
EXPORTABLE = {("encdec", "translation"): "Translator", ("decoder", "translation"): "Generator",
              ("decoder", "lm"): "Generator"}


def main(argv: list[str]) -> int:
    options, _ = parse_cli(argv, "export", groups=())
    record = finished_record(options.run_dir)
    if options.format not in FORMATS:
        raise ConfigError(f"format={options.format} is not offered; choose format={'|'.join(FORMATS)} (no Hugging "
                          "Face export: no HF class is exactly our model, see README)")
    if options.quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization={options.quantization} is not valid; choose one of: {', '.join(QUANTIZATIONS)}")
    key = (record.get("arch"), record.get("task"))
    if key not in EXPORTABLE:
        raise ConfigError(f"arch={key[0]} task={key[1]} cannot be exported to CTranslate2; exportable: "
                          + ", ".join(f"arch={a} task={t}" for a, t in EXPORTABLE))
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        raise ConfigError("format=ct2 needs CTranslate2: pip install -e '.[ct2]'") from None
    out = Path(options.out or Path("exports") / f"{Path(options.run_dir).resolve().name}-ct2-{options.quantization}")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"out={out} exists and is not empty; choose another out=")
    if Path(options.run_dir).resolve() in [out.resolve(), *out.resolve().parents]:
        raise ConfigError(f"out={out} is inside the run dir; a finished run dir is never written (but its eval/)")
    run = load_run(options.run_dir, device="cpu")
    export_ct2(run, out, options.quantization, options.positions)
    print(f"exported {record['arch']}/{record['task']} ({options.quantization}) for ctranslate2."
          f"{EXPORTABLE[key]}: {out}")
    return 0


def export_ct2(run, out: Path, quantization: str = "float32", positions: int | None = None) -> Path:
    """Write the CT2 model of a loaded run (src.trained.load_run) into `out`, with its tokenizer and usage notes."""
    key = (run.spec.arch.name, run.spec.task.name)
    if key not in EXPORTABLE:
        raise ConfigError(f"arch={key[0]} task={key[1]} cannot be exported to CTranslate2")
    positions = int(positions or max(1024, 4 * run.spec.data.max_length))
    info = usage(run, EXPORTABLE[key], quantization, positions)
    return write_ct2(run.model, vocabulary(run.tokenizer), out, quantization, positions, info, run.tokenizer,
                     run.spec.arch.params.get("norm_first", True), run.spec.size.n_heads)


def write_ct2(model, vocab: list[str], out: Path, quantization: str, positions: int, info: dict, tokenizer=None,
              norm_first: bool | None = None, n_heads: int | None = None) -> Path:
    """The CT2 model of any EncoderDecoder / DecoderLM / PrefixLM of ours (no run dir needed): spec built, quantized
    and saved into `out` (written beside it, then renamed), with `archbench.json` = `info` (its `class`, `task`,
    `special_tokens` and `suppress_sequences` are what src/speed/ct2.py reads), a README, and the tokenizer when
    given. norm_first / n_heads default to the model's own."""
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper: the module it wraps
    layer = model.decoder.layers[0]
    norm_first = _norm_first(layer) if norm_first is None else norm_first
    n_heads = layer.self_attn.n_heads if n_heads is None else n_heads
    spec = build_spec(model, vocab, positions, norm_first, n_heads)
    spec.validate()
    spec.optimize(quantization=quantization)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    spec.save(str(tmp))
    if tokenizer is not None:
        tokenizer.save(str(tmp / "tokenizer.json"))
    (tmp / "archbench.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    (tmp / "README.md").write_text(readme(info) if "run_dir" in info else f"# {info['note']}\n")
    if out.exists():
        out.rmdir()  # empty (checked by the caller)
    tmp.rename(out)
    return out


def export_model(model, vocab_size: int, out: Path, quantization: str = "float32", positions: int = 1024) -> Path:
    """A model of ours with no tokenizer (the speed bench's random weights) as a CT2 model over a synthetic
    vocabulary of `vocab_size` tokens: our 5 special tokens, then `t5`, `t6`, …; CT2 token i is still our id i."""
    model = getattr(model, "_orig_mod", model)
    kind = ct2_class(model)
    if kind is None:
        raise ConfigError(f"{type(model).__name__} has no CTranslate2 counterpart")
    from .models.transformer import PrefixLM

    task = "translation" if kind == "Translator" or isinstance(model, PrefixLM) else "lm"
    info = {"format": "ctranslate2", "class": f"ctranslate2.{kind}", "quantization": quantization,
            "task": task, "model": type(model).__name__, "vocabulary": "synthetic: token i is t<i>, our id i",
            "special_tokens": SPECIALS, "suppress_sequences": [[t] for t in NEVER_GENERATED],
            "position_rows": positions, "note": f"archbench: {type(model).__name__} (no tokenizer) as "
                                                f"ctranslate2.{kind}, {quantization}, for timing"}
    vocab = list(SPECIALS.values()) + [f"t{i}" for i in range(len(SPECIALS), vocab_size)]
    return write_ct2(model, vocab, out, quantization, positions, info)


def ct2_class(model) -> str | None:
    """"Translator" (EncoderDecoder), "Generator" (DecoderLM, PrefixLM) or None: no CT2 counterpart."""
    from .models.transformer import DecoderLM, EncoderDecoder

    model = getattr(model, "_orig_mod", model)
    return ("Translator" if isinstance(model, EncoderDecoder) else
            "Generator" if isinstance(model, DecoderLM) else None)


def _norm_first(layer) -> bool:
    res = layer.res1 if hasattr(layer, "res1") else layer.res[0]
    return bool(res.norm_first)


def vocabulary(tokenizer) -> list[str]:
    tokens = [tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size())]
    assert tokens[:5] == list(SPECIALS.values()), tokens[:5]
    return tokens


def position_table(rows: int, d_model: int) -> np.ndarray:
    """Our sinusoids (src/models/transformer.py Embedding), interleaved: column 2i sin, column 2i+1 cos."""
    import torch

    inv_freq = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    angles = torch.arange(rows).float()[:, None] * inv_freq
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2).numpy()


def build_spec(model, vocab: list[str], positions: int, norm_first: bool, n_heads: int):
    from ctranslate2.specs import common_spec, transformer_spec

    from .models.transformer import DecoderLM, EncoderDecoder

    n_layers = len(model.decoder.layers)
    gelu = common_spec.Activation.GELU
    if isinstance(model, EncoderDecoder):
        spec = transformer_spec.TransformerSpec.from_config((len(model.encoder.layers), n_layers), n_heads,
                                                            pre_norm=norm_first, activation=gelu)
        _stack(spec.encoder, model.encoder, positions, cross=False)
        _stack(spec.decoder, model.decoder, positions, cross=True)
        _linear(spec.decoder.projection, model.lm_head)
        spec.register_source_vocabulary(vocab)
        spec.register_target_vocabulary(vocab)
        spec.config.decoder_start_token = SPECIALS["bos"]
        spec.config.add_source_bos = spec.config.add_source_eos = False
    elif isinstance(model, DecoderLM):  # PrefixLM too: the same decoder; the prompt says what to continue
        spec = transformer_spec.TransformerDecoderModelSpec.from_config(n_layers, n_heads, pre_norm=norm_first,
                                                                        activation=gelu)
        _stack(spec.decoder, model.decoder, positions, cross=False)
        _linear(spec.decoder.projection, model.lm_head)
        spec.register_vocabulary(vocab)
    else:
        raise ConfigError(f"{type(model).__name__} has no CTranslate2 counterpart")
    spec.config.bos_token, spec.config.eos_token, spec.config.unk_token = (SPECIALS[k] for k in ("bos", "eos", "unk"))
    spec.config.layer_norm_epsilon = 1e-5  # torch.nn.LayerNorm's (CT2's default is 1e-6)
    return spec


def _np(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _linear(spec, linear, weight=None, bias=None) -> None:
    spec.weight = _np(linear.weight) if weight is None else weight
    b = linear.bias if bias is None else bias
    if b is not None:
        spec.bias = _np(b) if not isinstance(b, np.ndarray) else b


def _norm(spec, norm) -> None:
    spec.gamma, spec.beta = _np(norm.weight), _np(norm.bias)


def _stack(spec, stack, positions: int, cross: bool) -> None:
    """One of our Stacks (embedding + layers + final norm) into a CT2 encoder / decoder spec."""
    embeddings = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
    embeddings.weight = _np(stack.embed.tok.weight)
    spec.scale_embeddings = True  # ·√d_model
    spec.position_encodings.encodings = position_table(positions, stack.embed.d_model)
    if hasattr(spec, "layer_norm"):  # pre-LN: the stack's final norm
        _norm(spec.layer_norm, stack.norm)
    for layer_spec, layer in zip(spec.layer, stack.layers):
        norms = [layer.res1.norm, layer.res2.norm] if hasattr(layer, "res1") else [r.norm for r in layer.res]
        attn = layer.self_attn
        _linear(layer_spec.self_attention.linear[0], attn.q_proj,
                weight=np.concatenate([_np(attn.q_proj.weight), _np(attn.kv_proj.weight)]),
                bias=np.concatenate([_np(attn.q_proj.bias), _np(attn.kv_proj.bias)]))
        _linear(layer_spec.self_attention.linear[1], attn.out_proj)
        _norm(layer_spec.self_attention.layer_norm, norms[0])
        if cross:
            ca = layer.cross_attn
            _linear(layer_spec.attention.linear[0], ca.q_proj)
            _linear(layer_spec.attention.linear[1], ca.kv_proj)
            _linear(layer_spec.attention.linear[2], ca.out_proj)
            _norm(layer_spec.attention.layer_norm, norms[1])
        _norm(layer_spec.ffn.layer_norm, norms[-1])
        _linear(layer_spec.ffn.linear_0, layer.ffn[0])
        _linear(layer_spec.ffn.linear_1, layer.ffn[3])


def usage(run, kind: str, quantization: str, positions: int) -> dict:
    return {
        "format": "ctranslate2", "class": f"ctranslate2.{kind}", "quantization": quantization,
        "arch": run.spec.arch.name, "task": run.spec.task.name, "run_key": run.record.get("run_key"),
        "run_dir": str(run.path.resolve()), "checkpoint": str(run.checkpoint.relative_to(run.path)),
        "tokenizer": "tokenizer.json",
        "vocabulary": "CT2 vocabulary token i is our token id i: tokenizer.id_to_token(i) / token_to_id(token)",
        "special_tokens": SPECIALS, "suppress_sequences": [[t] for t in NEVER_GENERATED],
        "max_length": run.spec.data.max_length, "position_rows": positions,
        "input": {"Translator": "source tokens: tokenizer.encode(text).tokens[:max_length] (no <bos>/<eos>)",
                  "Generator": ("prompt: source tokens[:max_length] + ['<bos>']; the continuation until <eos> is the "
                                "translation" if run.spec.task.name == "translation" else
                                "prompt: ['<bos>'] + text tokens (blocks of running text: no <bos>)")}[kind],
        "output": "token strings -> ids with tokenizer.token_to_id -> tokenizer.decode(ids, skip_special_tokens=True)",
        "decode": {"max_len_a": run.spec.decode.max_len_a, "max_len_b": run.spec.decode.max_len_b},
    }


def readme(info: dict) -> str:
    call = ("translator = ctranslate2.Translator(model_dir, device='cpu')\n"
            "results = translator.translate_batch(batch, beam_size=1, max_decoding_length=max_len,\n"
            "                                     suppress_sequences=info['suppress_sequences'])\n"
            "hyps = [r.hypotheses[0] for r in results]"
            if info["class"].endswith("Translator") else
            "generator = ctranslate2.Generator(model_dir, device='cpu')\n"
            "prompts = [src + ['<bos>'] for src in batch]\n"
            "results = generator.generate_batch(prompts, max_length=max_len, include_prompt_in_result=False,\n"
            "                                   end_token='<eos>', suppress_sequences=info['suppress_sequences'])\n"
            "hyps = [r.sequences[0] for r in results]")
    return f"""# archbench export: {info['arch']}/{info['task']} as {info['class']} ({info['quantization']})

From run `{info['run_dir']}` (run_key {info['run_key']}, {info['checkpoint']}). `archbench.json` says how to feed
it; `tokenizer.json` is the run's tokenizer (HF `tokenizers`). CT2 token i is our token id i.

```python
import json, ctranslate2
from tokenizers import Tokenizer
model_dir = "."
info = json.load(open(f"{{model_dir}}/archbench.json"))
tok = Tokenizer.from_file(f"{{model_dir}}/tokenizer.json")
batch = [tok.encode(s).tokens[: info["max_length"]] for s in ["a sentence", "another one"]]
max_len = int(info["decode"]["max_len_a"] * max(map(len, batch)) + info["decode"]["max_len_b"])
{call}
texts = [tok.decode([tok.token_to_id(t) for t in h], skip_special_tokens=True) for h in hyps]
```
"""


def ct2_translate(model_dir: Path, texts: list[str], tokenizer=None, beam_size: int = 1, batch_size: int = 64,
                  max_len: tuple[float, int] | None = None, **options) -> list[list[int]]:
    """Our token ids of the exported model's translations of `texts` (Translator or prefix-LM Generator),
    decoded the way our `generate` does: batches of `batch_size` in the given order, max length a·S + b with S the
    batch's longest source, <pad>/<bos>/<mask> never generated. Ids exclude <eos>."""
    import ctranslate2
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    info = json.loads((model_dir / "archbench.json").read_text())
    tok = tokenizer or Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    a, b = max_len or (info["decode"]["max_len_a"], info["decode"]["max_len_b"])
    sources = [tok.encode(t).tokens[: info["max_length"]] for t in texts]
    suppress = info["suppress_sequences"]
    translator = info["class"].endswith("Translator")
    model = (ctranslate2.Translator if translator else ctranslate2.Generator)(str(model_dir), device="cpu",
                                                                              **options)
    out = []
    for start in range(0, len(sources), batch_size):
        batch = sources[start : start + batch_size]
        n = int(a * max(1, max(map(len, batch))) + b)
        if translator:
            res = model.translate_batch(batch, beam_size=beam_size, max_decoding_length=n,
                                        suppress_sequences=suppress)
            hyps = [r.hypotheses[0] for r in res]
        else:
            res = model.generate_batch([s + [SPECIALS["bos"]] for s in batch], beam_size=beam_size, max_length=n,
                                       include_prompt_in_result=False, end_token=SPECIALS["eos"],
                                       suppress_sequences=suppress)
            hyps = [r.sequences[0] for r in res]
        out += [[tok.token_to_id(t) for t in h] for h in hyps]
    return out


if __name__ == "__main__":
    cli(main)
