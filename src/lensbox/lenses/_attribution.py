"""Direct logit attribution: each component's share of the logit of a chosen token.

With the final norm's scale frozen at the value the model's own final residual stream gives it,
norm + unembedding are affine, so the logit of a token at a position is a sum over what each
component wrote into the stream (see ``core/_sites.py`` for the decomposition):

```text
logit[p, t] = sum_c k[p] * c(x_c[p]) . (w * W_U[:, t])  +  b . W_U[:, t] + b_U[t]
```

``k`` is the frozen scale (``ModelAdapter.final_norm_scale``), ``c`` the LayerNorm centring (the
identity for RMSNorm), ``w``/``b`` the final norm's weight and bias. The second line is the
``bias`` row of the result. On a model with a final logit soft-cap the sum is the *pre-soft-cap*
logit (``cap * tanh(sum / cap)`` is the model's output).

The contributions are computed inside the forward pass, one hook per component: each hook
projects its activation on the per-position direction and keeps only ``[batch, pos]`` numbers;
heads are computed from ``hook_z`` one chunk of positions at a time (``chunk_rows``), so no
``[heads, pos, d_model]`` stack is ever held for more than one chunk of one layer.
"""

import dataclasses
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .. import _html
from .._errors import InputError, ModelError
from ..core._adapter import Inputs, ModelAdapter, ModelLike, adapt
from ..core._hooks import FwdHooks, HookFn, check_fwd_hooks
from ..core._sites import Site
from ..core._tokens import TokenLike
from ._decoders import logit_softcap

TokenSpec = TokenLike
"""A token: its id, or a string that the tokenizer reads as exactly one token (e.g. ``" Mary"``)."""

TargetSpec = Union[Literal["next", "top1"], int, str]
"""``"next"`` (the next input token), ``"top1"`` (the model's final top-1), or a `TokenSpec`."""


