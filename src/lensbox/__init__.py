"""lensbox: hook-point analyzers for TransformerLens models.

The root holds the everyday API (``__all__``). Everything else lives in a sub-package:

* ``lensbox.core``: sites, the model adapter and its fingerprint, analyzers, ``analyze`` and the registry;
* ``lensbox.lenses``: logit lens, tuned lens, decoders, the metric table, lens evaluation, geometry;
* ``lensbox.training``: tuned-lens training;
* ``lensbox.probes``: input-reconstruction probes and their evaluation;
* ``lensbox.data``: corpora, text reading and token windows;
* ``lensbox.models``: loading and converting models;
* ``lensbox.plot``: plots (matplotlib and plotly are imported only when a plot is drawn);
* ``lensbox.cli``: the ``lensbox`` command.

Names that used to sit at the root still work (``lensbox.NAME``) with a ``DeprecationWarning``
naming their new home. Importing lensbox has no side effects and imports no optional package.
"""

import importlib
import sys
import warnings
from typing import Any, Dict, List

from ._cache import cache_dir as cache_dir
from ._errors import ArtifactError as ArtifactError
from ._errors import InputError as InputError
from ._errors import LensboxError as LensboxError
from ._errors import ModelError as ModelError
from ._errors import NonFiniteError as NonFiniteError
from ._errors import SiteError as SiteError
from ._io import lensbox_version as _lensbox_version
from .core import Analyzer as Analyzer
from .core import Site as Site
from .core import adapt as adapt
from .core import analyze as analyze
from .core import available_analyzers as available_analyzers
from .core import register_analyzer as register_analyzer
from .data import fetch_corpus as fetch_corpus
from .data import read_texts as read_texts
from .lenses import METRICS as METRICS
from .lenses import LensEvaluation as LensEvaluation
from .lenses import LensResult as LensResult
from .lenses import LogitLens as LogitLens
from .lenses import TunedLens as TunedLens
from .lenses import component_lens as component_lens
from .lenses import evaluate as evaluate
from .lenses import logit_attribution as logit_attribution
from .lenses import logit_lens as logit_lens
from .lenses import residual_norms as residual_norms
from .lenses import token_plane_trajectory as token_plane_trajectory
from .lenses import tuned_lens as tuned_lens
from .models import load_model as load_model
from .probes import InputProbe as InputProbe
from .probes import ProbeEvaluation as ProbeEvaluation
from .probes import evaluate_probe as evaluate_probe
from .training import train_tuned_lens as train_tuned_lens


__version__: str = _lensbox_version()  # from the installed metadata; "0+unknown" in a bare source tree

__all__ = [
    # lenses
    "logit_lens",
    "LogitLens",
    "tuned_lens",
    "TunedLens",
    "train_tuned_lens",
    "LensResult",
    "METRICS",
    "evaluate",
    "LensEvaluation",
    "residual_norms",
    "token_plane_trajectory",
    "logit_attribution",
    "component_lens",
    # probes
    "InputProbe",
    "evaluate_probe",
    "ProbeEvaluation",
    # models and data
    "load_model",
    "cache_dir",
    "fetch_corpus",
    "read_texts",
    # analyzers and sites
    "analyze",
    "Analyzer",
    "register_analyzer",
    "available_analyzers",
    "adapt",
    "Site",
    # errors
    "LensboxError",
    "InputError",
    "ModelError",
    "SiteError",
    "ArtifactError",
    "NonFiniteError",
]

_SUBPACKAGES = ("core", "lenses", "training", "probes", "data", "models", "plot", "cli")

# Names that left the root -> their public home (the sub-package that exports them).
_MOVED: Dict[str, str] = {
    "ModelAdapter": "lensbox.core",
    "SiteKind": "lensbox.core",
    "get_analyzer": "lensbox.core",
    "sequence_labels": "lensbox.core",
    "token_label": "lensbox.core",
    "tokenizer_kind": "lensbox.core",
    "visible_text": "lensbox.core",
    "Decoder": "lensbox.lenses",
    "EmbedTransposeDecoder": "lensbox.lenses",
    "LastBlocksDecoder": "lensbox.lenses",
    "ResidualNorms": "lensbox.lenses",
    "TokenPlaneTrajectory": "lensbox.lenses",
    "RidgeProbe": "lensbox.probes",
    "SoftmaxProbe": "lensbox.probes",
    "SoftmaxSettings": "lensbox.probes",
    "fit_softmax": "lensbox.probes",
    "embedding_relation": "lensbox.probes",
    "CORPORA": "lensbox.data",
    "token_windows": "lensbox.data",
    "train_val_split": "lensbox.data",
    "DEFAULT_MODEL": "lensbox.models",
    "load_hf_model": "lensbox.models",
    "to_hooked_transformer": "lensbox.models",
}


_WRAPPERS = ("jaxtyping", "beartype", "typeguard")  # runtime type checkers that wrap __getattr__ in tests


def _moved(name: str) -> Any:
    home = _MOVED[name]
    # stacklevel pointing at the code outside lensbox (and outside type-checking wrappers) that asked
    frame, level = sys._getframe(), 1
    while frame is not None and (
        frame.f_code.co_filename == __file__ or str(frame.f_globals.get("__name__", "")).split(".")[0] in _WRAPPERS
    ):
        frame, level = frame.f_back, level + 1
    warnings.warn(
        f"lensbox.{name} has moved: import it from {home} (`from {home} import {name}`); "
        "the root alias will be removed in a future release.",
        DeprecationWarning,
        stacklevel=level,
    )
    return getattr(importlib.import_module(home), name)


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"lensbox.{name}")
    if name in _MOVED:
        return _moved(name)
    raise AttributeError(f"module 'lensbox' has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__) | set(_MOVED) | set(_SUBPACKAGES))
