"""Tokenizers (src/data/tokenizer.py): Metaspace BPE/unigram keep word-start markers, word honours vocab_size."""
import pytest

from src.data.tokenizer import train_tokenizer
from src.models.vocab import UNK

TEXTS = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch."] * 20


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_subword_tokens_keep_the_word_start_marker_and_decode_exactly(kind):
    tok = train_tokenizer(kind, TEXTS, vocab_size=60)
    enc = tok.encode("Ein Hund liest.")
    assert enc.tokens[0].startswith("▁") and sum(t.startswith("▁") for t in enc.tokens) == 3  # one per word
    assert tok.decode(enc.ids) == "Ein Hund liest."
    assert tok.get_vocab_size() <= 60


def test_word_tokenizer_honours_vocab_size_and_maps_the_rest_to_unk():
    texts = [f"w{i} " * (100 - i) for i in range(100)]  # w0 most frequent ... w99 least
    tok = train_tokenizer("word", texts, vocab_size=15)
    assert tok.get_vocab_size() == 15  # 5 special tokens + the 10 most frequent words
    assert tok.encode("w0 w9 w10").ids[2] == UNK and tok.encode("w9").ids[0] != UNK


def test_char_tokenizer_keeps_newlines_and_spaces():
    tok = train_tokenizer("char", ["First Citizen:\nBefore we proceed"], vocab_size=256)
    text = "Citizen:\nwe"
    assert tok.encode(text).tokens == list(text) and tok.decode(tok.encode(text).ids) == text