@dataclasses.dataclass
class LogitAttribution:
    """What each component contributed to a logit (or a logit difference), per position.

    ``contributions[b, p, c]`` is component ``components[c]``'s share; the row ``"bias"`` (last) is
    the final norm's bias and ``b_U`` through the unembedding. ``contributions.sum(-1)`` equals
    ``logit`` (the model's own pre-soft-cap logit, or difference) up to float rounding; ``error``
    is the largest gap seen. ``heads[b, p, layer, head]`` (when computed) split each
    ``attn_out.layer`` row: ``heads.sum(-1) + attn_bias`` equals it. Positions without a target
    (the last one, for ``target="next"``) hold NaN.
    """

    tokens: Int[Tensor, "batch pos"]
    labels: List[List[str]]
    components: List[str]
    contributions: Float[Tensor, "batch pos component"]
    logit: Float[Tensor, "batch pos"]
    target_ids: Int[Tensor, "batch pos"]
    minus_ids: Optional[Int[Tensor, "batch pos"]]
    heads: Optional[Float[Tensor, "batch pos layer head"]]
    attn_bias: Optional[Float[Tensor, "batch pos layer"]]
    target: str
    n_layers: int
    softcap: Optional[float]
    error: float
    model_name: str = ""
    token_texts: Dict[int, str] = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ access
    def resolve_position(self, position: int, batch: int = 0) -> Tuple[int, int]:
        """``(batch, position)`` as non-negative indices of a position that has a target (else InputError)."""
        n_b, n_p = self.tokens.shape
        if not -n_b <= batch < n_b or not -n_p <= position < n_p:
            raise InputError(
                "The position or batch row is outside this result.",
                expected=f"batch in 0..{n_b - 1}, position in 0..{n_p - 1} (negative counts from the end)",
                received=f"batch={batch}, position={position}",
                fix="choose a position of the analysed text",
            )
        b, p = batch % n_b, position % n_p
        if int(self.target_ids[b, p]) < 0:
            raise InputError(
                f"Position {p} has no target token.",
                expected="a position with a target (for target='next': every position but the last)",
                received=f"position={position}",
                fix="choose an earlier position, e.g. position=-2, or a fixed target token",
            )
        return b, p

    def target_label(self, position: int = -1, *, batch: int = 0) -> str:
        """What is attributed at ``position``, e.g. ``"' Mary' - ' John'"``."""
        b, p = self.resolve_position(position, batch)
        text = repr(self._token_text(int(self.target_ids[b, p])))
        if self.minus_ids is not None:
            text += f" - {self._token_text(int(self.minus_ids[b, p]))!r}"
        return text

    def _token_text(self, tid: int) -> str:
        return self.token_texts.get(tid, f"#{tid}")

    def top(self, position: int = -1, *, batch: int = 0, n: int = 10, heads: bool = False) -> List[Tuple[str, float]]:
        """The ``n`` largest contributions by magnitude at ``position``: ``[(component, value), ...]``.

        With ``heads`` each ``attn_out.i`` is replaced by its heads ``head.i.h`` and ``attn_bias.i``.
        """
        b, p = self.resolve_position(position, batch)
        items = list(zip(self.components, self.contributions[b, p].tolist()))
        if heads and self.heads is not None and self.attn_bias is not None:
            items = [it for it in items if not it[0].startswith("attn_out.")]
            for i in range(self.n_layers):
                items.extend((f"head.{i}.{h}", float(v)) for h, v in enumerate(self.heads[b, p, i].tolist()))
                items.append((f"attn_bias.{i}", float(self.attn_bias[b, p, i])))
        return sorted(items, key=lambda it: -abs(it[1]))[:n]

    # ------------------------------------------------------------------ views
    def to_pandas(self, *, heads: bool = False) -> Any:
        """Long table, one row per (batch, position, component): token, target, minus, component, contribution.

        With ``heads`` the rows are the heads (``head.i.h``) and each layer's ``attn_bias.i``, with
        ``layer`` and ``head`` columns.
        """
        import pandas as pd

        rows = []
        n_b, n_p = self.tokens.shape
        for b in range(n_b):
            for p in range(n_p):
                base = {
                    "batch": b, "position": p, "token": self.labels[b][p],
                    "target_id": int(self.target_ids[b, p]),
                    "minus_id": None if self.minus_ids is None else int(self.minus_ids[b, p]),
                }
                if heads:
                    if self.heads is None or self.attn_bias is None:
                        raise InputError(
                            "This attribution has no per-head values.",
                            expected="a result of logit_attribution(..., heads=True)",
                            received="heads=None",
                            fix="rerun with heads=True (refused on models with a post-attention norm)",
                        )
                    for i in range(self.n_layers):
                        for h, v in enumerate(self.heads[b, p, i].tolist()):
                            rows.append({**base, "component": f"head.{i}.{h}", "layer": i, "head": h, "contribution": v})
                        rows.append({**base, "component": f"attn_bias.{i}", "layer": i, "head": None,
                                     "contribution": float(self.attn_bias[b, p, i])})
                else:
                    for c, v in zip(self.components, self.contributions[b, p].tolist()):
                        rows.append({**base, "component": c, "contribution": v})
        return pd.DataFrame(rows)

    def table(self, position: int = -1, *, batch: int = 0, n: int = 10, heads: bool = False, digits: int = 3) -> str:
        """A text table of the ``n`` largest contributions at ``position`` and their sum."""
        b, p = self.resolve_position(position, batch)
        lines = [
            f"logit attribution at position {p} ({self.labels[b][p]!r}) for {self.target_label(p, batch=b)}"
            f" [{self.target}]",
        ]
        width = max([len(c) for c, _ in self.top(p, batch=b, n=n, heads=heads)] + [12])
        for name, v in self.top(p, batch=b, n=n, heads=heads):
            lines.append(f"  {name.ljust(width)} {v:+.{digits}f}")
        total = float(self.contributions[b, p].sum())
        cap = f" (pre-soft-cap; the model caps at {self.softcap:g})" if self.softcap else ""
        lines.append(f"  {'sum'.ljust(width)} {total:+.{digits}f} = model logit {float(self.logit[b, p]):+.{digits}f}{cap}")
        return "\n".join(lines)

    def _repr_html_(self, n: int = 10) -> str:
        """Jupyter's rich display: the ``n`` largest contributions at the last position of batch row 0
        that has a target, their sum and the model's own logit."""
        has = [p for p in range(self.tokens.shape[1]) if int(self.target_ids[0, p]) >= 0]
        if not has:
            return _html.block(_html.heading("LogitAttribution", f"of {self.model_name}: no position has a target"))
        p = has[-1]
        rows: List[List[Any]] = [[name, v] for name, v in self.top(p, n=n)]
        rows += [["sum of all components", float(self.contributions[0, p].sum())], ["model logit", float(self.logit[0, p])]]
        return _html.block(
            _html.heading("LogitAttribution", f"of {self.model_name}: {self.target_label(p)} [{self.target}] at "
                                              f"position {p} ({self.labels[0][p]}), the {len(rows) - 2} largest of "
                                              f"{len(self.components)} components"),
            _html.table(["component", "contribution"], rows),
            note=f"largest gap between the sum and the model's logit: {self.error:.2g}"
            + (f"; logits before the soft cap at {self.softcap:g}" if self.softcap else ""),
        )

    def plot(self, kind: Literal["bar", "heads"] = "bar", *, position: int = -1, batch: int = 0, **kwargs: Any) -> Any:
        """``"bar"``: one bar per component at ``position``; ``"heads"``: a layer x head heatmap."""
        from ..plot import plot_attribution, plot_attribution_heads

        if kind == "heads":
            return plot_attribution_heads(self, position=position, batch=batch, **kwargs)
        return plot_attribution(self, position=position, batch=batch, **kwargs)


