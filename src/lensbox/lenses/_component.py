"""The component lens: decode what each part of the model *writes* into the residual stream.

Where the logit lens decodes the stream at a site (everything written so far), the component
lens decodes one component's output: the embeddings, a block's attention output ``attn_out.i``,
one head ``head.i.h``, or a block's MLP output ``mlp_out.i``. Per component and position it
reports the tokens the output *promotes* (largest logits), the ones it *suppresses* (most
negative logits) and its effect on the next input token (that token's logit and rank).

Two conventions for the final norm, chosen with ``norm=`` and stated in the result:

* ``"frozen"`` (default): the final norm's scale is taken from the model's own final residual
  stream at that position and frozen, so norm + unembedding become linear: a component's
  logits are ``k * c(x) * w @ W_U`` (``k`` the frozen scale, ``c`` the LayerNorm centring or the
  identity, ``w`` the norm's weight; no norm bias, no ``b_U``). Contributions then add up: the
  components of the full decomposition plus the bias term ``b @ W_U + b_U`` sum to the model's
  own (pre-soft-cap) logits. TransformerLens's convention for direct logit attribution.
* ``"own"``: each component's output is decoded as if it were a residual stream, with the
  logit lens's own decoder (the final norm normalises it by its *own* size, then ``W_U + b_U``
  and the model's logit soft-cap): the logit-lens post's view of sub-block outputs. Not
  additive, but each component's readout is on the scale of a full prediction.

Work runs over chunks of ``chunk_rows`` (component, position) rows and ``chunk_vocab`` vocabulary
columns (`vocab_extremes`): ``[components, pos, vocab]`` never exists, and ``W_U`` is read once per
chunk of rows, not once per component.
"""

import dataclasses
from typing import Any, Dict, List, Literal, Optional, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .. import _html
from .._errors import InputError, SiteError, check_choice, check_int
from ..core import Analyzer, analyze
from ..core._adapter import Inputs, ModelAdapter, ModelLike
from ..core._hooks import FwdHooks
from ..core._sites import Site, SiteKind, SiteLike, SitesSpec, component_sites, resolve_site
from ._decoders import apply_softcap, logit_softcap
from ._direction import vocab_extremes

ComponentNorm = Literal["frozen", "own"]
"""How a component's output meets the final norm: ``"frozen"`` (the final stream's scale; linear) or ``"own"``."""

COMPONENT_NORM_MEANING: Dict[str, str] = {
    "frozen": (
        "frozen final norm: the final residual stream's norm scale at each position, applied to the component "
        "(centred for LayerNorm, times the norm's weight), then W_U; no norm bias and no b_U, so the components' "
        "logits add up to the model's own (pre-soft-cap) logits minus that bias term"
    ),
    "own": (
        "own norm: each component's output decoded as if it were a residual stream (the final norm scales it by "
        "its own size, then W_U + b_U and the model's logit soft-cap), the logit-lens post's sub-block view"
    ),
}

#: Statistics a `ComponentLensResult` offers per (batch, component, position), for tables and plots.
STATISTICS = {
    "next_logit": "logit of the next input token from this component's output",
    "next_rank": "rank of the next input token in this component's readout (0 = the token it promotes most)",
    "top1_logit": "logit of the token this component promotes most",
    "bottom1_logit": "logit of the token this component suppresses most",
}


