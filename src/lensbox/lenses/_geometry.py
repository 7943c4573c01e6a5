"""Residual-stream geometry: norms across layers, and paths through a two-token plane.

Two data helpers behind the "directions and magnitude" pictures:

* `residual_norms` — the Euclidean norm of the residual stream at each site and
  position (the stream grows along the depth of the model; its size sets how
  confident a decoded distribution is, its direction which tokens it favours);
* `token_plane_trajectory` — one position's residual stream at every site,
  after the model's final norm, expressed in the plane spanned by the unembedding
  directions of two tokens (e.g. " Mary" and " John").

Both are analyzers (``residual_norms`` and ``token_plane``) and so can share one forward
pass with other analyzers through `lensbox.analyze`. Plotting lives in
``lensbox.plot``; nothing here draws.
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..core._adapter import Inputs, ModelAdapter, ModelLike
from .. import _html
from .._errors import InputError
from ..core import Analyzer, analyze
from ..core._hooks import FwdHooks
from ..core._sites import Site, SitesSpec
from ..core._tokens import TokenLike


# --------------------------------------------------------------------------- norms
@dataclasses.dataclass
class ResidualNorms:
    """Norm of the residual stream per site and position.

    ``norms[b, i, p]`` is ``‖resid‖₂`` at ``sites[i]`` and position ``p`` of batch row ``b``
    (the raw stream, before any normalisation), computed in float32.
    """

    model_name: str
    sites: List[Site]
    tokens: Int[Tensor, "batch pos"]
    input_labels: List[List[str]]
    norms: Float[Tensor, "batch layer pos"]

    def to_pandas(self) -> Any:
        """One row per (batch, site, position): ``batch, site, layer_index, depth, pos, input_token, norm``."""
        import pandas as pd

        rows: Dict[str, List[Any]] = {k: [] for k in ("batch", "site", "layer_index", "depth", "pos", "input_token", "norm")}
        values = self.norms.tolist()
        for b, per_batch in enumerate(values):
            for i, site in enumerate(self.sites):
                for p, v in enumerate(per_batch[i]):
                    rows["batch"].append(b)
                    rows["site"].append(site.name)
                    rows["layer_index"].append(i)
                    rows["depth"].append(site.depth)
                    rows["pos"].append(p)
                    rows["input_token"].append(self.input_labels[b][p])
                    rows["norm"].append(v)
        return pd.DataFrame(rows)

    def table(self, *, batch: int = 0, max_positions: int = 12, width: int = 9) -> str:
        """A text table of the norms: one row per site, one column per position (the last ``max_positions``)."""
        labels = self.input_labels[batch]
        cols = list(range(max(0, len(labels) - max_positions), len(labels)))
        clip = lambda t: (t if len(t) <= width else t[: width - 1] + "…").rjust(width)  # noqa: E731
        lines = ["site".ljust(14) + " ".join(clip(labels[c]) for c in cols)]
        for i, site in enumerate(self.sites):
            lines.append(site.name.ljust(14) + " ".join(clip(f"{float(self.norms[batch, i, c]):.4g}") for c in cols))
        return "\n".join(lines + ["residual-stream norm ‖resid‖₂ per site (rows) and input position (columns)"])

    def _repr_html_(self, max_positions: int = 24) -> str:
        """Jupyter's rich display: the norms of batch row 0, sites as rows, the last ``max_positions`` positions."""
        labels = self.input_labels[0]
        cols = _html.last_columns(len(labels), max_positions)
        rows = [[s.name] + [float(self.norms[0, i, c]) for c in cols] for i, s in enumerate(self.sites)]
        return _html.block(
            _html.heading("ResidualNorms", f"of {self.model_name}: ‖resid‖₂ per site and input position"
                                           + ("" if len(cols) == len(labels) else f" (the last {len(cols)} of {len(labels)})")),
            _html.table(["site", *(labels[c] for c in cols)], rows),
        )

    def __repr__(self) -> str:
        b, l, p = self.norms.shape
        return (
            f"ResidualNorms(model={self.model_name!r}, batch={b}, sites={l} "
            f"[{self.sites[0].name} .. {self.sites[-1].name}], positions={p})"
        )


