"""lensbox: hook-point analyzers for TransformerLens models.

Importing lensbox has no side effects and imports no optional package.
"""

from .core._adapter import ModelAdapter, adapt
from ._cache import cache_dir
from .lenses._decoders import Decoder, EmbedTransposeDecoder, LastBlocksDecoder
from .models._loading import DEFAULT_MODEL, load_hf_model, load_model
from .lenses._logit import LogitLens, logit_lens
from .core._analyzer import Analyzer
from .core._analyze import analyze
from .core._registry import available_analyzers, get_analyzer, register_analyzer
from .lenses._result import METRICS, LensResult
from .models._convert import to_hooked_transformer
from .data import CORPORA, fetch_corpus, read_texts, token_windows, train_val_split
from .lenses._geometry import ResidualNorms, TokenPlaneTrajectory, residual_norms, token_plane_trajectory
from .lenses._tuned import TunedLens, tuned_lens
from .training._train import train_tuned_lens
from .lenses._evaluate import LensEvaluation, evaluate
from .probes import (
    InputProbe,
    ProbeEvaluation,
    RidgeProbe,
    SoftmaxProbe,
    SoftmaxSettings,
    embedding_relation,
    evaluate_probe,
    fit_softmax,
)
from ._errors import ArtifactError, InputError, LensboxError, ModelError, NonFiniteError, SiteError
from .core._sites import Site, SiteKind
from .core._tokens import sequence_labels, token_label, tokenizer_kind, visible_text
from . import plot

__version__ = "0.1.0"

__all__ = [
    "InputProbe",
    "RidgeProbe",
    "SoftmaxProbe",
    "SoftmaxSettings",
    "fit_softmax",
    "ProbeEvaluation",
    "embedding_relation",
    "evaluate_probe",
    "LensEvaluation",
    "evaluate",
    "TunedLens",
    "train_tuned_lens",
    "tuned_lens",
    "CORPORA",
    "to_hooked_transformer",
    "ResidualNorms",
    "TokenPlaneTrajectory",
    "fetch_corpus",
    "plot",
    "read_texts",
    "residual_norms",
    "sequence_labels",
    "token_label",
    "token_plane_trajectory",
    "token_windows",
    "tokenizer_kind",
    "train_val_split",
    "visible_text",
    "DEFAULT_MODEL",
    "METRICS",
    "Analyzer",
    "Decoder",
    "EmbedTransposeDecoder",
    "LastBlocksDecoder",
    "LensResult",
    "LogitLens",
    "analyze",
    "available_analyzers",
    "cache_dir",
    "get_analyzer",
    "load_hf_model",
    "load_model",
    "logit_lens",
    "register_analyzer",
    "ArtifactError",
    "InputError",
    "LensboxError",
    "ModelAdapter",
    "ModelError",
    "NonFiniteError",
    "Site",
    "SiteError",
    "SiteKind",
    "adapt",
]