@dataclasses.dataclass
class ComponentLensResult:
    """Per component and position: promoted tokens, suppressed tokens, and the effect on the next token.

    ``[batch, component, pos]`` fields have one row per entry of ``components``. Position ``i``'s
    next token is input token ``i + 1``: the last position has none (``next_logit`` NaN,
    ``next_rank`` -1). ``norm`` names the final-norm convention, ``norm_meaning`` spells it out.
    """

    model_name: str
    norm: str
    norm_meaning: str
    components: List[Site]
    tokens: Int[Tensor, "batch pos"]
    input_labels: List[List[str]]
    top_ids: Int[Tensor, "batch component pos k"]
    top_logits: Float[Tensor, "batch component pos k"]
    top_labels: List[List[List[List[str]]]]
    bottom_ids: Int[Tensor, "batch component pos k"]
    bottom_logits: Float[Tensor, "batch component pos k"]
    bottom_labels: List[List[List[List[str]]]]
    next_logit: Float[Tensor, "batch component pos"]
    next_rank: Int[Tensor, "batch component pos"]
    n_model_layers: int

    # ------------------------------------------------------------------ lookup
    def component_index(self, component: SiteLike) -> int:
        """Row of ``component`` (a Site or a name such as ``'attn_out.3'``, ``'head.3.7'``, ``'embed'``)."""
        s = resolve_site(component, self.n_model_layers)
        if s not in self.components:
            raise SiteError(
                f"Component {s.name} is not in this result.",
                expected="one of " + ", ".join(c.name for c in self.components[:12]) + (" ..." if len(self.components) > 12 else ""),
                received=s.name,
                fix="rerun component_lens with that component in sites=",
            )
        return self.components.index(s)

    def statistic(self, name: str) -> Float[Tensor, "batch component pos"]:
        """One of `STATISTICS` as a float ``[batch, component, pos]`` tensor (NaN where undefined)."""
        if name == "next_logit":
            return self.next_logit
        if name == "next_rank":
            out = self.next_rank.float()
            return out.masked_fill(self.next_rank < 0, float("nan"))
        if name == "top1_logit":
            return self.top_logits[..., 0]
        if name == "bottom1_logit":
            return self.bottom_logits[..., 0]
        raise InputError(
            f"Unknown component-lens statistic {name!r}.",
            expected=", ".join(STATISTICS),
            received=repr(name),
            fix="pick one of the expected names",
        )

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

    # ------------------------------------------------------------------ export
    def to_pandas(self) -> Any:
        """One row per (batch, component, position): the top and bottom token, their logits, the next-token effect."""
        import pandas as pd

        cols = ("batch", "component", "layer", "pos", "input_token", "next_token", "top1_token", "top1_logit",
                "bottom1_token", "bottom1_logit", "next_logit", "next_rank")
        rows: Dict[str, List[Any]] = {c: [] for c in cols}
        top, bottom = self.top_logits[..., 0].tolist(), self.bottom_logits[..., 0].tolist()
        nxt, rank = self.next_logit.tolist(), self.next_rank.tolist()
        b, n_c, p = self.next_logit.shape
        for bi in range(b):
            labels = self.input_labels[bi]
            for ci, comp in enumerate(self.components):
                for pi in range(p):
                    rows["batch"].append(bi)
                    rows["component"].append(comp.name)
                    rows["layer"].append(comp.layer)
                    rows["pos"].append(pi)
                    rows["input_token"].append(labels[pi])
                    rows["next_token"].append(labels[pi + 1] if pi + 1 < p else None)
                    rows["top1_token"].append(self.top_labels[bi][ci][pi][0])
                    rows["top1_logit"].append(top[bi][ci][pi])
                    rows["bottom1_token"].append(self.bottom_labels[bi][ci][pi][0])
                    rows["bottom1_logit"].append(bottom[bi][ci][pi])
                    rows["next_logit"].append(nxt[bi][ci][pi])
                    rows["next_rank"].append(None if rank[bi][ci][pi] < 0 else rank[bi][ci][pi])
        return pd.DataFrame(rows)

    def table(self, *, pos: int = -1, batch: int = 0, k: int = 3, width: int = 12) -> str:
        """A text table at one position: per component, what it promotes, what it suppresses, the next token."""
        p = self._check_pos(pos)
        labels = self.input_labels[batch]
        k = min(k, self.top_ids.shape[-1])
        clip = lambda s: s if len(s) <= width else s[: width - 1] + "…"  # noqa: E731
        has_next = p + 1 < len(labels)
        head = f"{'component':<14}{'promotes':<{(width + 8) * k}}{'suppresses':<{(width + 8) * k}}"
        head += f"next {labels[p + 1]!r}: logit (rank)" if has_next else ""
        lines = [head]
        for ci, comp in enumerate(self.components):
            top = " ".join(f"{clip(t):>{width}} {v:+6.2f}" for t, v in zip(self.top_labels[batch][ci][p][:k], self.top_logits[batch, ci, p, :k].tolist()))
            bot = " ".join(f"{clip(t):>{width}} {v:+6.2f}" for t, v in zip(self.bottom_labels[batch][ci][p][:k], self.bottom_logits[batch, ci, p, :k].tolist()))
            line = f"{comp.name:<14}{top:<{(width + 8) * k}}{bot:<{(width + 8) * k}}"
            if has_next:
                line += f"{float(self.next_logit[batch, ci, p]):+7.2f} ({int(self.next_rank[batch, ci, p])})"
            lines.append(line)
        lines.append(f"position {p} (input {labels[p]!r}); logits: {self.norm_meaning}")
        return "\n".join(lines)

    def plot(self, statistic: str = "next_logit", **kwargs: Any) -> Any:
        """Heatmap of ``statistic`` over components x positions (see `lensbox.plot.plot_components`)."""
        from ..plot import plot_components

        return plot_components(self, statistic, **kwargs)

    def __repr__(self) -> str:
        b, c, p = self.next_logit.shape
        return (
            f"ComponentLensResult(model={self.model_name!r}, norm={self.norm!r}, batch={b}, components={c} "
            f"[{self.components[0].name} .. {self.components[-1].name}], positions={p}, k={self.top_ids.shape[-1]})"
        )

    def _repr_html_(self, k: int = 3) -> str:
        """Jupyter's rich display: at the last position of batch row 0, per component, the ``k`` tokens it
        promotes and suppresses most, with their logits."""
        p = self.tokens.shape[1] - 1

        def side(labels: List[str], logits: Tensor) -> str:
            return ", ".join(f"{t} {v:+.2f}" for t, v in zip(labels[:k], logits[:k].tolist()))

        rows = [[c.name, side(self.top_labels[0][ci][p], self.top_logits[0, ci, p]),
                 side(self.bottom_labels[0][ci][p], self.bottom_logits[0, ci, p])] for ci, c in enumerate(self.components)]
        return _html.block(
            _html.heading("component lens", f"on {self.model_name}, last position ({self.input_labels[0][p]})"),
            _html.table(["component", "promotes (logit)", "suppresses (logit)"], rows),
            note=self.norm_meaning,
        )