# ---------------------------------------------------------------------------- targets
def _target_ids(
    adapter: ModelAdapter, tokens: Tensor, target: TargetSpec, logits: Optional[Tensor]
) -> Tensor:
    if isinstance(target, str) and target == "next":
        ids = torch.full_like(tokens, -1)
        ids[:, :-1] = tokens[:, 1:]
        return ids
    if isinstance(target, str) and target == "top1":
        if logits is None:
            raise InputError("internal: top1 needs logits", expected="logits", received="None", fix="report this")
        return logits.argmax(-1)
    return torch.full_like(tokens, adapter.token_id(target, what="target"))


# ---------------------------------------------------------------------------- the computation
class _Projector:
    """Hooks that project each component on the per-position direction as the forward pass runs."""

    def __init__(self, adapter: ModelAdapter, u: Tensor, heads: bool, chunk_rows: int) -> None:
        self.adapter, self.u, self.heads, self.chunk = adapter, u, heads, max(1, int(chunk_rows))
        n_b, n_p = u.shape[:2]
        L, H = adapter.n_layers, adapter.n_heads
        self.raw: Dict[str, Tensor] = {}
        self.head_raw = torch.zeros(n_b, n_p, L, H, device=u.device) if heads else None
        self.final: Optional[Tensor] = None

    def _check(self, name: str, act: Tensor, shape: Tuple[int, ...]) -> None:
        if tuple(act.shape) != shape:
            raise ModelError(
                f"The activation at {name} has the wrong shape.",
                expected=f"shape {list(shape)}",
                received=f"shape {list(act.shape)}",
                fix="check the fwd_hooks passed in: a hook must return a tensor of the shape it received",
            )

    def project(self, key: str, name: str) -> HookFn:
        def hook(act: Tensor, hook: Any = None) -> None:
            self._check(name, act, tuple(self.u.shape))
            self.raw[key] = (act.detach().float() * self.u).sum(-1)

        return hook

    def project_heads(self, layer: int) -> HookFn:
        name = f"blocks.{layer}.attn.hook_z"

        def hook(z: Tensor, hook: Any = None) -> None:
            self._check(name, z, (*self.u.shape[:2], self.adapter.n_heads, self.adapter.d_head))
            for lo in range(0, z.shape[1], self.chunk):
                part = self.adapter.head_outputs(layer, z[:, lo : lo + self.chunk].detach()).float()
                self.head_raw[:, lo : lo + self.chunk, layer] = torch.einsum(
                    "bphm,bpm->bph", part, self.u[:, lo : lo + self.chunk]
                )

        return hook

    def keep_final(self, act: Tensor, hook: Any = None) -> None:
        self.final = act.detach()

    def hooks(self) -> List[Tuple[str, HookFn]]:
        a = self.adapter
        out = [(a.hook_name(Site.embed()), self.project("embed", a.hook_name(Site.embed())))]
        if a.has_pos_embed:
            out.append(("hook_pos_embed", self.project("pos_embed", "hook_pos_embed")))
        for i in range(a.n_layers):
            for site in (Site.attn_out(i), Site.mlp_out(i)):
                out.append((a.hook_name(site), self.project(site.name, a.hook_name(site))))
            if self.heads:
                out.append((f"blocks.{i}.attn.hook_z", self.project_heads(i)))
        out.append((a.hook_name(Site.resid_post(a.n_layers - 1)), self.keep_final))
        return out


