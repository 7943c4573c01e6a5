"""The corpus cache: where corpora live, their manifests, and moving a finished folder into place.

Every corpus is built in a temporary folder under ``cache_dir()/corpora`` and
renamed into place once its ``manifest.json`` is written, so an interrupted fetch
leaves nothing half-written. Archive member names pass `safe_relative`
before anything is extracted.
"""

import json
import os
import re
import shutil
import sys
from pathlib import Path, PurePosixPath
from typing import List, Optional

from .._cache import cache_dir
from .._errors import LensboxError

def say(msg: str, progress: bool) -> None:
    if progress:
        print(f"[lensbox] {msg}", file=sys.stderr, flush=True)


def corpora_root() -> Path:
    root = cache_dir() / "corpora"
    root.mkdir(parents=True, exist_ok=True)
    return root


def cached(final: Path) -> Optional[List[Path]]:
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


def safe_relative(name: str) -> PurePosixPath:
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



def install(tmp: Path, final: Path) -> None:
    """Move a finished corpus folder into place; a concurrent winner is kept."""
    os.chmod(tmp, 0o755)  # mkdtemp made it private; cached corpora are ordinary readable folders
    try:
        os.rename(tmp, final)
    except OSError:
        if cached(final) is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(final, ignore_errors=True)  # a broken earlier attempt
        os.rename(tmp, final)

