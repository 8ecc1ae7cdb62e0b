"""Tokenizers (src/data/tokenizer.py): Metaspace BPE/unigram keep word-start markers, word honours vocab_size."""
import re

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


# CJK (issue 20): Chinese and Japanese write no spaces; Metaspace alone makes a whole sentence one pre-token.
CJK_TEXTS = ["我爱你。", "我们需要有才华的人。", "他不情愿地启动引擎开车走了。", "颜色无所谓，给我一支笔就行了！",
             "私はあなたを愛しています。", "東京へ行きたいです！", "猫が好きですか？",
             "我用iPhone拍照, I love 你们 2 次.", "Tom说：「我爱你」 OK?", "中 文 with spaces", "两个  空格 "]
HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff]")


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_cjk_round_trips_exactly_and_no_subword_spans_two_ideographs(kind):
    tok = train_tokenizer(kind, CJK_TEXTS * 30 + TEXTS, vocab_size=300)
    for text in CJK_TEXTS + ["Ein Hund liest.", "爱你 Ein Mann。"]:
        enc = tok.encode(text)
        assert tok.decode(enc.ids) == text, enc.tokens  # no space inserted between characters, none lost
        assert all(len(HAN.findall(t)) <= 1 for t in enc.tokens), enc.tokens  # each ideograph isolated
    assert len(tok.encode("我们需要有才华的人。").ids) >= 10  # not one whole-sentence piece


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_a_corpus_with_more_than_1000_distinct_characters_keeps_them_all(kind):
    """Chinese has thousands of characters: the alphabet is not capped at 1,000 (the rest would decode to nothing)."""
    chars = [chr(0x4E00 + i) for i in range(1500)]
    texts = ["".join(chars[i : i + 10]) + "。" for i in range(0, 1500, 10)] * 2
    tok = train_tokenizer(kind, texts, vocab_size=4000)
    assert all(tok.decode(tok.encode(t).ids) == t for t in texts)