def _choose_components(adapter: ModelAdapter, spec: SitesSpec) -> List[Site]:
    """``None``/'all': embed + every attn_out and mlp_out; 'heads': embed + every head + every mlp_out; else as given."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("all", "")):
        return component_sites(adapter.n_layers)
    if isinstance(spec, str) and spec.strip().lower() == "heads":
        return component_sites(adapter.n_layers, n_heads=adapter.n_heads)
    chosen = adapter.sites(spec, components=True)
    streams = [s.name for s in chosen if s.is_residual and s.kind is not SiteKind.EMBED]
    if streams:
        raise SiteError(
            "The component lens decodes what components write, not residual streams.",
            expected="component sites: 'embed', 'tok_embed', 'pos_embed', 'attn_out.i', 'mlp_out.i', 'head.i.h'",
            received=f"{', '.join(streams[:6])} in sites={spec!r}",
            fix="use lensbox.logit_lens for residual streams, or name the components (e.g. 'attn_out.3,mlp_out.3')",
        )
    return chosen


class ComponentLens(Analyzer):
    """Analyzer ``component_lens``: each component's output through the final norm and unembedding.

    Args:
        sites: which components (default: ``embed`` and every ``attn_out.i`` and ``mlp_out.i``;
            ``'heads'``: every head instead of ``attn_out``; or names such as ``'attn_out.3,mlp_out.3'``,
            ``'head.3.0,head.3.1'``, ``'tok_embed'``).
        k: how many promoted and suppressed tokens to keep per cell.
        norm: ``"frozen"`` (default, additive) or ``"own"``; see the module docstring.
        chunk_rows: (component, position) rows per work chunk.
        chunk_vocab: vocabulary columns per work chunk; memory is ``chunk_rows x chunk_vocab`` floats.
    """

    name = "component_lens"

    def __init__(
        self,
        sites: SitesSpec = None,
        *,
        k: int = 5,
        norm: ComponentNorm = "frozen",
        chunk_rows: int = 512,
        chunk_vocab: int = 8192,
    ) -> None:
        check_choice("norm", norm, COMPONENT_NORM_MEANING, what="final-norm convention for the component lens",
                     fix="norm='frozen' (the final stream's scale, additive) or norm='own' (each output on its own)")
        for what, value in (("k", k), ("chunk_rows", chunk_rows), ("chunk_vocab", chunk_vocab)):
            check_int(what, value)
        self.site_spec, self.k, self.norm = sites, k, norm
        self.chunk_rows, self.chunk_vocab = chunk_rows, chunk_vocab

    def components(self, adapter: ModelAdapter) -> List[Site]:
        """The components this lens decodes (rows of the result), in depth order."""
        return sorted(_choose_components(adapter, self.site_spec))

    def sites(self, adapter: ModelAdapter) -> List[Site]:
        chosen = set(self.components(adapter))
        if self.norm == "frozen":
            chosen.add(Site.resid_post(adapter.n_layers - 1))  # the frozen scale comes from the final stream
        return sorted(chosen)

    def run(
        self,
        adapter: ModelAdapter,
        streams: Dict[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
    ) -> ComponentLensResult:
        if self.k > adapter.d_vocab:
            raise InputError("k is larger than the vocabulary.", expected=f"k <= {adapter.d_vocab}", received=str(self.k))
        comps = self.components(adapter)
        B, P = tokens.shape
        targets = torch.zeros(B, P, dtype=torch.long, device=adapter.device)
        targets[:, :-1] = tokens[:, 1:].to(adapter.device)
        targets = targets.reshape(-1)
        with torch.no_grad():
            prepare = self._preparer(adapter, streams, B * P)
            bias = adapter.b_U if self.norm == "own" else None
            cap = logit_softcap(adapter) if self.norm == "own" else None
            pieces: List[List[Tensor]] = []

            def flush(rows: Tensor, row_targets: Tensor) -> None:
                ex = vocab_extremes(rows, adapter.W_U, self.k, bias=bias, targets=row_targets, chunk_vocab=self.chunk_vocab)
                pieces.append([apply_softcap(t, cap).cpu() for t in (ex.top_values, ex.bottom_values, ex.target_values)]
                              + [t.cpu() for t in (ex.top_ids, ex.bottom_ids, ex.target_ranks)])

            # The (component, position) rows run through W_U in chunks of chunk_rows rows that may span
            # several components, so W_U is read once per chunk rather than once per component.
            pending: List[Tensor] = []
            pending_targets: List[Tensor] = []
            n_pending = 0
            for comp in comps:
                x = streams[comp].reshape(B * P, -1)
                for r0 in range(0, B * P, self.chunk_rows):
                    rows = prepare(x[r0 : r0 + self.chunk_rows], r0)
                    pending.append(rows)
                    pending_targets.append(targets[r0 : r0 + rows.shape[0]])
                    n_pending += rows.shape[0]
                    while n_pending >= self.chunk_rows:
                        allrows, alltargets = torch.cat(pending), torch.cat(pending_targets)
                        flush(allrows[: self.chunk_rows], alltargets[: self.chunk_rows])
                        pending, pending_targets = [allrows[self.chunk_rows :]], [alltargets[self.chunk_rows :]]
                        n_pending -= self.chunk_rows
            if n_pending:
                flush(torch.cat(pending), torch.cat(pending_targets))
        flat = [torch.cat([piece[j] for piece in pieces]) for j in range(6)]  # [component * B * P, ...]
        stacked = [t.reshape(len(comps), B * P, *t.shape[1:]) for t in flat]
        top_v, bot_v, next_v, top_i, bot_i, next_r = (
            t.reshape(len(comps), B, P, *t.shape[2:]).transpose(0, 1).contiguous() for t in stacked
        )
        next_v[:, :, -1] = float("nan")
        next_r[:, :, -1] = -1
        return self._result(adapter, comps, tokens, top_v, top_i, bot_v, bot_i, next_v, next_r)

    def _preparer(self, adapter: ModelAdapter, streams: Dict[Site, Tensor], n_rows: int) -> Any:
        """A function mapping a chunk of component rows (starting at row ``r0``) to the vectors ``W_U`` reads."""
        if self.norm == "own":
            return lambda rows, r0: adapter.final_norm(rows).float()
        final = streams[Site.resid_post(adapter.n_layers - 1)].reshape(n_rows, -1)
        w, b = adapter.final_norm_affine()
        scale = adapter.final_norm_scale(final, (w, b)).float()  # [rows]
        centre = adapter.final_norm_centers
        w = w.float()

        def frozen(rows: Tensor, r0: int) -> Tensor:
            x = rows.float()
            if centre:
                x = x - x.mean(-1, keepdim=True)
            return x * w * scale[r0 : r0 + rows.shape[0], None]

        return frozen

    def _result(self, adapter: ModelAdapter, comps: List[Site], tokens: Tensor, top_v: Tensor, top_i: Tensor,
                bot_v: Tensor, bot_i: Tensor, next_v: Tensor, next_r: Tensor) -> ComponentLensResult:
        names: Dict[int, str] = {}

        def label(t: int) -> str:
            if t not in names:
                names[t] = adapter.token_label(t)
            return names[t]

        def labels(ids: Tensor) -> List[List[List[List[str]]]]:
            return [[[[label(t) for t in cell] for cell in row] for row in comp] for comp in ids.tolist()]

        return ComponentLensResult(
            model_name=adapter.model_name,
            norm=self.norm,
            norm_meaning=COMPONENT_NORM_MEANING[self.norm],
            components=comps,
            tokens=tokens.detach().cpu(),
            input_labels=[adapter.token_labels(tokens[b].tolist()) for b in range(tokens.shape[0])],
            top_ids=top_i,
            top_logits=top_v,
            top_labels=labels(top_i),
            bottom_ids=bot_i,
            bottom_logits=bot_v,
            bottom_labels=labels(bot_i),
            next_logit=next_v,
            next_rank=next_r,
            n_model_layers=adapter.n_layers,
        )


def component_lens(
    model: ModelLike,
    inputs: Inputs,
    *,
    sites: SitesSpec = None,
    k: int = 5,
    norm: ComponentNorm = "frozen",
    chunk_rows: int = 512,
    chunk_vocab: int = 8192,
    prepend_bos: Optional[bool] = None,
    fwd_hooks: FwdHooks = None,
) -> ComponentLensResult:
    """Decode each component's output (embeddings, attention, heads, MLPs) through the final norm and unembedding.

    Args:
        model: a TransformerBridge or HookedTransformer.
        inputs: text, a list of equal-length texts, or token ids.
        sites: which components: default ``embed`` + every ``attn_out.i`` and ``mlp_out.i``; ``'heads'``
            for every head instead of ``attn_out``; or names (``'attn_out.3,mlp_out.3'``, ``'head.3.7'``).
        k: promoted and suppressed tokens kept per component and position.
        norm: ``"frozen"`` (the final norm's scale from the final residual stream: linear, the
            components add up; TransformerLens's convention) or ``"own"`` (each output normalised
            on its own, as the logit lens would decode it). The result states which.
        chunk_rows: rows of the work chunk ((component, position) rows); memory grows with it, never
            with ``components x positions x vocabulary``.
        chunk_vocab: vocabulary columns of the work chunk.
        prepend_bos: whether text gets the model's BOS token first (default: the model's own setting).
        fwd_hooks: TransformerLens ``(hook name, function)`` pairs that edit the forward pass
            (see `lensbox.analyze`); the components are read from the edited run.

    Returns a `ComponentLensResult` (``.table(pos=...)``, ``.to_pandas()``, ``.plot(statistic)``).

    Examples:
        ```python
        out = lensbox.component_lens(model, "The capital of France is", sites="attn_out.20,mlp_out.20")
        print(out.table(pos=-1))
        ```
    """
    lens = ComponentLens(sites, k=k, norm=norm, chunk_rows=chunk_rows, chunk_vocab=chunk_vocab)
    return analyze(model, inputs, [lens], prepend_bos=prepend_bos, fwd_hooks=fwd_hooks)[lens.name]


__all__ = ["COMPONENT_NORM_MEANING", "ComponentLens", "ComponentLensResult", "ComponentNorm", "STATISTICS", "component_lens"]
