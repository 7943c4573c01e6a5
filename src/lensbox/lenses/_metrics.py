"""The metric table: every statistic a lens result or a lens evaluation offers, in one place.

Each `Metric` says what a short name means (``description``), how to read it from
a `LensResult` (``read``: ``[batch, site, pos]`` values), how to draw it
(``label`` for an axis or colour bar, a matplotlib colour map ``cmap`` and a ``scale``)
and which direction is ``better``. Aliases resolve to one record through
`get_metric`. ``LensResult.metric``, ``METRICS``, the plots, ``LensEvaluation`` and
the CLI's ``--metric`` choices are all built from `METRIC_TABLE`.

Scales: ``"prob"`` values in 0..1 (a fixed 0..1 colour range); ``"rank"`` 0-based ranks,
-1 where undefined (plots show them 1-based on a log colour scale); ``"linear"`` anything
else (plots clip the colour range at the 98th percentile).

Metrics with ``read=None`` exist only in a `LensEvaluation` (they need
the whole evaluation text: bits per byte, top-1 agreement); ``evaluation=True`` marks the
metrics a ``LensEvaluation`` reports.
"""

import dataclasses
import difflib
from typing import Any, Callable, Dict, Literal, Optional, Tuple

from jaxtyping import Float
from torch import Tensor

from .._errors import InputError

Scale = Literal["prob", "linear", "rank"]
Better = Literal["lower", "higher"]
MetricScope = Literal["result", "evaluation", "any"]
#: ``read(result)`` -> ``[batch, site, pos]`` float values of a `LensResult`.
Reader = Callable[[Any], Float[Tensor, "batch site pos"]]


@dataclasses.dataclass(frozen=True)
class Metric:
    """One statistic: its name, meaning, how it is read from a result and how it is drawn.

    Attributes:
        name: the canonical short name (``'kl'``).
        description: one line of plain English (``'KL(final || layer), nats'``).
        label: axis / colour-bar label.
        cmap: matplotlib colour map for heatmaps.
        scale: ``'prob'`` (0..1), ``'rank'`` (0-based, -1 = undefined) or ``'linear'``.
        better: ``'lower'`` or ``'higher'``.
        read: ``result -> [batch, site, pos]`` float tensor; ``None`` for evaluation-only metrics.
        aliases: other accepted names.
        evaluation: whether `LensEvaluation` reports it (per lens and site).
    """

    name: str
    description: str
    label: str
    cmap: str
    scale: Scale
    better: Better
    read: Optional[Reader]
    aliases: Tuple[str, ...] = ()
    evaluation: bool = False

    @property
    def in_result(self) -> bool:
        """Whether a `LensResult` offers this metric."""
        return self.read is not None

    def values(self, result: Any, *, batch: Optional[int] = None) -> Tensor:
        """``[batch, site, pos]`` values of ``result`` (``[site, pos]`` for one ``batch`` row)."""
        if self.read is None:
            raise InputError(
                f"Metric {self.name!r} is reported by lens evaluations only, not by a single LensResult.",
                expected="one of " + ", ".join(metric_names("result")),
                received=repr(self.name),
                fix=f"use lensbox.evaluate(...) for {self.name!r}, or pick a per-cell metric",
            )
        t = self.read(result)
        return t if batch is None else t[batch]


def _required(result: Any, field: str, what: str) -> Tensor:
    """``result.<field>``, or an InputError saying which lens fills it."""
    value = getattr(result, field)
    if value is None:
        raise InputError(
            f"This result carries no {what}.",
            expected=f"a LensResult from lensbox.logit_lens / tuned_lens (they fill {field})",
            received=f"{field}=None",
            fix="rerun the lens with this version of lensbox",
        )
    return value


def _top_logits(result: Any) -> Tensor:
    return _required(result, "top_logits", "raw logits")[..., 0]


def _input_rank(result: Any) -> Tensor:
    return _required(result, "input_rank", "input-token ranks").float()


_KL = "magma_r"

