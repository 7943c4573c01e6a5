"""lensbox: hook-point analyzers for TransformerLens models.

Importing lensbox has no side effects and imports no optional package.
"""

from ._adapters import ModelAdapter, adapt
from ._cache import cache_dir
from ._decoders import Decoder, EmbedTransposeDecoder, LastBlocksDecoder
from ._loading import DEFAULT_MODEL, load_hf_model, load_model
from ._logit_lens import LogitLens, logit_lens
from ._registry import Analyzer, analyze, available_analyzers, get_analyzer, register_analyzer
from ._result import METRICS, LensResult
from ._convert import to_hooked_transformer
from ._corpus import CORPORA, fetch_corpus, read_texts, token_windows, train_val_split
from ._geometry import ResidualNorms, TokenPlaneTrajectory, residual_norms, token_plane_trajectory
from ._tuned_lens import TunedLens, tuned_lens
from ._train import train_tuned_lens
from ._evaluate import LensEvaluation, evaluate
from ._probe import InputProbe, RidgeProbe, SoftmaxProbe, SoftmaxSettings, fit_softmax
from ._probe_eval import ProbeEvaluation, embedding_relation, evaluate_probe
from ._errors import ArtifactError, InputError, LensboxError, ModelError, NonFiniteError, SiteError
from ._sites import Site, SiteKind
from ._tokens import sequence_labels, token_label, tokenizer_kind, visible_text
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
