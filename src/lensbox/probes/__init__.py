"""lensbox.probes: input-reconstruction probes (what a residual-stream site still knows about the tokens it read).

Internals, one concept per module:

* ``_options``  the probe's options (kinds, decoding rule, penalty, skipped positions) and their checks;
* ``_offsets``  token offsets: which (position, target) pairs of a window serve offset ``k``;
* ``_maps``     the fitted maps: `RidgeProbe`, `SoftmaxProbe`, `SoftmaxSettings`;
* ``_ridge``    `RidgeStatistics` (streamed ``X^T X``, ``X^T Y`` in float64) and ``solve_ridge``;
* ``_softmax``  `fit_softmax`: whitening, the ridge start, minibatch Adam / L-BFGS;
* ``_windows``  texts or token ids -> ``[n, window]`` token windows through ``lensbox.data.windows``;
* ``_probe``    `InputProbe`, the analyzer: ``fit`` = ``begin`` + ``partial_fit`` + ``finalize``;
* ``_probe_io`` the saved-probe format (``probe.json`` + ``probe.safetensors`` through ``lensbox._io``);
* ``_evaluate`` `evaluate_probe` and the streaming ``ProbeEvaluator``;
* ``_result``   `ProbeEvaluation` and the token-frequency buckets;
* ``_relation`` `embedding_relation`: principal angles against ``W_E`` / ``W_U``.

``README.md`` beside this file explains the method in more depth.
"""

from ._maps import RidgeProbe as RidgeProbe, SoftmaxProbe as SoftmaxProbe, SoftmaxSettings as SoftmaxSettings
from ._softmax import fit_softmax as fit_softmax
from ._probe import InputProbe as InputProbe
from ._evaluate import evaluate_probe as evaluate_probe
from ._result import ProbeEvaluation as ProbeEvaluation
from ._relation import embedding_relation as embedding_relation

__all__ = [
    "InputProbe",
    "RidgeProbe",
    "SoftmaxProbe",
    "SoftmaxSettings",
    "fit_softmax",
    "evaluate_probe",
    "ProbeEvaluation",
    "embedding_relation",
]