def stream_norms(
    streams: Mapping[Site, Float[Tensor, "batch pos d_model"]], sites: Sequence[Site]
) -> Float[Tensor, "batch layer pos"]:
    """``‖resid‖₂`` over ``d_model`` for each site, stacked on a layer axis (float32, CPU)."""
    return torch.stack([streams[s].float().norm(dim=-1).cpu() for s in sites], dim=1)


class _ChosenSitesAnalyzer(Analyzer):
    """An analyzer of the sites the user names: ``sites`` (default: the embeddings and every
    resid_post), plus each block's resid_mid with ``include_mid``."""

    def __init__(self, sites: SitesSpec = None, *, include_mid: bool = False) -> None:
        self.site_spec = sites
        self.include_mid = include_mid

    def sites(self, adapter: ModelAdapter) -> List[Site]:
        return adapter.sites(self.site_spec, include_mid=self.include_mid)


class ResidualNormsAnalyzer(_ChosenSitesAnalyzer):
    """Analyzer ``residual_norms``: the residual-stream norm at each site and position.

    Args:
        sites: which streams (default: the embeddings and every resid_post).
        include_mid: also each block's resid_mid.
    """

    name = "residual_norms"

    def run(
        self,
        adapter: ModelAdapter,
        streams: Dict[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
    ) -> ResidualNorms:
        sites = self.sites(adapter)
        return ResidualNorms(
            model_name=adapter.model_name,
            sites=sites,
            tokens=tokens.detach().cpu(),
            input_labels=[adapter.token_labels(tokens[b].tolist()) for b in range(tokens.shape[0])],
            norms=stream_norms(streams, sites),
        )


def residual_norms(
    model: ModelLike,
    inputs: Inputs,
    *,
    sites: SitesSpec = None,
    include_mid: bool = False,
    cache: Optional[Mapping[str, Tensor]] = None,
    prepend_bos: Optional[bool] = None,
    fwd_hooks: FwdHooks = None,
) -> ResidualNorms:
    """Norm of the residual stream at each site and position (runs the model once).

    ``fwd_hooks`` edit that forward pass (see `lensbox.analyze`).

    Examples:
        ```python
        norms = lensbox.residual_norms(model, "The capital of France is")
        norms.norms[0, :, -1]   # last position, embeddings .. final layer
        ```
    """
    analyzer = ResidualNormsAnalyzer(sites, include_mid=include_mid)
    return analyze(model, inputs, [analyzer], cache=cache, prepend_bos=prepend_bos, fwd_hooks=fwd_hooks)[analyzer.name]


# --------------------------------------------------------------------------- token plane
@dataclasses.dataclass
class TokenPlaneTrajectory:
    """One position's path across sites, in the plane of two tokens' unembedding directions.

    Let ``u_a`` and ``u_b`` be the unembedding columns (``W_U[:, id]``) of ``tokens[0]`` and
    ``tokens[1]``. The plane they span gets the orthonormal basis ``e1 = u_a / ‖u_a‖`` and
    ``e2`` = the part of ``u_b`` orthogonal to ``e1``, normalised. For each site, ``x`` is the
    residual stream at position ``pos`` after the model's final norm, and

    * ``coords[b, i] = (x·e1, x·e2)`` — the orthogonal projection of ``x`` onto the plane;
    * ``logits[b, i] = (x·u_a + b_U[a], x·u_b + b_U[b])`` — the logit-lens logits of the two
      tokens. Since ``u_a`` and ``u_b`` lie in the plane, ``logits = coords @ directions.T + bias``
      exactly: the projection loses nothing about the two tokens' logits (but everything
      about the other tokens');
    * ``directions`` — ``u_a`` and ``u_b`` in plane coordinates (rows), ``bias`` — their ``b_U``.

    The lens prefers token a over token b where ``logits[..., 0] > logits[..., 1]``; in the
    plane that boundary is the straight line ``c · (d_a - d_b) + (bias_a - bias_b) = 0``.
    """

    model_name: str
    sites: List[Site]
    tokens: Int[Tensor, "batch pos"]
    input_labels: List[List[str]]
    pos: int
    token_ids: Tuple[int, int]
    token_labels: Tuple[str, str]
    coords: Float[Tensor, "batch layer 2"]
    logits: Float[Tensor, "batch layer 2"]
    directions: Float[Tensor, "2 2"]
    bias: Float[Tensor, "2"]

    def to_pandas(self) -> Any:
        """One row per (batch, site): ``batch, site, depth, x, y, logit_a, logit_b``."""
        import pandas as pd

        rows: Dict[str, List[Any]] = {k: [] for k in ("batch", "site", "depth", "x", "y", "logit_a", "logit_b")}
        for b in range(self.coords.shape[0]):
            for i, site in enumerate(self.sites):
                rows["batch"].append(b)
                rows["site"].append(site.name)
                rows["depth"].append(site.depth)
                rows["x"].append(float(self.coords[b, i, 0]))
                rows["y"].append(float(self.coords[b, i, 1]))
                rows["logit_a"].append(float(self.logits[b, i, 0]))
                rows["logit_b"].append(float(self.logits[b, i, 1]))
        return pd.DataFrame(rows)

    def table(self, *, batch: int = 0) -> str:
        """A text table: per site, the plane coordinates and the two tokens' logit-lens logits."""
        a, b = self.token_labels
        lines = [f"{'site':<14}{'x':>10}{'y':>10}{'logit ' + a:>16}{'logit ' + b:>16}"]
        for i, site in enumerate(self.sites):
            x, y = (float(v) for v in self.coords[batch, i])
            la, lb = (float(v) for v in self.logits[batch, i])
            lines.append(f"{site.name:<14}{x:>10.3f}{y:>10.3f}{la:>16.3f}{lb:>16.3f}")
        return "\n".join(lines + [f"position {self.pos} in the plane of {a!r} and {b!r}"])

    def _repr_html_(self) -> str:
        """Jupyter's rich display: per site (batch row 0) the plane coordinates and the two tokens' logits."""
        a, b = self.token_labels
        rows = [[s.name, *(float(v) for v in self.coords[0, i]), *(float(v) for v in self.logits[0, i])]
                for i, s in enumerate(self.sites)]
        return _html.block(
            _html.heading("TokenPlaneTrajectory", f"of {self.model_name}: position {self.pos} "
                                                  f"({self.input_labels[0][self.pos]}) in the plane of {a!r} and {b!r}"),
            _html.table(["site", "x", "y", f"logit {a}", f"logit {b}"], rows),
        )

    def __repr__(self) -> str:
        a, b = self.token_labels
        return (
            f"TokenPlaneTrajectory(model={self.model_name!r}, tokens=({a!r}, {b!r}), pos={self.pos}, "
            f"sites={len(self.sites)} [{self.sites[0].name} .. {self.sites[-1].name}])"
        )


class TokenPlaneAnalyzer(_ChosenSitesAnalyzer):
    """Analyzer ``token_plane``: a position's path across sites in the plane of two token directions.

    Args:
        tokens: the two tokens (text of one token each, e.g. ``(" Mary", " John")``, or ids).
        pos: the position to follow (negative counts from the end; default the last).
        sites: which streams (default: the embeddings and every resid_post).
        include_mid: also each block's resid_mid.
    """

    name = "token_plane"

    def __init__(
        self,
        tokens: Sequence[TokenLike] = (" Mary", " John"),
        *,
        pos: int = -1,
        sites: SitesSpec = None,
        include_mid: bool = False,
    ) -> None:
        if isinstance(tokens, (str, int)) or len(tokens) != 2:
            raise InputError(
                "The token plane needs exactly two tokens.",
                expected="a pair such as (' Mary', ' John')",
                received=repr(tokens),
                fix="pass tokens=(' Mary', ' John')",
            )
        super().__init__(sites, include_mid=include_mid)
        self.pair = (tokens[0], tokens[1])
        self.pos = pos

    def run(
        self,
        adapter: ModelAdapter,
        streams: Dict[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
    ) -> TokenPlaneTrajectory:
        sites = self.sites(adapter)
        n = tokens.shape[1]
        if not -n <= self.pos < n:
            raise InputError(
                "Position out of range.",
                expected=f"a position in 0..{n - 1} (or negative from the end)",
                received=str(self.pos),
                fix="pick a position inside the input, e.g. pos=-1 for the last token",
            )
        pos = self.pos % n
        ids = (adapter.token_id(self.pair[0]), adapter.token_id(self.pair[1]))
        if ids[0] == ids[1]:
            raise InputError(
                "The two tokens are the same token; they span no plane.",
                expected="two different tokens",
                received=f"both are id {ids[0]} ({adapter.token_label(ids[0])!r})",
                fix="choose two different tokens, e.g. (' Mary', ' John')",
            )
        with torch.no_grad():
            u = adapter.W_U[:, list(ids)].float().T.cpu()  # [2, d_model]
            bias = adapter.b_U[list(ids)].float().cpu()
            e1 = u[0] / u[0].norm()
            rest = u[1] - (u[1] @ e1) * e1
            if float(rest.norm()) <= 1e-6 * float(u[1].norm()):
                raise InputError(
                    "The two tokens' unembedding directions are parallel; they span no plane.",
                    expected="two tokens with different unembedding directions",
                    received=f"{adapter.token_label(ids[0])!r} and {adapter.token_label(ids[1])!r}",
                    fix="choose another pair of tokens",
                )
            e2 = rest / rest.norm()
            basis = torch.stack([e1, e2])  # [2, d_model]
            normed = torch.stack(
                [adapter.final_norm(streams[s][:, pos]).float().cpu() for s in sites], dim=1
            )  # [batch, layer, d_model]
            coords = normed @ basis.T
            logits = normed @ u.T + bias
            directions = u @ basis.T
        return TokenPlaneTrajectory(
            model_name=adapter.model_name,
            sites=sites,
            tokens=tokens.detach().cpu(),
            input_labels=[adapter.token_labels(tokens[b].tolist()) for b in range(tokens.shape[0])],
            pos=pos,
            token_ids=ids,
            token_labels=(adapter.token_label(ids[0]), adapter.token_label(ids[1])),
            coords=coords,
            logits=logits,
            directions=directions,
            bias=bias,
        )


def token_plane_trajectory(
    model: ModelLike,
    inputs: Inputs,
    tokens: Sequence[TokenLike] = (" Mary", " John"),
    *,
    pos: int = -1,
    sites: SitesSpec = None,
    include_mid: bool = False,
    cache: Optional[Mapping[str, Tensor]] = None,
    prepend_bos: Optional[bool] = None,
    fwd_hooks: FwdHooks = None,
) -> TokenPlaneTrajectory:
    """Follow position ``pos`` across sites in the plane of two tokens' unembedding directions.

    ``fwd_hooks`` edit the forward pass (see `lensbox.analyze`).

    Examples:
        ```python
        traj = lensbox.token_plane_trajectory(
            model, "John and Mary went to the bar. John bought a drink for", (" Mary", " John"))
        traj.logits[0, -1]   # final-layer logits of ' Mary' and ' John'
        ```
    """
    analyzer = TokenPlaneAnalyzer(tokens, pos=pos, sites=sites, include_mid=include_mid)
    return analyze(model, inputs, [analyzer], cache=cache, prepend_bos=prepend_bos, fwd_hooks=fwd_hooks)[analyzer.name]
