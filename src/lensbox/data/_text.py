"""Reading text: files (UTF-8, folders read recursively) and strings, one text per file.

`read_texts` reads everything at once; `iter_texts` reads the same
sources lazily, one file at a time (what the token-window stream uses).
`expand_paths` is the folder rule both use (hidden files skipped).
"""

import os
import re
from pathlib import Path
from typing import Iterable, Iterator, List, Literal, Union

from .._errors import InputError

__all__ = ["decode_file", "expand_paths", "iter_texts", "normalise", "read_texts"]

_PATHLIKE = re.compile(r"^[^\s]*[/\\][^\s]*$|^[^\s/\\]+\.[A-Za-z0-9]{1,8}$")


def decode_file(path: Path) -> str:
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
    return normalise(text)


def normalise(text: str) -> str:
    """Drop a byte-order mark and turn Windows/old-Mac line ends into ``\\n``."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def expand_paths(path: Path) -> List[Path]:
    """The files a path stands for: itself, or every non-hidden file below a folder, sorted."""
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


Source = Union[str, "os.PathLike[str]", Iterable[Union[str, "os.PathLike[str]"]]]


def read_texts(source: Source, *, kind: Literal["auto", "paths", "texts"] = "auto") -> List[str]:
    """Read training text: one string per file (or per given string).

    ``source`` is a path (file or folder, read recursively), a string, or an
    iterable of paths and/or raw strings. With ``kind="auto"``: ``Path`` objects
    are files; a ``str`` is a file if it names an existing one, raw text if it
    contains a newline or whitespace (``read_texts("Hello world") == ["Hello world"]``),
    and an error if it looks like a path to a missing file. A single ``str``
    without whitespace that names no existing file is taken as a path (an error),
    so a mistyped folder name never becomes training text. Force one reading
    with ``kind="paths"`` or ``kind="texts"``.

    Files must be UTF-8; a byte-order mark is dropped and line ends become
    ``\\n``. Empty files, missing files and non-UTF-8 files raise
    `InputError` naming the file (and byte offset).
    """
    if isinstance(source, str) and kind == "auto" and not any(c.isspace() for c in source):
        source = Path(source)  # one bare word: a path (missing -> a clear error), never a one-word text
    return list(iter_texts(source, kind=kind))


def iter_texts(source: Source, *, kind: Literal["auto", "paths", "texts"] = "auto") -> Iterator[str]:
    """The texts of ``source`` one at a time, files read only when reached.

    Same rules as `read_texts`, except that a single ``str`` is read by the
    ``kind`` rule (text or path) rather than always as a path. An empty
    collection raises `InputError` at once.
    """
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not items:
        raise InputError(
            "No texts were given.",
            expected="at least one file path or string",
            received="an empty collection",
            fix="pass files (e.g. fetch_corpus('botchan')) or strings",
        )
    return _iter_items(items, kind)


def _iter_items(items: List[object], kind: str) -> Iterator[str]:
    for k, item in enumerate(items):
        if isinstance(item, os.PathLike) and kind != "texts":
            yield from (decode_file(p) for p in expand_paths(Path(item)))
            continue
        if not isinstance(item, (str, os.PathLike)):
            raise InputError(
                "Texts must be strings or paths.",
                expected="str or pathlib.Path items",
                received=f"item {k} of type {type(item).__name__}",
                fix="decode bytes first, or pass file paths",
            )
        s = os.fspath(item)
        if kind == "paths" or (kind == "auto" and _looks_like_path(s)):
            yield from (decode_file(p) for p in expand_paths(Path(s)))
            continue
        if not s.strip():
            raise InputError(
                "A text is empty.",
                expected="non-empty strings",
                received=f"item {k}: {s!r}",
                fix="drop empty strings before passing the texts",
            )
        yield normalise(s)


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

