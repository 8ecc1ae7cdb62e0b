"""Tokenizers from HF `tokenizers`, trained on the training split. Any `tokenizers.Tokenizer` whose first ids are
SPECIAL_TOKENS (see src/models/vocab.py) works with the data module."""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from ..models.vocab import SPECIAL_TOKENS

KINDS = ("word", "char", "bpe")


def train_tokenizer(kind: str, texts: Iterable[str], vocab_size: int = 8000) -> Tokenizer:
    """word: whitespace-separated words; char: one token per character; bpe: byte-level BPE (Sennrich et al. 2016)."""
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS)
    elif kind == "char":
        tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
        tok.decoder = decoders.Fuse()
        trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    else:
        raise ValueError(f"tokenizer {kind!r} is not one of {', '.join(KINDS)}")
    tok.train_from_iterator(texts, trainer)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    return tok
