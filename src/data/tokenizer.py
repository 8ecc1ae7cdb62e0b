"""Tokenizers from HF `tokenizers`, trained on the training split. Any `tokenizers.Tokenizer` whose first ids are
SPECIAL_TOKENS (see src/models/vocab.py) works with the data module.

bpe      BPE (Sennrich et al. 2016) over a Metaspace pre-tokenizer (SentencePiece-style, Kudo & Richardson 2018):
         spaces become "▁" at the start of the following word, so tokens keep their leading-space marker
         ("▁Ein", "▁Mann") and decoding restores the text exactly. Joint: one vocabulary for source and target.
unigram  the unigram language-model tokenizer (Kudo 2018) over the same Metaspace pre-tokenizer.
         Both isolate CJK before subword learning (Chinese and Japanese write no spaces, so Metaspace alone makes a
         whole sentence one pre-token): after Metaspace, every Han ideograph and CJK / full-width punctuation mark is
         its own pre-token (with the "▁" of a preceding space, if any) and each run of kana is one, so the subwords
         never span two ideographs (as BERT's handle_chinese_chars, Devlin et al. 2019, but without inserting spaces:
         decoding still restores the exact text). Hangul is left as words (Korean writes spaces). The alphabet keeps
         up to max(1000, 3/4 of vocab_size) characters (Chinese has thousands), the rest are <unk>.
word     whitespace-separated words, the `vocab_size` most frequent (the rest are <unk>).
char     one token per character, newlines included (tiny Shakespeare, Chinese).
"""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from ..models.vocab import SPECIAL_TOKENS

KINDS = ("bpe", "unigram", "word", "char")
UNK = "<unk>"


# Han: CJK radicals, symbols and punctuation (、。「」), strokes, enclosed, compatibility, unified ideographs (+ ext. A,
# B-H), compatibility ideographs, vertical and full-width forms (，！？); kana: hiragana, katakana, half-width katakana
HAN = ("\u2e80-\u2fdf\u3000-\u303f\u3190-\u31ef\u3200-\u33ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
       "\ufe30-\ufe4f\uff00-\uff64\U00020000-\U0003134f")
KANA = "\u3040-\u30ff\u31f0-\u31ff\uff65-\uff9f"
CJK_PIECE = f"▁?(?:[{HAN}]|[{KANA}]+)"  # one ideograph or one kana run, with the word-start marker before it


def _metaspace(tok: Tokenizer) -> None:
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        pre_tokenizers.Split(Regex(CJK_PIECE), behavior="isolated"),  # no CJK character: the pieces are unchanged
    ])
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
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                      limit_alphabet=max(1000, vocab_size * 3 // 4))
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
        _metaspace(tok)
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token=UNK)
    else:
        raise ValueError(f"tokenizer {kind!r} is not one of {', '.join(KINDS)}")
    tok.train_from_iterator(texts, trainer)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    return tok
