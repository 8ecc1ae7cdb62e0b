"""Tokenizers from HF `tokenizers`, trained on the training split. Any `tokenizers.Tokenizer` whose first ids are
SPECIAL_TOKENS (see src/models/vocab.py) works with the data module.

bpe      BPE (Sennrich et al. 2016) over a Metaspace pre-tokenizer (SentencePiece-style, Kudo & Richardson 2018):
         spaces become "▁" at the start of the following word, so tokens keep their leading-space marker
         ("▁Ein", "▁Mann") and decoding restores the text exactly. Joint: one vocabulary for source and target.
unigram  the unigram language-model tokenizer (Kudo 2018) over the same Metaspace pre-tokenizer.
word     whitespace-separated words, the `vocab_size` most frequent (the rest are <unk>).
char     one token per character, newlines included (tiny Shakespeare, Chinese).
"""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from ..models.vocab import SPECIAL_TOKENS

KINDS = ("bpe", "unigram", "word", "char")
UNK = "<unk>"


def _metaspace(tok: Tokenizer) -> None:
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")


def train_tokenizer(kind: str, texts: Iterable[str], vocab_size: int = 8000) -> Tokenizer:
    """A `kind` tokenizer with at most `vocab_size` tokens (special tokens included; char: the alphabet)."""
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    elif kind == "char":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK))
        _metaspace(tok)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, limit_alphabet=1000)
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
        _metaspace(tok)
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token=UNK)
    else:
        raise ValueError(f"tokenizer {kind!r} is not one of {', '.join(KINDS)}")
    tok.train_from_iterator(texts, trainer)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    return tok
