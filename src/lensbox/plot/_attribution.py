"""Direct logit attribution figures: one bar per component at a position; a layer x head heatmap."""

from typing import Any

import numpy as np

from ..lenses._attribution import LogitAttribution
from ._common import clip_label, figure_and_axes, fonts_context, literal_text


def _title(result: LogitAttribution, b: int, p: int, title: str | None) -> str:
    if title is not None:
        return title
    token = clip_label(result.labels[b][p], 16)
    return f"Direct logit attribution to {result.target_label(p, batch=b)} at position {p} ({token!r})"


def plot_attribution(
    result: LogitAttribution,
    *,
    position: int = -1,
    batch: int = 0,
    heads: bool = False,
    top: int | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """One horizontal bar per component at ``position``, in model order (or the ``top`` largest by magnitude).

    With ``heads`` each ``attn_out.i`` bar is replaced by its heads and ``attn_bias.i``. Positive bars
    (green) raise the target's logit, negative (red) lower it; the bars add up to the model's logit,
    stated in the x label.
    """
    b, p = result.resolve_position(position, batch)
    items = result.top(p, batch=b, n=10**9, heads=heads)
    if top is None:
        order = {c: i for i, c in enumerate(_model_order(result, heads))}
        items = sorted(items, key=lambda it: order.get(it[0], len(order)))
    else:
        items = items[:top]
    names = [n for n, _ in items]
    values = np.array([v for _, v in items], dtype=float)
    with fonts_context():
        fig, ax = figure_and_axes(ax, 7.0, max(2.5, 0.22 * len(items) + 1.2))
        ypos = np.arange(len(items))[::-1]
        ax.barh(ypos, values, color=["#2a9d55" if v >= 0 else "#c8453a" for v in values])
        ax.set_yticks(ypos, names, fontsize=7)
        ax.axvline(0.0, color="0.3", lw=0.8)
        total = float(result.contributions[b, p].sum())
        ax.set_xlabel(f"contribution to the logit (sum {total:+.3f}; model {float(result.logit[b, p]):+.3f})")
        ax.set_title(_title(result, b, p, title), fontsize=9)
        literal_text([ax.title, *ax.get_yticklabels()])
    return fig


def _model_order(result: LogitAttribution, heads: bool) -> list[str]:
    out: list[str] = []
    for c in result.components:
        if heads and c.startswith("attn_out.") and result.heads is not None:
            i = int(c.split(".")[1])
            out.extend(f"head.{i}.{h}" for h in range(result.heads.shape[-1]))
            out.append(f"attn_bias.{i}")
        else:
            out.append(c)
    return out


def plot_attribution_heads(
    result: LogitAttribution,
    *,
    position: int = -1,
    batch: int = 0,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """A layer x head heatmap of the heads' contributions at ``position`` (diverging colours, 0 white)."""
    from .._errors import InputError

    if result.heads is None:
        raise InputError(
            "This attribution has no per-head values.",
            expected="a result of logit_attribution(..., heads=True)",
            received="heads=None",
            fix="rerun with heads=True (refused on models with a post-attention norm, where heads do not add up)",
        )
    b, p = result.resolve_position(position, batch)
    values = result.heads[b, p].double().numpy()  # [layer, head]
    vmax = float(np.abs(values).max()) or 1.0
    with fonts_context():
        n_layers, n_heads = values.shape
        fig, ax = figure_and_axes(ax, max(4.0, 0.45 * n_heads + 2.0), max(3.0, 0.22 * n_layers + 1.2))
        image = ax.imshow(values, cmap="RdBu", vmin=-vmax, vmax=vmax, aspect="auto", origin="lower")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(n_heads))
        ax.set_title(_title(result, b, p, title), fontsize=9)
        fig.colorbar(image, ax=ax, label="contribution to the logit")
        literal_text([ax.title])
    return fig


__all__ = ["plot_attribution", "plot_attribution_heads"]
