"""lensbox.lenses: decode residual streams into vocabulary distributions (logit lens, tuned lens).

Internals, bottom up (each module one concept):

* ``_metrics``   THE metric table: every statistic a `LensResult` or a
  `LensEvaluation` offers, as frozen `Metric` records (name, description,
  reader, axis label, colour map, scale, aliases, better); `get_metric` resolves
  aliases. Plots and the CLI read their metric choices from it.
* ``_decoders``  how a residual vector becomes logits: final norm + ``W_U`` (+ the model's
  logit soft-cap), ``W_E^T``, the last K blocks, per-site maps.
* ``_kernels``   the work-buffer kernels of the statistics engine (padded-width buffers,
  a readout writing logits in place, blocked top-k, packed rank counts, blocked dot products).
* ``_stats``     the chunked statistics engine (`lens_statistics`: top-k, ranks, KL
  both ways, entropy in bounded memory), the check that the decoded final stream
  reproduces the model's own log-softmax (else `ModelError`), and THE
  KL / log-softmax kernel (`log_softmax`, `kl_divergence`) that evaluation and
  training share.
* ``_result``    `LensResult`, what every lens returns.
* ``_lens``      the abstract lens analyzer both lenses derive from (sites, decoder, engine).
* ``_logit``     `LogitLens` and `logit_lens`.
* ``_tuned``     learned per-site affine `Translators`, `TunedLens`, `tuned_lens`.
* ``_tuned_io``  the tuned lens on disk (lensbox's folder via ``lensbox._io``; v1 folders;
  the tuned-lens library's ``params.pt`` import).
* ``_jacobian``  `JacobianDecoder` (a TransformerLens ``JacobianLens`` as a decoder).
* ``_evaluate``  several lenses side by side on held-out text (`evaluate`).
* ``_geometry``  residual-stream norms and the token-plane trajectory.
* ``_attribution`` direct logit attribution (`logit_attribution`, `LogitAttribution`): each
  component's (embeddings, attn_out / heads, mlp_out) share of a token's logit with the final
  norm's scale frozen, projected inside the forward pass (heads per chunk of positions).
* ``_component`` the component lens (`component_lens`, `ComponentLens`, `ComponentLensResult`):
  what each component (embeddings, ``attn_out.i``, ``head.i.h``, ``mlp_out.i``) writes, decoded with
  the final norm's scale frozen (additive) or on its own; chunked over positions and vocabulary.
* ``_direction`` direction readout (`read_direction`, `DirectionLens`): arbitrary
  vectors through ``W_U``, top and bottom tokens in chunks of directions x vocabulary
  (`vocab_extremes`, the bounded-memory top/bottom-k the component lens shares).

Layering: ``lenses`` imports ``core``, ``data`` (windows) and the bottom modules
(``_errors``, ``_io``); never ``training``, ``probes``, ``plot`` (``.plot()`` methods import
``lensbox.plot`` lazily) or ``cli``.
"""

from ._attribution import LogitAttribution as LogitAttribution
from ._attribution import logit_attribution as logit_attribution
from ._decoders import Decoder as Decoder
from ._decoders import EmbedTransposeDecoder as EmbedTransposeDecoder
from ._decoders import LastBlocksDecoder as LastBlocksDecoder
from ._jacobian import JacobianDecoder as JacobianDecoder
from ._component import ComponentLens as ComponentLens
from ._component import ComponentLensResult as ComponentLensResult
from ._component import component_lens as component_lens
from ._direction import DirectionLens as DirectionLens
from ._direction import DirectionReadout as DirectionReadout
from ._direction import read_direction as read_direction
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
    "ComponentLens", "ComponentLensResult", "Decoder", "DirectionLens", "DirectionReadout", "EmbedTransposeDecoder", "JacobianDecoder", "LastBlocksDecoder", "LensEvaluation", "LensResult",
    "LogitAttribution", "LogitLens", "METRICS", "METRIC_TABLE", "Metric", "ResidualNorms", "TokenPlaneTrajectory", "Translators",
    "TunedLens", "component_lens", "evaluate", "get_metric", "kl_divergence", "log_softmax", "logit_attribution", "logit_lens", "metric_names", "read_direction", "residual_norms",
    "token_plane_trajectory", "tuned_lens",
]
