"""A CJK font for figure labels: matplotlib's default DejaVu Sans has no Chinese, Japanese or Korean glyphs and
draws empty boxes. use_cjk_fallback() finds an installed CJK font (Noto Sans CJK from Debian's `fonts-noto-cjk`,
Source Han Sans, WenQuanYi, Droid Sans Fallback, …; also one installed after matplotlib's font cache was built) and
puts it after DejaVu Sans in `font.family`, matplotlib's per-glyph fallback list (≥ 3.6). With none installed, a
figure whose labels need one logs a single warning instead of one "Glyph … missing" warning per character.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import matplotlib

log = logging.getLogger("archbench")
# Han (CJK unified ideographs + extensions, compatibility), kana, Hangul, CJK punctuation, full-width forms
CJK = re.compile("[\u2e80-\u2fdf\u3000-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f"
                 "\uac00-\ud7ff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f\u1100-\u11ff]")
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Sans CJK KR", "Source Han Sans SC",
             "Source Han Sans CN", "Source Han Sans", "Noto Serif CJK SC", "Noto Serif CJK JP", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "Droid Sans Fallback", "AR PL UMing CN", "AR PL UKai CN")
FONT_INSTALL = "apt-get install fonts-noto-cjk"
_cjk_font: list = []  # [family or None] once looked up


def cjk_font() -> str | None:
    """The family name of an installed CJK font (registered with matplotlib), or None."""
    if _cjk_font:
        return _cjk_font[0]
    from matplotlib import font_manager as fm

    def known():
        names = {f.name for f in fm.fontManager.ttflist}
        return next((n for n in CJK_FONTS if n in names), None)

    found = known()
    if found is None:  # installed after matplotlib built its font cache: register the files directly
        for path in fm.findSystemFonts():
            if re.search(r"cjk|sourcehan|wqy|wenquanyi|droidsansfallback|uming|ukai", Path(path).name, re.I):
                try:
                    fm.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        found = known()
    _cjk_font.append(found)
    return found


def use_cjk_fallback(labels=()) -> bool:
    """If any label has a CJK character, put a CJK font in matplotlib's fallback list (True) or, with none
    installed, log one warning (False). Labels without CJK characters: nothing changes (True)."""
    if not any(CJK.search(str(t)) for t in labels):
        return True
    font = cjk_font()
    if font is None:
        log.warning("no CJK font installed: Chinese/Japanese/Korean labels are drawn as empty boxes; "
                    f"install one ({FONT_INSTALL}) and re-draw")
        return False
    families = list(matplotlib.rcParams["font.family"])
    if families == ["sans-serif"]:
        families = [matplotlib.rcParams["font.sans-serif"][0]]
    if font not in families:
        matplotlib.rcParams["font.family"] = [*families, font]
    return True