def _direction(adapter: ModelAdapter, w: Tensor, target_ids: Tensor, minus_ids: Optional[Tensor]) -> Tensor:
    """``c(w * (W_U[:, t] - W_U[:, m]))`` per position, ``[batch, pos, d_model]`` (zero where no target)."""
    W_U = adapter.W_U
    valid = target_ids >= 0
    cols = W_U[:, target_ids.clamp_min(0).reshape(-1)].float().T
    if minus_ids is not None:
        cols = cols - W_U[:, minus_ids.reshape(-1)].float().T
    u = (cols * w).reshape(*target_ids.shape, -1) * valid[..., None]
    if adapter.final_norm_centers:
        u = u - u.mean(-1, keepdim=True)
    return u


def _bias_term(adapter: ModelAdapter, b: Tensor, target_ids: Tensor, minus_ids: Optional[Tensor]) -> Tensor:
    const = adapter.W_U.float().T @ b + adapter.b_U.float()  # [d_vocab]
    out = const[target_ids.clamp_min(0)]
    if minus_ids is not None:
        out = out - const[minus_ids]
    return out


@torch.no_grad()
def logit_attribution(
    model: ModelLike,
    inputs: Inputs,
    *,
    target: TargetSpec = "next",
    minus: Optional[TokenSpec] = None,
    heads: Optional[bool] = None,
    chunk_rows: int = 512,
    prepend_bos: Optional[bool] = None,
    fwd_hooks: FwdHooks = None,
) -> LogitAttribution:
    """Direct logit attribution: what each component adds to the logit of a token, per position.

    Args:
        model: a TransformerBridge (4.x) or HookedTransformer (2.x/3.x).
        inputs: text, texts of one token length, token ids, or a ``[batch, pos]`` tensor.
        target: ``"next"`` (the next input token; the last position gets NaN), ``"top1"`` (the
            model's final top-1 at each position; one extra forward pass), a token id, or a string
            that is exactly one token (``" Mary"``).
        minus: a second token (id or one-token string): attribute ``logit[target] - logit[minus]``.
        heads: split each ``attn_out.i`` into its heads (from ``hook_z``, one chunk of positions at
            a time) plus ``b_O``. ``None``: when the model allows (not with a post-attention norm,
            as Gemma-2's, where heads do not add up to ``attn_out``); ``True`` there is refused.
        chunk_rows: positions per chunk of the per-head computation.
        prepend_bos: passed to the tokenizer for text inputs.
        fwd_hooks: TransformerLens ``(hook name, function)`` pairs run during the pass (an ablation,
            a patch), checked as every lens checks them (``lensbox.core.check_fwd_hooks``); the
            attribution is then of the edited run. Edit ``blocks.i.attn.hook_z`` to keep the
            per-head split exact (an edit of ``hook_attn_out`` breaks it: use ``heads=False``).

    Returns:
        A `LogitAttribution`. Its components are ``tok_embed`` and ``pos_embed`` (models with
        learned positions) or ``embed``, then ``attn_out.i`` and ``mlp_out.i`` for every block, then
        ``bias``; their sum is the model's own (pre-soft-cap) logit within float rounding, which
        is checked on every call (a `ModelError` if not).

    Examples:
        ```python
        res = lensbox.logit_attribution(model, "When Mary and John went to the store, John gave a drink to",
                                        target=" Mary", minus=" John")
        print(res.table(-1, heads=True))
        ```
    """
    adapter = adapt(model)
    edits = check_fwd_hooks(adapter, fwd_hooks)
    tokens = adapter.to_tokens(inputs, prepend_bos=prepend_bos)
    if heads is None:
        heads = not adapter.has_attn_post_norm
    elif heads and adapter.has_attn_post_norm:
        raise ModelError(
            "Per-head attribution is not additive on this model: each attention output passes through its own "
            "norm (a post-attention norm, as in Gemma-2) before reaching the stream.",
            expected="a model whose attn_out is the sum of its heads plus b_O",
            received=f"{adapter.model_name} with ln1_post",
            fix="use heads=False (per-layer attn_out and mlp_out contributions stay exact)",
        )
    minus_id = None if minus is None else adapter.token_id(minus, what="minus")
    logits = None
    if isinstance(target, str) and target == "top1":
        logits = adapter.model.run_with_hooks(tokens, fwd_hooks=edits, return_type="logits")
    target_ids = _target_ids(adapter, tokens, target, logits)
    minus_ids = None if minus_id is None else torch.full_like(tokens, minus_id)
    w, b = adapter.final_norm_affine()
    u = _direction(adapter, w, target_ids, minus_ids)
    proj = _Projector(adapter, u, bool(heads), chunk_rows)
    adapter.model.run_with_hooks(tokens, fwd_hooks=edits + proj.hooks(), return_type=None)
    return _assemble(adapter, tokens, target, target_ids, minus_ids, proj, (w, b), edited=bool(edits))


