"""lensbox.lenses: decode residual streams into vocabulary distributions (logit lens, tuned lens).

Internals, bottom up:

* ``_metrics``  THE metric table: every statistic a :class:`LensResult` or a
  :class:`LensEvaluation` offers, as frozen :class:`Metric` records (name, description,
  reader, axis label, colour map, scale, aliases, better); :func:`get_metric`.
* ``_decoders`` how a residual vector becomes logits (final norm + ``W_U``, ``W_E^T``,
  the last K blocks, per-site maps).
* ``_stats``    the chunked statistics engine (top-k, ranks, KL both ways, entropy) in
  bounded memory, and the one KL / log-softmax kernel evaluation and training share.
* ``_result``   :class:`LensResult`, what every lens returns.
* ``_logit``    the logit lens analyzer and :func:`logit_lens`.
* ``_tuned``    learned per-site affine translators, the tuned-lens analyzer, :func:`tuned_lens`.
* ``_evaluate`` several lenses side by side on held-out text (:func:`evaluate`).
* ``_geometry`` residual-stream norms and the token-plane trajectory.
"""

from ._decoders import Decoder as Decoder
from ._decoders import EmbedTransposeDecoder as EmbedTransposeDecoder
from ._decoders import LastBlocksDecoder as LastBlocksDecoder
from ._jacobian import JacobianDecoder as JacobianDecoder
from ._evaluate import LensEvaluation as LensEvaluation
from ._evaluate import evaluate as evaluate
from ._geometry import ResidualNorms as ResidualNorms
from ._geometry import TokenPlaneTrajectory as TokenPlaneTrajectory
from ._geometry import residual_norms as residual_norms
from ._geometry import token_plane_trajectory as token_plane_trajectory
from ._logit import LogitLens as LogitLens
from ._logit import logit_lens as logit_lens
from ._metrics import METRIC_TABLE as METRIC_TABLE
from ._metrics import METRICS as METRICS
from ._metrics import Metric as Metric
from ._metrics import get_metric as get_metric
from ._metrics import metric_names as metric_names
from ._result import LensResult as LensResult
from ._stats import kl_divergence as kl_divergence
from ._stats import log_softmax as log_softmax
from ._tuned import Translators as Translators
from ._tuned import TunedLens as TunedLens
from ._tuned import tuned_lens as tuned_lens

__all__ = [
    "Decoder", "EmbedTransposeDecoder", "JacobianDecoder", "LastBlocksDecoder", "LensEvaluation", "LensResult",
    "LogitLens", "METRICS", "METRIC_TABLE", "Metric", "ResidualNorms", "TokenPlaneTrajectory", "Translators",
    "TunedLens", "evaluate", "get_metric", "kl_divergence", "log_softmax", "logit_lens", "metric_names", "residual_norms", "token_plane_trajectory",
    "tuned_lens",
]
