"""The typed result every lens returns."""

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from jaxtyping import Float, Int
from torch import Tensor

from .. import _html
from .._errors import InputError, SiteError
from ..core._sites import Site, SiteLike, resolve_site
from ._metrics import METRICS as METRICS, get_metric



@dataclasses.dataclass
class LensResult:
    """Per-site, per-position statistics of one lens over one batch of inputs.

    Every ``[batch, layer, pos]`` field has one row per entry of ``sites`` (the
    "layer" axis). Position ``i`` predicts token ``i + 1``; the last position has no
    next token, so its ``next_logprob``/``cross_entropy`` are NaN and ``next_rank`` is -1.
    KL values are in nats: ``kl_final`` is KL(final || layer), ``kl_final_reverse`` is
    KL(layer || final), ``kl_input`` is KL(input layer || layer) and
    ``kl_input_reverse`` is KL(layer || input layer). Ranks are 0-based (0 = top-1);
    ``input_rank`` is the rank of the token *at* each position (the input token, as in the
    logit-lens post's "compare with the input" view), defined at every position.
    """

    lens: str
    model_name: str
    decoder: str
    sites: List[Site]
    tokens: Int[Tensor, "batch pos"]
    input_labels: List[List[str]]
    top_ids: Int[Tensor, "batch layer pos k"]
    top_logprobs: Float[Tensor, "batch layer pos k"]
    top_labels: List[List[List[List[str]]]]
    #: The model's own top-1 token at each position; -1 where the final stream was non-finite (``on_nonfinite='mark'``).
    final_top1: Int[Tensor, "batch pos"]
    next_logprob: Float[Tensor, "batch layer pos"]
    next_rank: Int[Tensor, "batch layer pos"]
    final_top1_logprob: Float[Tensor, "batch layer pos"]
    final_top1_rank: Int[Tensor, "batch layer pos"]
    kl_final: Float[Tensor, "batch layer pos"]
    kl_final_reverse: Float[Tensor, "batch layer pos"]
    kl_input: Float[Tensor, "batch layer pos"]
    kl_input_reverse: Float[Tensor, "batch layer pos"]
    entropy: Float[Tensor, "batch layer pos"]
    cross_entropy: Float[Tensor, "batch layer pos"]

    n_model_layers: int
    #: Raw (pre-softmax) logits of the top-k tokens; ``None`` in results built without them.
    top_logits: Optional[Float[Tensor, "batch layer pos k"]] = None
    #: 0-based rank of the input token (the token at each position) under each site's decoding;
    #: ``None`` in results built without it.
    input_rank: Optional[Int[Tensor, "batch layer pos"]] = None

    # ------------------------------------------------------------------ lookup
    def site_index(self, site: SiteLike) -> int:
        """Row of ``site`` on the layer axis (accepts Site, 'resid_post.3', 3, 'embed', 'final')."""
        s = resolve_site(site, self.n_model_layers)
        if s not in self.sites:
            raise SiteError(
                f"Site {s.name} is not in this result.",
                expected="one of " + ", ".join(x.name for x in self.sites),
                received=s.name,
                fix="rerun the lens with that site included (sites=...)",
            )
        return self.sites.index(s)

    def _check_pos(self, pos: int) -> int:
        n = self.tokens.shape[1]
        if not -n <= pos < n:
            raise InputError(
                "Position out of range.",
                expected=f"a position in 0..{n - 1} (or negative from the end)",
                received=str(pos),
                fix="use result.tokens.shape[1] to see the length",
            )
        return pos % n

    def _check_batch(self, batch: int) -> int:
        n = self.tokens.shape[0]
        if not -n <= batch < n:
            raise InputError(
                "Batch row out of range.",
                expected=f"a batch row in 0..{n - 1} (or negative from the end): this result has {n} row(s)",
                received=f"batch={batch}",
                fix="use result.tokens.shape[0] to see how many inputs the result holds",
            )
        return batch % n

    def top_tokens(self, site: SiteLike, pos: int, *, batch: int = 0) -> List[Tuple[str, float]]:
        """The top-k tokens at ``(site, pos)`` as ``(label, probability)`` pairs."""
        i, p = self.site_index(site), self._check_pos(pos)
        batch = self._check_batch(batch)
        probs = self.top_logprobs[batch, i, p].exp().tolist()
        return list(zip(self.top_labels[batch][i][p], probs))

    def metric(self, name: str) -> Float[Tensor, "batch layer pos"]:
        """A statistic by short name or alias (see ``lensbox.METRICS`` and `get_metric`)."""
        return get_metric(name, scope="result").values(self)

    def mean_over_positions(self, name: str, *, batch: Optional[int] = None) -> List[float]:
        """Per-site mean of a metric, skipping undefined (NaN) cells such as the last position's next-token stats."""
        t = self.metric(name)
        t = t if batch is None else t[self._check_batch(batch)][None]
        out = []
        for i in range(len(self.sites)):
            v = t[:, i].reshape(-1)
            v = v[~v.isnan()]
            out.append(float(v.mean()) if v.numel() else math.nan)
        return out

    # ------------------------------------------------------------------ export
    def to_pandas(self) -> Any:
        """One row per (batch, site, position) with every statistic and the top-1 token."""
        import pandas as pd

        b, l, p = self.kl_final.shape
        rows: Dict[str, List[Any]] = {
            k: []
            for k in [
                "batch", "site", "layer_index", "pos", "input_token", "next_token", "top1_token", "top1_prob",
                "final_top1_token", "next_logprob", "next_rank", "final_top1_logprob", "final_top1_rank",
                "kl_final", "kl_final_reverse", "kl_input", "kl_input_reverse", "entropy", "cross_entropy",
            ]
        }
        stats = {
            name: getattr(self, name).tolist()
            for name in ("next_logprob", "next_rank", "final_top1_logprob", "final_top1_rank", "kl_final",
                         "kl_final_reverse", "kl_input", "kl_input_reverse", "entropy", "cross_entropy")
        }
        top1p = self.top_logprobs[..., 0].exp().tolist()
        if self.input_rank is not None:
            rows["input_rank"] = []
            input_rank = self.input_rank.tolist()
        if self.top_logits is not None:
            rows["top1_logit"] = []
            top1_logit = self.top_logits[..., 0].tolist()
        for bi in range(b):
            labels = self.input_labels[bi]
            final_labels = [self.top_labels[bi][l - 1][pi][0] for pi in range(p)]
            for li, site in enumerate(self.sites):
                for pi in range(p):
                    rows["batch"].append(bi)
                    rows["site"].append(site.name)
                    rows["layer_index"].append(li)
                    rows["pos"].append(pi)
                    rows["input_token"].append(labels[pi])
                    rows["next_token"].append(labels[pi + 1] if pi + 1 < p else None)
                    rows["top1_token"].append(self.top_labels[bi][li][pi][0])
                    rows["top1_prob"].append(top1p[bi][li][pi])
                    if self.top_logits is not None:
                        rows["top1_logit"].append(top1_logit[bi][li][pi])
                    if self.input_rank is not None:
                        v = input_rank[bi][li][pi]
                        rows["input_rank"].append(None if v < 0 else v)
                    rows["final_top1_token"].append(final_labels[pi])
                    for name, val in stats.items():
                        v = val[bi][li][pi]
                        rows[name].append(None if name == "next_rank" and v < 0 else v)
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ display
    def table(self, *, batch: int = 0, metric: str = "top1", width: int = 10, max_positions: int = 24) -> str:
        """A text table: one row per site, one column per position, top-1 guesses (and a metric).

        Ranks are shown 1-based (``#1`` = the top token), as in the plots; the tensors hold them 0-based.
        """
        batch = self._check_batch(batch)
        labels = self.input_labels[batch]
        n = len(labels)
        cols = list(range(max(0, n - max_positions), n))
        clip = lambda s: (s if len(s) <= width else s[: width - 1] + "…").ljust(width)  # noqa: E731
        m = get_metric(metric, scope="result")
        values = m.values(self, batch=batch) if m.name != "top1" else None
        head = "site".ljust(14) + " ".join(clip(labels[c]) for c in cols)
        lines = [head, "-" * len(head)]
        for i, site in enumerate(self.sites):
            cells = []
            for c in cols:
                tok = self.top_labels[batch][i][c][0]
                if values is not None:
                    v = float(values[i, c])
                    if not (math.isnan(v) or (m.scale == "rank" and v < 0)):
                        tok = f"{tok} #{int(v) + 1}" if m.scale == "rank" else f"{tok} {v:.3g}"
                cells.append(clip(tok))
            lines.append(site.name.ljust(14) + " ".join(cells))
        note = (
            f"{self.lens} via {self.decoder}; rows = sites, columns = input positions (each predicts the next token); "
            f"last position has no next-token target"
        )
        if values is not None:
            note += f"; beside each token: {m.name} = {m.description}"
            if m.scale == "rank":
                note += ", shown 1-based (#1 = top)"
        if n > max_positions:
            note += f"; showing the last {max_positions} of {n} positions"
        return "\n".join(lines + [note])

    def __repr__(self) -> str:
        b, l, p = self.kl_final.shape
        return (
            f"LensResult(lens={self.lens!r}, model={self.model_name!r}, batch={b}, sites={l} "
            f"[{self.sites[0].name} .. {self.sites[-1].name}], positions={p}, k={self.top_ids.shape[-1]})\n"
            + self.table()
        )

    def _repr_html_(self, max_positions: int = 48) -> str:
        """Jupyter's rich display: one row per site, one column per input token (the last
        ``max_positions``); each cell the top-1 token, shaded by its probability (hover: p)."""
        labels = self.input_labels[0]
        cols = _html.last_columns(len(labels), max_positions)
        rows = []
        for i, site in enumerate(self.sites):
            row: List[Any] = [site.name]
            for c in cols:
                prob = math.exp(float(self.top_logprobs[0, i, c, 0]))
                shade = int(255 - 155 * prob) if math.isfinite(prob) else 255
                row.append(_html.cell(self.top_labels[0][i][c][0], style=f"background:rgb({shade},{shade},255)",
                                      title=f"p={prob:.3f}"))
            rows.append(row)
        shown = "" if len(cols) == len(labels) else f"; the last {len(cols)} of {len(labels)} positions"
        return _html.block(
            _html.heading(self.lens, f"on {self.model_name} ({self.decoder}); cell = top-1 token, "
                                     f"shade = its probability{shown}"),
            _html.table(["site", *(labels[c] for c in cols)], rows),
        )


