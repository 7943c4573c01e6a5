"""Fonts for token labels in many scripts.

Token labels mix Latin, Cyrillic, Arabic, Chinese, Japanese and the symbols lensbox
uses for invisible characters (``␣`` space, ``↵`` newline, ``⇥`` tab, ``↳``). No single
font covers all of them, so plots use a *fallback list* of families (matplotlib >= 3.6
draws each character with the first family in the list that has it).

`font_families` finds which families of `PREFERRED_FAMILIES` this machine
has, registering system fonts that matplotlib's font cache does not know yet (the
cache is built once; fonts installed later, e.g. by ``scripts/install_fonts.sh``,
are otherwise invisible to it). Nothing here changes matplotlib's global settings
unless `use_fonts` is called; lensbox's plot functions apply the list only
while they build a figure.
"""

import fnmatch
import os
import warnings
from typing import Any

#: Families tried in order for every character of a label. DejaVu Sans comes first: it
#: covers Latin, Greek, Cyrillic, Arabic, Hebrew and the label symbols. The Noto CJK
#: faces cover Chinese, Japanese and Korean; the rest cover further scripts or are
#: lighter CJK alternatives found on other systems.
PREFERRED_FAMILIES = (
    "DejaVu Sans",
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Source Han Sans JP",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "IPAGothic",
    "Noto Sans",
    "Noto Sans Arabic",
    "Noto Sans Hebrew",
    "Noto Sans Devanagari",
    "Noto Sans Bengali",
    "Noto Sans Tamil",
    "Noto Sans Thai",
    "Noto Sans Georgian",
    "Noto Sans Armenian",
    "Noto Sans Ethiopic",
    "Noto Sans Symbols",
    "Noto Sans Symbols2",
    "Noto Sans Math",
    "Arial Unicode MS",
    "Microsoft YaHei",
    "MS Gothic",
    "Hiragino Sans",
    "PingFang SC",
)

#: Families that cover Chinese and Japanese; plots warn when none is present.
CJK_FAMILIES = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Source Han Sans JP",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "Arial Unicode MS",
    "Microsoft YaHei",
    "MS Gothic",
    "Hiragino Sans",
    "PingFang SC",
)

# File-name patterns of the fonts worth registering when matplotlib's cache misses them.
# Only regular weights: the plots use no bold or italic text for labels.
_FILE_PATTERNS = (
    "dejavusans.ttf",
    "notosanscjk-regular.ttc",
    "notosanscjk*-regular.otf",
    "sourcehansans*-regular.ot?",
    "wqy-microhei.tt?",
    "wqy-zenhei.tt?",
    "droidsansfallback*.ttf",
    "ipag.ttf",
    "notosans-regular.ttf",
    "notosansarabic-regular.ttf",
    "notosanshebrew-regular.ttf",
    "notosansdevanagari-regular.ttf",
    "notosansbengali-regular.ttf",
    "notosanstamil-regular.ttf",
    "notosansthai-regular.ttf",
    "notosansgeorgian-regular.ttf",
    "notosansarmenian-regular.ttf",
    "notosansethiopic-regular.ttf",
    "notosanssymbols-regular.ttf",
    "notosanssymbols2-regular.ttf",
    "notosansmath-regular.ttf",
)

INSTALL_HINT = (
    "run `bash scripts/install_fonts.sh` from the lensbox repository (Debian/Ubuntu: "
    "apt-get install fonts-noto-cjk fonts-noto-core fonts-dejavu-core), or install any CJK font "
    "(e.g. Noto Sans CJK) with your system's package manager"
)


class FontWarning(UserWarning):
    """A script in the labels may render as empty boxes because no font covering it was found."""


_state: dict[str, Any] = {"families": None, "warned": False}


def _known_families() -> set:
    from matplotlib import font_manager

    return {entry.name for entry in font_manager.fontManager.ttflist}


def _register_system_fonts() -> int:
    """Add system font files matching `_FILE_PATTERNS` that matplotlib has not registered."""
    from matplotlib import font_manager

    manager = font_manager.fontManager
    known_paths = {os.path.realpath(entry.fname) for entry in manager.ttflist}
    added = 0
    for path in font_manager.findSystemFonts(fontext="ttf"):
        base = os.path.basename(path).lower()
        if not any(fnmatch.fnmatch(base, pattern) for pattern in _FILE_PATTERNS):
            continue
        if os.path.realpath(path) in known_paths:
            continue
        try:
            manager.addfont(path)
        except (OSError, RuntimeError, ValueError):  # unreadable or unsupported file: skip it
            continue
        added += 1
    return added


def font_families(*, refresh: bool = False, warn: bool = True) -> list[str]:
    """The fallback list of font families available here, in preference order.

    Registers matching system fonts that matplotlib's font cache has not seen (fonts
    installed after matplotlib first ran). Warns once with `FontWarning` when no
    CJK font is available: Chinese and Japanese labels would then render as boxes.

    Args:
        refresh: look at the system fonts again instead of using the list found before.
        warn: emit the missing-CJK warning (once per process).
    """
    if _state["families"] is None or refresh:
        known = _known_families()
        if refresh or not any(f in known for f in CJK_FAMILIES) or "DejaVu Sans" not in known:
            if _register_system_fonts():
                known = _known_families()
        families = [f for f in PREFERRED_FAMILIES if f in known]
        if not families:  # matplotlib always ships DejaVu Sans; keep a valid generic name regardless
            families = ["sans-serif"]
        _state["families"] = families
    families = list(_state["families"])
    if warn and not has_cjk_font() and not _state["warned"]:
        _state["warned"] = True
        warnings.warn(
            "No CJK font found: Chinese and Japanese token labels will render as empty boxes. "
            f"To fix: {INSTALL_HINT}.",
            FontWarning,
            stacklevel=2,
        )
    return families


def has_cjk_font() -> bool:
    """Whether a font covering Chinese and Japanese is available to matplotlib."""
    families = _state["families"] if _state["families"] is not None else font_families(warn=False)
    return any(f in CJK_FAMILIES for f in families)


def font_rc(families: list[str] | None = None) -> dict[str, Any]:
    """matplotlib rc settings that make text use the fallback family list."""
    fams = list(families) if families is not None else font_families()
    return {"font.family": fams}


def use_fonts() -> list[str]:
    """Make the fallback family list matplotlib's global default (for your own figures too).

    Returns the list that was set. lensbox's own plots do not need this: they apply
    the list while building each figure.
    """
    import matplotlib

    families = font_families()
    matplotlib.rcParams["font.family"] = families
    return families


def missing_glyphs(text: str, families: list[str] | None = None) -> list[str]:
    """The characters of ``text`` that no font in ``families`` (default: the fallback list) can draw."""
    from matplotlib import font_manager, ft2font

    fams = list(families) if families is not None else font_families(warn=False)
    paths = font_manager.fontManager._find_fonts_by_props(  # noqa: SLF001 - public since 3.6 in practice
        font_manager.FontProperties(family=fams)
    )
    charmaps = []
    for entry in paths:
        fname = getattr(entry, "path", entry)
        index = getattr(entry, "face_index", 0)
        charmaps.append(set(ft2font.FT2Font(fname, face_index=index).get_charmap()))
    missing = []
    for ch in dict.fromkeys(text):
        if ch.isspace() or ord(ch) < 32 or 0x200B <= ord(ch) <= 0x200F or 0xFE00 <= ord(ch) <= 0xFE0F:
            continue
        if not any(ord(ch) in cm for cm in charmaps):
            missing.append(ch)
    return missing
