"""The saved-probe format: a folder holding ``probe.json`` and ``probe.safetensors``.

Written and read through `lensbox._io.write_artifact` / `lensbox._io.read_artifact`
(format ``"lensbox.input_probe"``, version 2): the one artifact header (``format``,
``format_version``, ``lensbox_version``, ``created``, ``files`` with each file's SHA-256),
atomic replacement, and refusal to overwrite anything that is not a saved probe.

Tensors are named ``token_counts`` (``[d_vocab]`` training-token counts),
``ridge/<site>/<offset>/weight|bias`` and ``softmax/<site>/<offset>/weight|bias|classes``.
The JSON holds the model fingerprint, sizes, sites, offsets, kinds, settings, training
sizes, majority tokens, timings and (optionally) the last evaluation's summary.

`read_probe` checks every field and tensor (types, shapes, dtypes, finite values,
class ids inside the vocabulary) and raises `ArtifactError` naming the
field. Version-1 folders (lensbox 0.1: ``"kind"`` instead of ``"format"``, no file
hashes) are still read, and may be replaced with ``overwrite=True``.
"""

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._errors import ArtifactError, LensboxError
from .._io import read_artifact, read_json, write_artifact
from ..core import Fingerprint
from ..core._sites import Site, resolve_site
from ._maps import RidgeProbe, SoftmaxProbe, SoftmaxSettings
from ._offsets import check_offsets

FORMAT = "lensbox.input_probe"
FORMAT_VERSION = 2
META_FILE = "probe.json"
WEIGHTS_FILE = "probe.safetensors"

_HEADER = {"format", "format_version", "lensbox_version", "created", "files"}
_V1_ONLY = {"kind", "vocab_digest"}
_FIELDS = {
    "model_name", "fingerprint", "d_model", "d_vocab", "n_layers", "sites", "offsets", "kinds",
    "settings", "training", "majority", "metrics", "timings", "ridge_penalty",
}
_SETTINGS = {"alpha", "decode", "include_mid", "skip_first", "ridge_products", "softmax"}


def site_key(site: Site, offset: int) -> str:
    """How a (site, offset) pair is named in the saved files: ``'resid_post.3/-1'``."""
    return f"{site.name}/{offset}"


def _what(path: Path) -> str:
    return f"the input probe at {path}"


def _bad(path: Path, field: str, expected: str, received: object) -> ArtifactError:
    return ArtifactError(
        f"Cannot load {_what(path)}: {META_FILE} field {field!r} is invalid.",
        expected=expected,
        received=repr(received)[:200],
        fix="the file was edited or damaged; save the probe again",
    )


# ---------------------------------------------------------------------------------- writing
def write_probe(path: str | Path, *, meta: Mapping[str, Any], tensors: Mapping[str, Tensor], overwrite: bool) -> Path:
    """Write a probe folder atomically (see the module docstring); returns its path."""
    target = Path(path)

    def write() -> Path:
        return write_artifact(
            target,
            format=FORMAT,
            format_version=FORMAT_VERSION,
            meta_file=META_FILE,
            meta=meta,
            weights={WEIGHTS_FILE: dict(tensors)},
            overwrite=overwrite,
            what=_what(target),
        )

    if overwrite and is_v1_probe(target):
        return _replace_v1(target, write)
    return write()


def is_v1_probe(folder: Path) -> bool:
    """True for a folder written by lensbox 0.1's ``InputProbe.save`` and nothing else."""
    if not folder.is_dir() or folder.is_symlink():
        return False
    children = list(folder.iterdir())
    if not children or any(c.name not in (META_FILE, WEIGHTS_FILE) or not c.is_file() for c in children):
        return False
    try:
        head = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(head, dict) and head.get("kind") == FORMAT and "format" not in head


def _replace_v1(target: Path, write: Callable[[], Path]) -> Path:
    """Move a version-1 probe aside, write the new one in its place, then delete the old (or put it back)."""
    aside = Path(tempfile.mkdtemp(prefix=".lensbox-old-", dir=target.parent))
    os.replace(target, aside / "old")
    try:
        out = write()
    except BaseException:
        if not target.exists():
            os.replace(aside / "old", target)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------- reading