def result_from_stats(
    *,
    lens: str,
    adapter: Any,
    decoder_name: str,
    sites: Sequence[Site],
    tokens: Tensor,
    stats: Dict[str, Tensor],
) -> LensResult:
    """Assemble a `LensResult`, attaching readable labels."""
    b = tokens.shape[0]
    input_labels = [adapter.token_labels(tokens[i].tolist()) for i in range(b)]
    cache: Dict[int, str] = {}

    def label(t: int) -> str:
        if t not in cache:
            cache[t] = adapter.token_label(t)
        return cache[t]

    top_labels = [[[[label(t) for t in cell] for cell in row] for row in layer] for layer in stats["top_ids"].tolist()]
    return LensResult(
        lens=lens,
        model_name=adapter.model_name,
        decoder=decoder_name,
        sites=list(sites),
        tokens=tokens.detach().cpu(),
        input_labels=input_labels,
        top_ids=stats["top_ids"],
        top_logprobs=stats["top_logprobs"],
        top_labels=top_labels,
        final_top1=stats["final_top1"],
        next_logprob=stats["next_logprob"],
        next_rank=stats["next_rank"],
        final_top1_logprob=stats["final_top1_logprob"],
        final_top1_rank=stats["final_top1_rank"],
        kl_final=stats["kl_final"],
        kl_final_reverse=stats["kl_final_reverse"],
        kl_input=stats["kl_input"],
        kl_input_reverse=stats["kl_input_reverse"],
        entropy=stats["entropy"],
        cross_entropy=stats["cross_entropy"],
        n_model_layers=adapter.n_layers,
        top_logits=stats.get("top_logits"),
        input_rank=stats.get("input_rank"),
    )
