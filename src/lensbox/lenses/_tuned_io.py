"""The tuned lens on disk: lensbox's lens folder (read and write) and the tuned-lens library's format (read).

A lensbox lens is a folder written by `lensbox._io.write_artifact`::

    config.json               {"format": "lensbox.tuned_lens", "format_version": 2, "lensbox_version",
                               "created", "files": {"translators.safetensors": sha256}, "model_name",
                               "d_model", "n_layers", "d_vocab", "fingerprint", "sites", "translator",
                               "dtype", plus training settings and metrics}
    translators.safetensors   "<site>.weight" [d_model, d_model] and "<site>.bias" [d_model] per site

Version 1 folders (lensbox 0.1: no ``files`` hashes, ``weights_file`` naming the weights)
are still read; their weights file must be a bare name inside the folder.

A tuned-lens library lens is ``config.json`` + ``params.pt`` (read with
``torch.load(weights_only=True)``: tensors only, no code).
"""

import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .._errors import ArtifactError, ModelError, SiteError
from .._io import HEADER_KEYS, read_artifact, read_json, write_artifact
from ..core._adapter import ModelAdapter
from ..core._fingerprint import Fingerprint
from ..core._sites import Site, resolve_site

FORMAT_NAME = "lensbox.tuned_lens"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "translators.safetensors"


def lens_config(adapter: ModelAdapter) -> Dict[str, Any]:
    """The model description every tuned lens keeps in its config: name, sizes and fingerprint."""
    return {
        "model_name": adapter.model_name,
        "d_model": adapter.d_model,
        "n_layers": adapter.n_layers,
        "d_vocab": adapter.d_vocab,
        "fingerprint": adapter.fingerprint.to_json(),
    }


