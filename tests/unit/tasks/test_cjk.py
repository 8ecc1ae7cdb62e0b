"""Chinese targets (issue 20): BLEU that counts Chinese, CJK heatmap labels that render, attention.sentences."""
import logging
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from src.config import ConfigError, DecodeConfig, OptimConfig, validate
from src.tasks.scoring import BLEU_TOKENIZERS, available, bleu_tokenizer, translation_metrics
from src.tasks.translation import heatmap_rows

from tests.conftest import compose, run_cli, run_main
from tests.unit.data.test_files import write

REFS = ["我爱你。", "他不情愿地启动引擎开车走了。", "颜色无所谓，给我一支笔就行了。"]


def translation_module(*overrides):
    """The task module `python -m src.run <overrides>` builds (its scoring settings come from the config)."""
    cfg = compose(*overrides)
    validate(cfg)
    return instantiate(cfg.task.module)(model=torch.nn.Linear(1, 1), datamodule=None, optim=OptimConfig(),
                                        decode=DecodeConfig())


def test_bleu_of_chinese_counts_characters_with_the_zh_tokenizer():
    module = translation_module("data=tatoeba_en_zh")  # data.tgt_lang=zh
    assert module.bleu_tokenize == "zh" and "tok:zh" in module.metrics_signature["bleu"]
    perfect = translation_metrics(REFS, REFS, tokenize=module.bleu_tokenize)
    one_off = translation_metrics(["我爱他。", *REFS[1:]], REFS, tokenize=module.bleu_tokenize)
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["exact_match"] == 100.0
    assert 50.0 < one_off["bleu"] < 100.0
    # sacreBLEU's default 13a sees each Chinese sentence as one word: one wrong character costs that whole sentence
    assert translation_metrics(["我爱他。", *REFS[1:]], REFS, tokenize="13a")["bleu"] < one_off["bleu"]


@pytest.mark.parametrize("lang, expected", [("zh", "zh"), ("zh-CN", "zh"), ("cmn_Hans", "zh"), ("zho", "zh"),
                                             ("ja", "ja-mecab"), ("ko", "ko-mecab"), ("de", "13a"), (None, "13a")])
def test_bleu_tokenizer_follows_the_target_language_as_sacrebleus_cli(lang, expected):
    if not available(expected):
        expected = "char"  # MeCab extras not installed: characters
    assert bleu_tokenizer(lang) == expected
    assert bleu_tokenizer(lang, "intl") == "intl"