def _assemble(
    adapter: ModelAdapter,
    tokens: Tensor,
    target: TargetSpec,
    target_ids: Tensor,
    minus_ids: Optional[Tensor],
    proj: _Projector,
    affine: Tuple[Tensor, Tensor],
    edited: bool = False,
) -> LogitAttribution:
    missing = [k for k in ["embed"] + [f"{s}.{i}" for i in range(adapter.n_layers) for s in ("attn_out", "mlp_out")]
               if k not in proj.raw]
    if missing or proj.final is None:
        raise ModelError(
            "The forward pass did not reach some hook points.",
            expected="hooks for the embeddings, every attn_out and mlp_out, and the final stream",
            received=f"missing {missing[:6]}",
            fix="report this model type to lensbox; its hook names differ from TransformerLens's",
        )
    k = adapter.final_norm_scale(proj.final, affine)  # [batch, pos]
    names: List[str]
    cols: List[Tensor]
    if adapter.has_pos_embed and "pos_embed" in proj.raw:
        names, cols = ["tok_embed", "pos_embed"], [proj.raw["embed"] - proj.raw["pos_embed"], proj.raw["pos_embed"]]
    else:
        names, cols = ["embed"], [proj.raw["embed"]]
    for i in range(adapter.n_layers):
        for s in ("attn_out", "mlp_out"):
            names.append(f"{s}.{i}")
            cols.append(proj.raw[f"{s}.{i}"])
    contrib = torch.stack(cols, -1) * k[..., None]
    bias = _bias_term(adapter, affine[1], target_ids, minus_ids)
    contrib = torch.cat([contrib, bias[..., None]], -1)
    names.append("bias")
    logit = _own_logit(adapter, proj.final, target_ids, minus_ids)
    own = logit  # the scale of the tolerance
    heads_c = attn_bias = None
    if proj.head_raw is not None:
        heads_c = proj.head_raw * k[..., None, None]
        attn_cols = torch.stack([contrib[..., names.index(f"attn_out.{i}")] for i in range(adapter.n_layers)], -1)
        attn_bias = attn_cols - heads_c.sum(-1)  # b_O's share, exactly: b_O . u * k
        b_O = torch.stack([adapter.b_O(i).float() for i in range(adapter.n_layers)])  # [layer, d_model]
        attn_bias_direct = torch.einsum("ld,bpd->bpl", b_O, proj.u) * k[..., None]
        fix = (
            "an edit in fwd_hooks changed attn_out after the heads (e.g. at blocks.i.hook_attn_out): edit "
            "blocks.i.attn.hook_z instead, or pass heads=False" if edited else None
        )
        _check_close(attn_bias, attn_bias_direct, "the heads of each layer plus b_O against attn_out", own, adapter, fix)
        attn_bias = attn_bias_direct
    valid = target_ids >= 0
    nan = torch.tensor(float("nan"))
    contrib = torch.where(valid[..., None], contrib, nan)
    logit = torch.where(valid, logit, nan)
    if heads_c is not None and attn_bias is not None:
        heads_c = torch.where(valid[..., None, None], heads_c, nan)
        attn_bias = torch.where(valid[..., None], attn_bias, nan)
    err = _check_close(contrib.sum(-1), logit, "the sum of the contributions against the model's own logit", own, adapter)
    labels = [adapter.token_labels(row) for row in tokens]
    ids = set(target_ids[valid].tolist()) | (set(minus_ids.reshape(-1).tolist()) if minus_ids is not None else set())
    return LogitAttribution(
        tokens=tokens.cpu(), labels=labels, components=names, contributions=contrib.cpu(), logit=logit.cpu(),
        target_ids=target_ids.cpu(), minus_ids=None if minus_ids is None else minus_ids.cpu(),
        heads=None if heads_c is None else heads_c.cpu(), attn_bias=None if attn_bias is None else attn_bias.cpu(),
        target=_target_text(target, minus_ids is not None), n_layers=adapter.n_layers,
        softcap=logit_softcap(adapter), error=err, model_name=adapter.model_name,
        token_texts={int(i): adapter.token_label(int(i)) for i in ids},
    )