def jsonable(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by None and paths by strings (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def lens_fingerprint(config: Mapping[str, Any], *, what: str) -> Optional[Fingerprint]:
    """The fingerprint stored in a lens config (either layout), or None when it has none."""
    saved = config.get("fingerprint")
    return None if not saved else Fingerprint.from_json(saved, what=what)


def write_lens(target: Path, *, tensors: Dict[str, Tensor], config: Mapping[str, Any], overwrite: bool) -> Path:
    """Write a lens folder atomically (see the module docstring); returns ``target``."""
    meta = {k: v for k, v in jsonable(dict(config)).items() if k not in HEADER_KEYS and k != "weights_file"}
    return write_artifact(
        target,
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        meta_file=CONFIG_FILE,
        meta=meta,
        weights={WEIGHTS_FILE: tensors},
        overwrite=overwrite,
        what="the tuned lens",
    )


def check_lens_target(target: Path, *, overwrite: bool) -> None:
    """Raise `ArtifactError` now if saving a lens to ``target`` would be refused later.

    A new path or an empty folder is fine; an existing lens folder only with ``overwrite``;
    anything else (a file, a folder of other files) never.
    """
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return
    is_lens = target.is_dir() and (target / CONFIG_FILE).is_file()
    if is_lens:
        try:
            is_lens = read_json(target / CONFIG_FILE, what="the existing lens").get("format") == FORMAT_NAME
        except ArtifactError:
            is_lens = False
    if is_lens and overwrite:
        return
    raise ArtifactError(
        "Refusing to write the tuned lens over an existing path.",
        expected="a new path, an empty folder, or (with overwrite) an existing tuned-lens folder",
        received=f"{'an existing tuned lens' if is_lens else 'a file or a folder of other files'} at {target}",
        fix="pass overwrite=True (--overwrite) to replace a lens" if is_lens else "choose another path",
    )


def read_lens(directory: Path) -> Tuple[Dict[str, Any], Dict[str, Tensor], List[Site], int]:
    """Read a lens folder (version 1 or 2): ``(config, tensors, sites, d_model)``."""
    config = read_lens_config(directory)
    what = f"the tuned lens at {directory}"
    if config["format_version"] >= 2:
        config, weights = read_artifact(
            directory, format=FORMAT_NAME, meta_file=CONFIG_FILE, versions=READ_VERSIONS, what=what
        )
        if WEIGHTS_FILE not in weights:
            raise ArtifactError(
                f"Cannot load {what}: config.json lists no {WEIGHTS_FILE}.",
                expected=f'"files": {{"{WEIGHTS_FILE}": sha256}}',
                received=f'"files": {sorted(weights)}',
                fix="re-save the lens with TunedLens.save",
            )
        tensors = weights[WEIGHTS_FILE]
    else:
        tensors = _read_v1_weights(directory, config)
    field = "n_layers"
    try:
        n_layers = _whole(config["n_layers"])
        field = "d_model"
        d_model = _whole(config["d_model"])
        field = "sites"
        if not isinstance(config["sites"], list):
            raise TypeError(f"a JSON {type(config['sites']).__name__}")
        sites = [resolve_site(s, n_layers) for s in config["sites"]]
    except (KeyError, TypeError, ValueError, SiteError) as exc:
        got = "missing" if isinstance(exc, KeyError) else f"{config.get(field)!r} ({type(exc).__name__}: {exc})"
        raise ArtifactError(
            f"The lens config.json is damaged or incomplete: the field {field!r} is invalid.",
            expected="n_layers and d_model (whole numbers >= 1) and sites (a list of site names)",
            received=f"{directory / CONFIG_FILE}: {field!r} {got}"[:400],
            fix="re-save the lens with TunedLens.save",
        ) from exc
    return config, tensors, sites, d_model


def _whole(value: Any) -> int:
    """A JSON whole number >= 1 (not a bool, a float or a string)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("expected a whole number >= 1")
    return value


def _read_v1_weights(directory: Path, config: Mapping[str, Any]) -> Dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    name = config.get("weights_file", WEIGHTS_FILE)
    if not isinstance(name, str) or Path(name).name != name or name in {"", ".", ".."}:
        raise ArtifactError(
            "The lens config.json names a weights file outside the lens folder.",
            expected="a bare file name such as translators.safetensors",
            received=f'"weights_file": {name!r}',
            fix="put the weights inside the lens folder and name them there",
        )
    weights = directory / name
    if not weights.is_file():
        raise ArtifactError(
            "The lens directory has no weights file.",
            expected=f"{name} beside config.json",
            received=f"{directory} containing {sorted(p.name for p in directory.iterdir())}",
            fix="copy the whole lens directory, or re-save the lens",
        )
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(
            "The lens weights file is corrupted or not a safetensors file.",
            expected="a safetensors file written by TunedLens.save",
            received=f"{weights}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}",
            fix="restore the file from a backup or a checkpoint, or retrain the lens",
        ) from exc


def read_lens_config(directory: Path) -> Dict[str, Any]:
    """Read a lens directory's ``config.json`` and check its format name and version."""
    if not directory.exists():
        raise ArtifactError(
            "The lens directory does not exist.",
            expected="a directory written by TunedLens.save",
            received=str(directory),
            fix="check the path",
        )
    if not directory.is_dir():
        raise ArtifactError(
            "A tuned lens is a directory, not a file.",
            expected="a directory with config.json and translators.safetensors",
            received=f"the file {directory}",
            fix="pass the directory that holds config.json",
        )
    if not (directory / CONFIG_FILE).is_file():
        hint = " (it looks like a tuned-lens library lens: use TunedLens.from_tuned_lens)" if (
            directory / "params.pt"
        ).is_file() else ""
        raise ArtifactError(
            "The lens directory has no config.json.",
            expected="config.json and translators.safetensors",
            received=f"{directory} containing {sorted(p.name for p in directory.iterdir())[:10]}{hint}",
            fix="pass a directory written by TunedLens.save",
        )
    config = read_json(directory / CONFIG_FILE, what=f"the tuned lens at {directory}")
    if config.get("format") != FORMAT_NAME:
        raise ArtifactError(
            "This config.json does not describe a lensbox tuned lens.",
            expected=f"format {FORMAT_NAME!r}",
            received=f"format {config.get('format')!r}",
            fix="for a tuned-lens library lens use TunedLens.from_tuned_lens(dir, model)",
        )
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ArtifactError(
            "The lens config.json has no valid format_version.",
            expected="a positive integer",
            received=repr(version),
            fix="re-save the lens with TunedLens.save",
        )
    if version > FORMAT_VERSION:
        raise ArtifactError(
            "This lens was saved by a newer lensbox.",
            expected=f"format_version <= {FORMAT_VERSION}",
            received=f"format_version {version}",
            fix="upgrade lensbox (pip install -U lensbox) to read it",
        )
    return config


# ----------------------------------------------------------------------------- tuned-lens library
def tuned_lens_unembed_hash(adapter: ModelAdapter) -> Optional[str]:
    """The ``unembed_hash`` tuned-lens records: SHA-256 of numpy's 1-decimal summary of the [vocab, d_model] matrix."""
    try:
        import hashlib

        import numpy as np

        w = adapter.W_U.detach().float().cpu().T.contiguous().numpy()
        return hashlib.sha256(str.encode(np.array_str(w, precision=1))).hexdigest()
    except Exception:  # noqa: BLE001 - a best-effort check only
        return None


def _library_config(directory: Path) -> Tuple[Dict[str, Any], int, int]:
    cfg_path, params_path = directory / "config.json", directory / "params.pt"
    for p in (cfg_path, params_path):
        if not p.is_file():
            raise ArtifactError(
                "This is not a tuned-lens lens directory.",
                expected="config.json and params.pt (what tuned_lens's TunedLens.save writes)",
                received=f"{directory}: no {p.name}" + (
                    f" (contents: {sorted(x.name for x in directory.iterdir())[:10]})" if directory.is_dir() else ""
                ),
                fix="point at the directory holding params.pt; for a lensbox lens use TunedLens.load",
            )
    cfg = read_json(cfg_path, what=f"the tuned-lens lens at {directory}")
    try:
        return cfg, int(cfg["d_model"]), int(cfg["num_hidden_layers"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(
            "The tuned-lens config.json is unreadable.",
            expected="JSON with d_model and num_hidden_layers",
            received=f"{cfg_path}: {type(exc).__name__}: {exc}",
            fix="re-export the lens with tuned-lens",
        ) from exc


def read_tuned_lens_library(
    directory: Path, adapter: ModelAdapter, *, check_fingerprint: bool
) -> Tuple[Dict[str, Any], Dict[str, Tensor], List[Site], int]:
    """Read a tuned-lens library lens for ``adapter``'s model: ``(library config, tensors, sites, d_model)``.

    tuned-lens's translator ``i`` reads the hidden state entering block ``i`` (0 = the
    embeddings), i.e. lensbox's ``embed`` for ``i = 0`` and ``resid_post.(i-1)`` otherwise.
    """
    cfg, d_model, n_hidden = _library_config(directory)
    if d_model != adapter.d_model or n_hidden != adapter.n_layers:
        raise ModelError(
            "This tuned-lens lens was trained for another model.",
            expected=f"a lens for d_model={adapter.d_model}, {adapter.n_layers} layers ({adapter.model_name})",
            received=f"d_model={d_model}, num_hidden_layers={n_hidden} ({cfg.get('base_model_name_or_path')})",
            fix="load the model the lens was trained on",
        )
    lens_hash = cfg.get("unembed_hash")
    if check_fingerprint and lens_hash and adapter.generation == "bridge":
        mine = tuned_lens_unembed_hash(adapter)
        if mine is not None and mine != lens_hash:
            raise ModelError(
                "This tuned-lens lens was trained with another unembedding matrix.",
                expected=f"unembed_hash {str(lens_hash)[:16]}... ({cfg.get('base_model_name_or_path')})",
                received=f"{mine[:16]}... for {adapter.model_name}",
                fix="load the lens's own model, or pass check_fingerprint=False if you are sure",
            )
    params_path = directory / "params.pt"
    try:
        state = torch.load(str(params_path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad or unsafe file
        raise ArtifactError(
            "Could not read params.pt as plain tensors.",
            expected="a state dict of tensors saved by tuned-lens (loaded with weights_only=True)",
            received=f"{params_path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
            fix="re-export the lens with tuned-lens; lensbox never unpickles arbitrary objects",
        ) from exc
    if not isinstance(state, Mapping):
        raise ArtifactError(
            "params.pt does not hold a state dict.",
            expected="a dict '<i>.weight' / '<i>.bias' -> tensor",
            received=type(state).__name__,
            fix="re-export the lens with tuned-lens",
        )
    sites = [Site.embed()] + [Site.resid_post(i) for i in range(n_hidden - 1)]
    tensors: Dict[str, Tensor] = {}
    for i, s in enumerate(sites):
        w, b = state.get(f"{i}.weight"), state.get(f"{i}.bias")
        if not isinstance(w, Tensor) or (b is not None and not isinstance(b, Tensor)):
            raise ArtifactError(
                "params.pt lacks a translator.",
                expected=f"tensors '{i}.weight' (and '{i}.bias') for each of {n_hidden} layers",
                received=f"keys {sorted(state)[:6]} ...",
                fix="re-export the lens with tuned-lens",
            )
        tensors[f"{s.name}.weight"] = w.float()
        tensors[f"{s.name}.bias"] = torch.zeros(d_model) if b is None else b.float()
    return cfg, tensors, sites, d_model


__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "check_lens_target", "lens_config", "jsonable", "lens_fingerprint", "read_lens", "read_lens_config",
    "read_tuned_lens_library", "tuned_lens_unembed_hash", "write_lens",
]