def test_task_bleu_tokenize_overrides_and_is_validated():
    module = translation_module("data=tatoeba_en_zh", "task.bleu_tokenize=char")
    assert module.bleu_tokenize == "char" and "tok:char" in module.metrics_signature["bleu"]
    with pytest.raises(ConfigError, match="choose one of: .*zh"):
        validate(compose("task.bleu_tokenize=bogus"))
    bad = run_cli("task.bleu_tokenize=bogus", timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "bogus" in bad.stderr and all(t in bad.stderr for t in ("13a", "zh", "char"))


def test_attention_sentences_are_validated():
    with pytest.raises(ConfigError, match="attention.sentences"):
        validate(compose('attention.sentences=["I love you.", " "]'))
    with pytest.raises(ConfigError, match="task=translation only"):
        validate(compose("arch=encoder", "task=classification", 'attention.sentences=["I love you."]'))


def test_heatmap_sentences_include_short_ones():
    lengths = [3, 4, 30, 12, 8, 40, 9, 15, 6, 3, 20]  # the old rule skipped everything below 5 tokens
    rows = heatmap_rows(lengths, 3, seed=0, max_len=32)
    assert len(rows) == 3 and lengths[rows[0]] < 5 and lengths[rows[-1]] >= 12  # shortest and longest thirds
    assert all(lengths[r] <= 32 for r in rows) and rows == heatmap_rows(lengths, 3, seed=0, max_len=32)


def _draw(tmp_path):
    from src.plots import attention_heatmaps

    with warnings.catch_warnings(record=True) as caught, plt.rc_context({"font.family": ["DejaVu Sans"]}):
        warnings.simplefilter("always")
        path = attention_heatmaps([(["▁I", "▁love", "▁you", "."], ["▁我", "爱", "你", "。"], np.eye(4))],
                                  tmp_path / "a.png", titles=["I love you. → 我爱你。"])
    return path, [str(w.message) for w in caught if "missing from" in str(w.message)]


def test_cjk_labels_render_without_missing_glyphs(tmp_path):
    from src.fonts import cjk_font

    if cjk_font() is None:
        pytest.skip("no CJK font installed (apt-get install fonts-noto-cjk; CI installs it)")
    path, missing = _draw(tmp_path)
    assert path.exists() and missing == []


def test_without_a_cjk_font_one_warning_not_one_per_glyph(tmp_path, monkeypatch, caplog):
    import src.fonts

    monkeypatch.setattr(src.fonts, "_cjk_font", [None])  # as on a machine with no CJK font installed
    with caplog.at_level(logging.WARNING, logger="archbench"):
        path, missing = _draw(tmp_path)
    lines = [r.message for r in caplog.records if "CJK font" in r.message]
    assert path.exists() and missing == [] and len(lines) == 1 and "fonts-noto-cjk" in lines[0]


def test_attention_sentences_draws_exactly_the_given_sentence(tmp_path):
    """A tiny en->zh corpus, debug=fast, CSV logger: attention_sentences.png is drawn for "I love you." and the
    record names it; BLEU is scored with sacreBLEU's zh tokenizer (data.tgt_lang=zh)."""
    subj = {"I": "我", "You": "你", "He": "他"}
    verb = {"love": "爱", "like": "喜欢", "see": "看见"}
    obj = {"you": "你", "him": "他", "cats": "猫", "tea": "茶"}
    en, zh = zip(*[(f"{s} {v} {o}.", f"{subj[s]}{verb[v]}{obj[o]}。") for s in subj for v in verb for o in obj])
    for stem in ("train", "valid", "test"):
        write(tmp_path / "corpus" / f"{stem}.en", list(en))
        write(tmp_path / "corpus" / f"{stem}.zh", list(zh))
    r = run_main(tmp_path / "run", "data=parallel", f"data.root={tmp_path / 'corpus'}", "data.tgt_lang=zh",
                 "data.vocab_size=120", "debug=fast", "logger=csv", 'attention.sentences=["I love you."]')
    drawn = r["artifacts"]["attention_sentences"]
    assert drawn["file"] == "attention_sentences.png" and (tmp_path / "run" / "attention_sentences.png").is_file()
    assert [d["source"] for d in drawn["sentences"]] == ["I love you."]
    assert "".join(drawn["sentences"][0]["source_tokens"]).replace("▁", " ").strip() == "I love you."
    assert "tok:zh" in r["metrics_signature"]["bleu"] and r["config"]["attention"]["sentences"] == ["I love you."]
    assert (tmp_path / "run" / "attention.png").is_file()


def test_bleu_by_length_counts_chinese_with_the_runs_tokenizer():
    """The report's BLEU-by-length uses the tokenizer the run's BLEU was counted with (13a gives 0 for Chinese)."""
    from src.report.aggregate import bleu_by_length
    from src.tasks.scoring import metric_signatures, tokenize_of

    rows = [{"source": "I love you .", "reference": "我爱你。", "hypothesis": "我爱你。"}]
    record = {"metrics_signature": metric_signatures("zh")}
    assert tokenize_of(record) == "zh" and tokenize_of({}) == "13a"
    assert bleu_by_length(rows, [(0, None)], tokenize_of(record))[""]["0+"]["bleu"] == pytest.approx(100)
    assert bleu_by_length(rows, [(0, None)])[""]["0+"]["bleu"] < 100