def _own_logit(adapter: ModelAdapter, final: Tensor, target_ids: Tensor, minus_ids: Optional[Tensor]) -> Tensor:
    """The model's own (pre-soft-cap) logit of the targets (minus the other token): its final norm, then only
    the needed columns of ``W_U`` (never the ``[pos, vocab]`` logits)."""
    normed = adapter.final_norm(final).float()
    W_U, b_U = adapter.W_U, adapter.b_U

    def column(ids: Tensor) -> Tensor:
        flat = ids.clamp_min(0).reshape(-1)
        cols = W_U[:, flat].float().T.reshape(*ids.shape, -1)
        return (normed * cols).sum(-1) + b_U.float()[ids.clamp_min(0)]

    out = column(target_ids)
    return out - column(minus_ids) if minus_ids is not None else out


def _target_text(target: TargetSpec, diff: bool) -> str:
    base = target if isinstance(target, str) and target in ("next", "top1") else "token"
    return f"{base} minus token" if diff else str(base)


def _check_close(
    got: Tensor, want: Tensor, what: str, logits: Tensor, adapter: ModelAdapter, fix: Optional[str] = None
) -> float:
    """Largest gap between ``got`` and ``want`` (NaN ignored); a ModelError past a dtype-aware tolerance."""
    gap = (got - want).abs()
    gap = gap[~torch.isnan(gap)]
    err = float(gap.max()) if gap.numel() else 0.0
    scale = max(1.0, float(logits.abs().max()) if logits.numel() else 1.0)
    tol = (1e-4 if adapter.dtype in (torch.float32, torch.float64) else 3e-2) * scale
    if err > tol:
        raise ModelError(
            "The logit attribution does not add up: " + what + " differ.",
            expected=f"a gap within {tol:.1e}",
            received=f"largest gap {err:.3e}",
            fix=fix
            or "report this model type to lensbox (its final norm or attention output is not the form lensbox "
            "assumes); per-layer results are not reliable on it",
        )
    return err


__all__ = ["LogitAttribution", "TargetSpec", "TokenSpec", "logit_attribution"]
