"""Files on disk: atomic writes, strict JSON, and the one artifact format.

Every artifact lensbox saves (a tuned lens, a probe, a training checkpoint) is a folder
holding one JSON metadata file and one safetensors file per weight group. The metadata
file opens with the same header everywhere::

    {"format": "lensbox.tuned_lens", "format_version": 2, "lensbox_version": "0.2.0",
     "created": "2026-11-29T00:00:00+00:00", "files": {"lens.safetensors": "<sha256>"}, ...}

merged with the artifact's own fields. `write_artifact` builds the folder beside
its target and swaps it into place, so a reader sees the old artifact or the new one,
never half of one; `read_artifact` checks the header, every file's SHA-256 and that
every tensor is finite. Weights are only ever read with safetensors (never pickle).

Files get the permissions of the user's umask (0644 / 0755 by default).
"""

import contextlib
import datetime
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Collection, Dict, Iterator, Mapping, Tuple, Union

import torch
from torch import Tensor

from ._errors import ArtifactError

PathLike = Union[str, "os.PathLike[str]"]

HEADER_KEYS = ("format", "format_version", "lensbox_version", "created", "files")
_TMP_PREFIX = ".lensbox-tmp-"


def _umask() -> int:
    """The process umask (read from /proc where possible: os.umask can only read it by setting it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def lensbox_version() -> str:
    """The installed lensbox version (``"0+unknown"`` in a source tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lensbox")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
        return "0+unknown"


# ---------------------------------------------------------------------------------- plain files
def sha256_file(path: PathLike) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    If the body raises (KeyboardInterrupt included) the temporary file is deleted and
    ``path`` is left as it was. Use it for every output a user may open (CSV, PNG, JSON).
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _check_json(obj: Any, where: str = "$") -> None:
    """Refuse values JSON cannot carry faithfully (NaN/inf, non-string keys) with an ArtifactError."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ArtifactError(
            "A value to be written as JSON is not finite.",
            expected="finite numbers (JSON has no NaN or infinity)",
            received=f"{obj!r} at {where}",
            fix="replace it with None, or find where it became non-finite",
        )
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ArtifactError(
                    "A JSON object key is not a string.",
                    expected="string keys",
                    received=f"{k!r} at {where}",
                    fix="convert the key with str()",
                )
            _check_json(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_json(v, f"{where}[{i}]")


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (sorted keys, indented, no NaN/infinity)."""
    _check_json(obj)
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_file(path, suffix=".json") as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: PathLike, *, what: str) -> Dict[str, Any]:
    """Read a JSON object; a missing file, bad JSON or another type is an `ArtifactError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(
            f"{_cap(what)} is missing its file {p.name}.",
            expected=f"a file at {p}",
            received="no such file",
            fix="point at the folder the artifact was saved to, or save it again",
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(
            f"{_cap(what)}: {p.name} cannot be read.",
            expected="a readable UTF-8 JSON file",
            received=f"{type(e).__name__}: {e}",
            fix="check the file's permissions, or save the artifact again",
        ) from None
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as e:
        raise ArtifactError(
            f"{_cap(what)}: {p.name} is not valid JSON.",
            expected="a JSON object",
            received=f"{e}",
            fix="the file is damaged; save the artifact again",
        ) from None
    if not isinstance(obj, dict):
        raise ArtifactError(
            f"{_cap(what)}: {p.name} does not hold a JSON object.",
            expected="a JSON object {...}",
            received=f"a JSON {type(obj).__name__}",
            fix="the file is damaged or is another program's; save the artifact again",
        )
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# ---------------------------------------------------------------------------------- artifacts
def _check_file_name(name: Any, *, what: str) -> str:
    bad = (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or name.startswith(_TMP_PREFIX)
        or Path(name).name != name
    )
    if bad:
        raise ArtifactError(
            f"{_cap(what)} names a file that is not a plain name inside its folder.",
            expected="a bare file name such as 'lens.safetensors'",
            received=repr(name),
            fix="the metadata is damaged or was edited; save the artifact again",
        )
    return name


def is_artifact(folder: Path, fmt: str) -> bool:
    """True when ``folder`` holds exactly one ``fmt`` artifact: its JSON file and the files it lists.

    A folder with anything else in it (the user's notes, another program's files) is not one.
    Artifacts without a ``files`` list (format version 1) may hold only .json and .safetensors files.
    """
    children = list(folder.iterdir())
    for child in children:
        if child.suffix != ".json" or not child.is_file():
            continue
        try:
            head = json.loads(child.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if not isinstance(head, dict) or head.get("format") != fmt or "format_version" not in head:
            continue
        files = head.get("files")
        if isinstance(files, dict):
            allowed = {child.name, *files}
            return all(c.name in allowed and c.is_file() for c in children)
        return all(c.is_file() and c.suffix in (".json", ".safetensors") for c in children)
    return False


def _refuse_target(target: Path, *, fmt: str, overwrite: bool, what: str) -> None:
    """Raise unless ``target`` is absent, an empty folder, or (with overwrite) an artifact of ``fmt``."""
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise ArtifactError(
            f"Cannot save {what}: the target exists and is not a folder.",
            expected="a new path, or an existing folder",
            received=f"{target} ({'a link' if target.is_symlink() else 'a file'})",
            fix="choose another path",
        )
    if not any(target.iterdir()):
        return
    if not is_artifact(target, fmt):
        raise ArtifactError(
            f"Cannot save {what}: the folder holds files that are not a {fmt!r} artifact.",
            expected=f"a new path, an empty folder, or an existing {fmt!r} artifact (with overwrite=True)",
            received=f"{target} containing {sorted(p.name for p in target.iterdir())[:5]}",
            fix="choose another path; lensbox never deletes files it did not write",
        )
    if not overwrite:
        raise ArtifactError(
            f"Cannot save {what}: {target} already holds one.",
            expected="a new path",
            received=f"an existing {fmt!r} artifact at {target}",
            fix="pass overwrite=True to replace it, or choose another path",
        )


def write_artifact(
    target: PathLike,
    *,
    format: str,
    format_version: int,
    meta_file: str,
    meta: Mapping[str, Any],
    weights: Mapping[str, Mapping[str, Tensor]],
    overwrite: bool = False,
    what: str,
) -> Path:
    """Write an artifact folder at ``target`` atomically and return its path.

    ``meta_file`` (JSON) holds the header ``format``, ``format_version``,
    ``lensbox_version``, ``created`` and ``files`` (file name -> SHA-256) merged with
    ``meta``; each ``weights`` entry (file name -> tensors) becomes one safetensors file.
    An existing ``target`` is replaced only when ``overwrite=True`` and it is an artifact
    of the same ``format``; an empty folder is used as if new; any other folder is refused.
    """
    from safetensors.torch import save_file

    target = Path(target)
    names = [_check_file_name(meta_file, what=what)] + [_check_file_name(n, what=what) for n in weights]
    if len(set(names)) != len(names):
        raise ArtifactError(
            f"Cannot save {what}: two of its files have the same name.",
            expected="distinct file names",
            received=repr(names),
            fix="rename one of the weight files",
        )
    clash = sorted(set(HEADER_KEYS) & set(meta))
    if clash:
        raise ArtifactError(
            f"Cannot save {what}: its metadata uses header field names.",
            expected=f"metadata without {', '.join(HEADER_KEYS)}",
            received=repr(clash),
            fix="rename those fields; write_artifact fills the header itself",
        )
    _check_json(dict(meta))
    _refuse_target(target, fmt=format, overwrite=overwrite, what=what)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=target.parent))
    old = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        files: Dict[str, str] = {}
        for name, tensors in weights.items():
            path = tmp / name
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))
            os.chmod(path, 0o666 & ~_umask())
            files[name] = sha256_file(path)
        header = {
            "format": format,
            "format_version": format_version,
            "lensbox_version": lensbox_version(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "files": files,
        }
        write_json(tmp / meta_file, {**dict(meta), **header})
        for child in tmp.iterdir():
            with open(child, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        if target.exists():
            # Re-check right before the swap: only an artifact of this format (or an empty folder) moves aside.
            _refuse_target(target, fmt=format, overwrite=overwrite, what=what)
            old = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=target.parent))
            os.replace(target, old / "old")
        os.replace(tmp, target)
    except BaseException:
        if old is not None and (old / "old").exists() and not target.exists():
            os.replace(old / "old", target)  # put the previous artifact back
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)
    return target


def read_artifact(
    path: PathLike,
    *,
    format: str,
    meta_file: str,
    versions: Collection[int],
    what: str,
) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Tensor]]]:
    """Read and validate an artifact folder written by `write_artifact`.

    Returns ``(meta, weights)``: the whole metadata dict (header included) and, per
    safetensors file listed in its header, the tensors it holds (on the CPU). Every
    problem (missing file, wrong format or version, bad hash, non-finite value) is an
    `ArtifactError` naming the file or field.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    if not folder.is_dir():
        raise ArtifactError(
            f"Cannot load {what}: there is no folder at {folder}.",
            expected=f"a folder holding {meta_file}",
            received="a file" if folder.exists() else "nothing at that path",
            fix="pass the folder the artifact was saved to",
        )
    meta = read_json(folder / _check_file_name(meta_file, what=what), what=what)
    if meta.get("format") != format:
        raise ArtifactError(
            f"Cannot load {what}: {meta_file} describes another kind of artifact.",
            expected=f'"format": {format!r}',
            received=f'"format": {meta.get("format")!r}',
            fix="load it with the class that saved it",
        )
    version = meta.get("format_version")
    if isinstance(version, bool) or version not in versions:
        raise ArtifactError(
            f"Cannot load {what}: {meta_file} has a format version this lensbox does not read.",
            expected=f'"format_version" in {sorted(versions)}',
            received=f'"format_version": {version!r} (written by lensbox {meta.get("lensbox_version")})',
            fix="upgrade lensbox to read newer artifacts, or save the artifact again",
        )
    files = meta.get("files")
    if not isinstance(files, dict):
        raise ArtifactError(
            f"Cannot load {what}: {meta_file} lacks its file list.",
            expected='"files": {file name: sha256}',
            received=f'"files": {files!r}',
            fix="the metadata is damaged; save the artifact again",
        )
    weights: Dict[str, Dict[str, Tensor]] = {}
    for name, digest in files.items():
        file = folder / _check_file_name(name, what=what)
        if not file.is_file():
            raise ArtifactError(
                f"Cannot load {what}: the file {name} is missing.",
                expected=f"{name} beside {meta_file}",
                received=f"no file at {file}",
                fix="copy the whole artifact folder, or save it again",
            )
        actual = sha256_file(file)
        if actual != digest:
            raise ArtifactError(
                f"Cannot load {what}: {name} is not the file that was saved (its SHA-256 differs).",
                expected=f"sha256 {digest}",
                received=f"sha256 {actual}",
                fix="the file was changed or damaged; save the artifact again",
            )
        if not name.endswith(".safetensors"):
            continue
        try:
            tensors = load_file(str(file), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise ArtifactError(
                f"Cannot load {what}: {name} is not a readable safetensors file.",
                expected="a safetensors file",
                received=f"{type(e).__name__}: {e}",
                fix="save the artifact again",
            ) from None
        for key, t in tensors.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ArtifactError(
                    f"Cannot load {what}: tensor {key!r} in {name} holds NaN or infinite values.",
                    expected="finite weights",
                    received=f"{int((~torch.isfinite(t)).sum())} non-finite of {t.numel()} values",
                    fix="the artifact was saved from a diverged run; train or fit it again",
                )
        weights[name] = tensors
    return meta, weights