#: THE metric table (order: how lists of metrics are shown).
METRIC_TABLE: Tuple[Metric, ...] = (
    Metric(
        "top1", "top-1 token probability", "p(top-1)", "Blues", "prob", "higher",
        lambda r: r.top_logprobs[..., 0].exp(), aliases=("prob", "top1_prob"),
    ),
    Metric("logit", "raw logit of the top-1 token (before softmax)", "logit of top-1", "viridis", "linear", "higher",
           _top_logits, aliases=("top1_logit",)),
    Metric("top1_logprob", "log-probability of the top-1 token, nats", "log p(top-1), nats", "Blues", "linear",
           "higher", lambda r: r.top_logprobs[..., 0]),
    Metric("logprob", "log-prob of the next token, nats", "log p(next token), nats", "Blues", "linear", "higher",
           lambda r: r.next_logprob, aliases=("next_logprob",)),
    Metric("next_prob", "probability of the next token", "p(next token)", "Blues", "prob", "higher",
           lambda r: r.next_logprob.exp()),
    Metric("rank", "rank of the next token (0 = top-1)", "rank of next token (1 = top)", "magma_r", "rank", "lower",
           lambda r: r.next_rank.float(), aliases=("next_rank",)),
    Metric("final_rank", "rank of the final layer's top-1 (0 = agrees)", "rank of final top-1 (1 = top)", "magma_r",
           "rank", "lower", lambda r: r.final_top1_rank.float(), aliases=("final_top1_rank",)),
    Metric("input_rank", "rank of the input token, the token at this position (0 = top-1)",
           "rank of input token (1 = top)", "magma_r", "rank", "lower", _input_rank),
    Metric("kl", "KL(final || layer), nats", "KL(final ‖ layer), nats", _KL, "linear", "lower",
           lambda r: r.kl_final, aliases=("kl_final", "compare_final"), evaluation=True),
    Metric("kl_reverse", "KL(layer || final), nats", "KL(layer ‖ final), nats", _KL, "linear", "lower",
           lambda r: r.kl_final_reverse, aliases=("kl_final_reverse",)),
    Metric("kl_input", "KL(input layer || layer), nats", "KL(input ‖ layer), nats", _KL, "linear", "lower",
           lambda r: r.kl_input, aliases=("compare_first", "compare_input")),
    Metric("kl_input_reverse", "KL(layer || input layer), nats", "KL(layer ‖ input), nats", _KL, "linear", "lower",
           lambda r: r.kl_input_reverse),
    Metric("entropy", "entropy, nats", "entropy, nats", _KL, "linear", "lower", lambda r: r.entropy),
    Metric("ce", "cross-entropy against the next token, nats", "cross-entropy, nats", _KL, "linear", "lower",
           lambda r: r.cross_entropy, aliases=("cross_entropy",), evaluation=True),
    Metric("bpb", "cross-entropy against the next token, bits per byte", "bits per byte", _KL, "linear", "lower",
           None, evaluation=True),
    Metric("top1_agree", "top-1 agreement with the final layer", "top-1 agreement", "Blues", "prob", "higher",
           None, evaluation=True),
)

_BY_NAME: Dict[str, Metric] = {}
for _m in METRIC_TABLE:
    for _key in (_m.name, *_m.aliases):
        if _key in _BY_NAME:  # the table is data: keep it free of clashes
            raise RuntimeError(f"metric name {_key!r} appears twice in METRIC_TABLE")
        _BY_NAME[_key] = _m
del _m, _key


def _in_scope(m: Metric, scope: MetricScope) -> bool:
    return scope == "any" or (m.in_result if scope == "result" else m.evaluation)


def metric_names(scope: MetricScope = "result", *, aliases: bool = False) -> Tuple[str, ...]:
    """Canonical names in table order (``aliases=True`` adds every alias after its metric).

    ``scope``: ``'result'`` (what ``LensResult.metric`` reads), ``'evaluation'`` (what
    ``LensEvaluation`` reports) or ``'any'``.
    """
    out = []
    for m in METRIC_TABLE:
        if _in_scope(m, scope):
            out += [m.name, *m.aliases] if aliases else [m.name]
    return tuple(out)


def get_metric(name: str, *, scope: MetricScope = "any") -> Metric:
    """The `Metric` called ``name`` (or one of its aliases).

    Raises `InputError` listing the valid names when ``name`` is unknown
    or not offered in ``scope`` (``'result'``: by a ``LensResult``; ``'evaluation'``: by a
    ``LensEvaluation``).
    """
    m = _BY_NAME.get(name) if isinstance(name, str) else None
    if m is None or not _in_scope(m, scope):
        valid = metric_names(scope)
        close = difflib.get_close_matches(str(name), metric_names(scope, aliases=True), n=1)
        where = {"result": " for a LensResult", "evaluation": " for a LensEvaluation", "any": ""}[scope]
        raise InputError(
            f"Unknown metric {name!r}{where}.",
            expected="one of " + ", ".join(valid),
            received=repr(name),
            fix=f"did you mean {close[0]!r}?" if close else "pick one of the expected metrics",
        )
    return m


#: Public name -> description of every metric a LensResult offers (kept for compatibility).
METRICS: Dict[str, str] = {m.name: m.description for m in METRIC_TABLE if m.in_result}

__all__ = ["Metric", "METRIC_TABLE", "METRICS", "get_metric", "metric_names"]
