"""HF transformers peers of the same shape, built from config (random weights, no download), for side-by-side speed:
BartForConditionalGeneration for encdec, GPT2LMHeadModel for decoder, BertForSequenceClassification for encoder.

Shapes match ours (layers, d_model, heads, FFN width, vocab, GELU, dropout); parameter counts differ only by what
the architectures themselves differ in — learned position embeddings (ours are sinusoidal), BART's embedding
LayerNorm, BERT's pooler and token-type embeddings — so `PARAM_TOLERANCE` (relative) bounds the gap for the
benchmark's shapes. Needs the optional extra `pip install -e ".[compare]"`.
"""
from __future__ import annotations

import torch

from ..models.vocab import BOS, EOS, PAD

PEER_OF = {"encdec": "BART", "decoder": "GPT-2", "encoder": "BERT"}
PARAM_TOLERANCE = 0.05  # |hf - ours| / ours, for the shapes benchmarked (vocab ≫ positions)


def available() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def build_peer(arch: str, vocab: int, d_model: int, n_heads: int, n_layers: int, d_ff: int, dropout: float = 0.0,
               max_positions: int = 512, n_classes: int = 2) -> torch.nn.Module | None:
    """The HF model of our shape for `arch`, or None where there is no peer (nar, rnn_attn)."""
    import transformers as hf

    if arch == "encdec":
        cfg = hf.BartConfig(vocab_size=vocab, d_model=d_model, encoder_layers=n_layers, decoder_layers=n_layers,
                            encoder_attention_heads=n_heads, decoder_attention_heads=n_heads, encoder_ffn_dim=d_ff,
                            decoder_ffn_dim=d_ff, max_position_embeddings=max_positions, dropout=dropout,
                            attention_dropout=0.0, activation_dropout=0.0, activation_function="gelu",
                            pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, decoder_start_token_id=BOS,
                            forced_bos_token_id=None, forced_eos_token_id=None, tie_word_embeddings=True)
        return hf.BartForConditionalGeneration(cfg)
    if arch == "decoder":
        cfg = hf.GPT2Config(vocab_size=vocab, n_embd=d_model, n_layer=n_layers, n_head=n_heads, n_inner=d_ff,
                            n_positions=max_positions, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=0.0,
                            activation_function="gelu", bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
        return hf.GPT2LMHeadModel(cfg)
    if arch == "encoder":
        cfg = hf.BertConfig(vocab_size=vocab, hidden_size=d_model, num_hidden_layers=n_layers,
                            num_attention_heads=n_heads, intermediate_size=d_ff, max_position_embeddings=max_positions,
                            hidden_dropout_prob=dropout, attention_probs_dropout_prob=0.0, num_labels=n_classes,
                            pad_token_id=PAD, hidden_act="gelu")
        return hf.BertForSequenceClassification(cfg)
    return None


def peer_generate(model, src: torch.Tensor, method: str, new_tokens: int, fixed: bool,
                  beam_size: int = 4) -> torch.Tensor:
    """HF generate() with our settings: greedy / beam (k, length penalty 1) / ancestral sampling (no top-k/p);
    fixed=True forces exactly `new_tokens` new tokens (min = max new tokens), KV cache on."""
    kw = dict(max_new_tokens=new_tokens, use_cache=True, pad_token_id=PAD, eos_token_id=EOS)
    if fixed:
        kw["min_new_tokens"] = new_tokens
    if method == "beam":
        kw.update(num_beams=beam_size, length_penalty=1.0, do_sample=False, early_stopping=False)
    elif method == "sample":
        kw.update(do_sample=True, top_k=0, top_p=1.0, temperature=1.0, num_beams=1)
    else:
        kw.update(do_sample=False, num_beams=1)
    mask = src != PAD
    return model.generate(input_ids=src, attention_mask=mask.long(), **kw)


def peer_forward_loss(model, arch: str, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Teacher-forced cross-entropy of one batch, the same work as our training step."""
    if arch == "encdec":
        return model(input_ids=src, attention_mask=(src != PAD).long(), labels=tgt).loss
    if arch == "decoder":
        tokens = torch.cat([src, tgt], 1)
        return model(input_ids=tokens, labels=tokens).loss
    return model(input_ids=src, attention_mask=(src != PAD).long(), labels=tgt[:, 0] % 2).loss