def read_probe(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read and validate a saved probe (version 1 or 2).

    Returns ``(meta, tensors)`` where ``meta`` holds the checked fields (``fingerprint``
    as a `Fingerprint` or None, ``settings['softmax']`` as a dict) and
    ``tensors`` every tensor of ``probe.safetensors``.
    """
    root = Path(path)
    if not (root / META_FILE).is_file():
        raise ArtifactError(
            "This is not a saved input probe.",
            expected=f"a folder holding {META_FILE} and {WEIGHTS_FILE}",
            received=f"{root}: {sorted(p.name for p in root.iterdir())[:8] if root.is_dir() else 'no such folder'}",
            fix="pass the folder written by InputProbe.save() or `lensbox train-probe --out DIR`",
        )
    raw = read_json(root / META_FILE, what=_what(root))
    if "format" not in raw and raw.get("kind") == FORMAT and raw.get("format_version") == 1:
        tensors = _read_v1_weights(root)
    else:
        raw, weights = read_artifact(root, format=FORMAT, meta_file=META_FILE, versions=(FORMAT_VERSION,), what=_what(root))
        if set(weights) != {WEIGHTS_FILE}:
            raise ArtifactError(
                f"Cannot load {_what(root)}: it lists other weight files than {WEIGHTS_FILE}.",
                expected=f'"files": {{"{WEIGHTS_FILE}": sha256}}',
                received=repr(sorted(weights)),
                fix="save the probe again",
            )
        tensors = weights[WEIGHTS_FILE]
    meta = check_meta(raw, root)
    check_tensors(meta, tensors, root)
    return meta, tensors


def _read_v1_weights(root: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    file = root / WEIGHTS_FILE
    if not file.is_file():
        raise ArtifactError(
            f"Cannot load {_what(root)}: the file {WEIGHTS_FILE} is missing.",
            expected=f"{WEIGHTS_FILE} beside {META_FILE}",
            received=f"no file at {file}",
            fix="copy the whole probe folder, or save the probe again",
        )
    try:
        return load_file(str(file), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ArtifactError(
            f"Cannot load {_what(root)}: {WEIGHTS_FILE} is not a readable safetensors file.",
            expected="a safetensors file",
            received=f"{type(exc).__name__}: {exc}",
            fix="save the probe again",
        ) from exc


def _int(raw: Mapping[str, Any], name: str, root: Path, *, low: int = 1) -> int:
    v = raw.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise _bad(root, name, f"an integer >= {low}", v)
    return v


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _mapping(raw: Mapping[str, Any], name: str, root: Path, *, optional: bool = False) -> dict[str, Any]:
    v = raw.get(name)
    if v is None and optional:
        return {}
    if not isinstance(v, dict):
        raise _bad(root, name, "a JSON object", v)
    return v


def check_meta(raw: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """The checked fields of a probe's JSON (either version); an `ArtifactError` names the bad one."""
    version = raw.get("format_version")
    allowed = _FIELDS | _HEADER | (_V1_ONLY if version == 1 else set())
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _bad(root, unknown[0], f"only the fields {sorted(_FIELDS)}", unknown)
    missing = sorted({"d_model", "d_vocab", "n_layers", "sites", "offsets", "kinds"} - set(raw))
    if missing:
        raise _bad(root, missing[0], "present", "missing")
    meta: dict[str, Any] = {k: _int(raw, k, root) for k in ("d_model", "d_vocab", "n_layers")}
    meta["model_name"] = raw.get("model_name")
    if meta["model_name"] is not None and not isinstance(meta["model_name"], str):
        raise _bad(root, "model_name", "a string", meta["model_name"])
    meta["fingerprint"] = _fingerprint(raw, root)
    meta["sites"] = _sites(raw.get("sites"), meta["n_layers"], root)
    try:
        meta["offsets"] = check_offsets(raw.get("offsets"))
    except LensboxError:
        raise _bad(root, "offsets", "a non-empty list of distinct integers", raw.get("offsets")) from None
    kinds = raw.get("kinds")
    if not isinstance(kinds, list) or not kinds or any(k not in ("ridge", "softmax") for k in kinds):
        raise _bad(root, "kinds", "a non-empty list of 'ridge' and 'softmax'", kinds)
    meta["kinds"] = list(kinds)
    meta["settings"] = _settings(_mapping(raw, "settings", root, optional=True), root)
    meta["training"] = _mapping(raw, "training", root, optional=True)
    meta["metrics"] = raw.get("metrics")
    if meta["metrics"] is not None and not isinstance(meta["metrics"], dict):
        raise _bad(root, "metrics", "a JSON object or null", meta["metrics"])
    for name in ("timings", "ridge_penalty"):
        table = _mapping(raw, name, root, optional=True)
        if not all(_number(v) for v in table.values()):
            raise _bad(root, name, "finite numbers", table)
        meta[name] = table
    majority = _mapping(raw, "majority", root, optional=True)
    if not all(_is_int_text(k) and isinstance(v, list) and all(_token(i, meta["d_vocab"]) for i in v) for k, v in majority.items()):
        raise _bad(root, "majority", f"offset -> list of token ids below {meta['d_vocab']}", majority)
    meta["majority"] = majority
    return meta


def _is_int_text(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def _token(i: object, d_vocab: int) -> bool:
    return isinstance(i, int) and not isinstance(i, bool) and 0 <= i < d_vocab


def _fingerprint(raw: Mapping[str, Any], root: Path) -> Fingerprint | None:
    saved = raw.get("fingerprint")
    if saved is None:
        return None
    if raw.get("format_version") == 1 and isinstance(saved, dict):
        saved = {**saved, "vocab": raw.get("vocab_digest")}  # v1 kept the vocabulary digest beside it
    return Fingerprint.from_json(saved, what=_what(root))


def _sites(names: object, n_layers: int, root: Path) -> list[Site]:
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _bad(root, "sites", "a non-empty list of site names", names)
    try:
        sites = [resolve_site(n, n_layers) for n in names]
    except LensboxError:
        raise _bad(root, "sites", f"site names of a {n_layers}-layer model", names) from None
    if len(set(sites)) != len(sites):
        raise _bad(root, "sites", "distinct sites", names)
    return sites


def _settings(raw: Mapping[str, Any], root: Path) -> dict[str, Any]:
    unknown = sorted(set(raw) - _SETTINGS)
    if unknown:
        raise _bad(root, f"settings.{unknown[0]}", f"only {sorted(_SETTINGS)}", unknown)
    out = {
        "alpha": raw.get("alpha", 1e-3),
        "decode": raw.get("decode", "cosine"),
        "include_mid": raw.get("include_mid", False),
        "skip_first": raw.get("skip_first", 1),
        "ridge_products": raw.get("ridge_products", "float32"),
        "softmax": raw.get("softmax") or {},
    }
    if not _number(out["alpha"]) or out["alpha"] < 0:
        raise _bad(root, "settings.alpha", "a number >= 0", out["alpha"])
    if out["decode"] not in ("cosine", "dot"):
        raise _bad(root, "settings.decode", "'cosine' or 'dot'", out["decode"])
    if not isinstance(out["include_mid"], bool):
        raise _bad(root, "settings.include_mid", "true or false", out["include_mid"])
    if isinstance(out["skip_first"], bool) or not isinstance(out["skip_first"], int) or out["skip_first"] < 0:
        raise _bad(root, "settings.skip_first", "an integer >= 0", out["skip_first"])
    if out["ridge_products"] not in ("float32", "float64"):
        raise _bad(root, "settings.ridge_products", "'float32' or 'float64'", out["ridge_products"])
    try:
        SoftmaxSettings(**out["softmax"]).validate()
    except (TypeError, LensboxError):
        raise _bad(root, "settings.softmax", "the fields of SoftmaxSettings", out["softmax"]) from None
    return out


# ---------------------------------------------------------------------------------- tensors
#: Largest magnitude a stored probe weight or bias may have (a sanity bound far above any fitted value).
MAX_WEIGHT = 1e10


def _bad_tensor(root: Path, name: str, expected: str, received: str) -> ArtifactError:
    return ArtifactError(
        f"Cannot load {_what(root)}: tensor {name!r} in {WEIGHTS_FILE} is invalid.",
        expected=expected,
        received=received,
        fix="the file was changed or damaged; save the probe again",
    )


def _get(tensors: Mapping[str, Tensor], name: str, shape: tuple[int | None, ...], floating: bool, root: Path) -> Tensor:
    if name not in tensors:
        raise _bad_tensor(root, name, "present (the JSON names it)", "missing")
    t = tensors[name]
    if t.dtype.is_floating_point != floating or t.dtype == torch.bool:
        raise _bad_tensor(root, name, "a floating-point tensor" if floating else "an integer tensor", str(t.dtype))
    if t.ndim != len(shape) or any(want is not None and got != want for got, want in zip(t.shape, shape)):
        want = tuple("*" if w is None else w for w in shape)
        raise _bad_tensor(root, name, f"shape {want}", f"shape {tuple(t.shape)}")
    if floating and not bool(torch.isfinite(t).all()):
        raise _bad_tensor(root, name, "finite values", "NaN or infinite values")
    if floating and t.numel() and float(t.abs().max()) > MAX_WEIGHT:
        # Fitted weights are of order 1 (at most ~1e3 on real models); values this large overflow the
        # float32 scores at evaluation, which then silently rank every token alike.
        raise _bad_tensor(root, name, f"values of magnitude <= {MAX_WEIGHT:.0e}", f"values up to {float(t.abs().max()):.3g}")
    return t


def check_tensors(meta: Mapping[str, Any], tensors: Mapping[str, Tensor], root: Path) -> None:
    """Check every tensor a probe needs: present, of the right dtype and shape, finite, ids in the vocabulary."""
    d_model, d_vocab = meta["d_model"], meta["d_vocab"]
    counts = _get(tensors, "token_counts", (d_vocab,), False, root)
    if bool((counts < 0).any()):
        raise _bad_tensor(root, "token_counts", "counts >= 0", "negative counts")
    used = {"token_counts"}
    for s in meta["sites"]:
        for k in meta["offsets"]:
            key = site_key(s, k)
            if "ridge" in meta["kinds"]:
                w = _get(tensors, f"ridge/{key}/weight", (d_model, None), True, root)
                _get(tensors, f"ridge/{key}/bias", (w.shape[1],), True, root)
                used |= {f"ridge/{key}/weight", f"ridge/{key}/bias"}
            if "softmax" in meta["kinds"] and f"softmax/{key}/weight" in tensors:
                w = _get(tensors, f"softmax/{key}/weight", (d_model, None), True, root)
                _get(tensors, f"softmax/{key}/bias", (w.shape[1],), True, root)
                cls = _get(tensors, f"softmax/{key}/classes", (w.shape[1],), False, root)
                if cls.numel() and (int(cls.min()) < 0 or int(cls.max()) >= d_vocab):
                    raise _bad_tensor(
                        root, f"softmax/{key}/classes", f"token ids in 0..{d_vocab - 1}",
                        f"ids in {int(cls.min())}..{int(cls.max())}",
                    )
                used |= {f"softmax/{key}/{part}" for part in ("weight", "bias", "classes")}
    extra = sorted(set(tensors) - used)
    if extra:
        raise _bad_tensor(root, extra[0], "only the tensors of the sites, offsets and kinds in the JSON", repr(extra[:5]))


def fitted_state(meta: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> dict[str, Any]:
    """The fitted attributes of an `InputProbe` from a validated artifact (see `read_probe`)."""
    state: dict[str, Any] = {
        "fitted_sites": list(meta["sites"]),
        "model_name": meta["model_name"],
        "fingerprint": meta["fingerprint"],
        "d_model": meta["d_model"],
        "d_vocab": meta["d_vocab"],
        "n_layers": meta["n_layers"],
        "training": dict(meta["training"]),
        "metrics": meta["metrics"],
        "timings": {k: float(v) for k, v in meta["timings"].items()},
        "majority": {int(k): [int(i) for i in v] for k, v in meta["majority"].items()},
        "token_counts": tensors["token_counts"].long(),
        "ridge": {},
        "softmax": {},
        "fitted": True,
    }
    n_ridge = state["training"].get("n_ridge_samples") or {}
    n_soft = state["training"].get("n_softmax_samples") or {}
    for s in meta["sites"]:
        for k in meta["offsets"]:
            key = site_key(s, k)
            if f"ridge/{key}/weight" in tensors:
                state["ridge"][(s, k)] = RidgeProbe(
                    weight=tensors[f"ridge/{key}/weight"].float(),
                    bias=tensors[f"ridge/{key}/bias"].float(),
                    n_samples=int(n_ridge.get(key, 0)),
                    penalty=float(meta["ridge_penalty"].get(key, 0.0)),
                )
            if f"softmax/{key}/weight" in tensors:
                state["softmax"][(s, k)] = SoftmaxProbe(
                    weight=tensors[f"softmax/{key}/weight"].float(),
                    bias=tensors[f"softmax/{key}/bias"].float(),
                    classes=tensors[f"softmax/{key}/classes"].long(),
                    n_samples=int(n_soft.get(key, 0)),
                )
    return state
