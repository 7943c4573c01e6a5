"""Interactive heatmap for notebooks (plotly, optional).

plotly is imported only when `plot_heatmap_interactive` is called; lensbox does not
depend on it. Hovering a cell shows the site, the position, the input and target tokens,
the top-k decoded tokens with their probabilities and the coloured metric.
"""

import html
import math
from typing import Any, Union

import numpy as np
from jaxtyping import Float

from .._errors import InputError
from ..core._sites import SitesSpec
from ..lenses._metrics import Metric
from ..lenses._result import LensResult
from ._common import (
    PositionSpec,
    check_batch,
    clip_label,
    select_positions,
    select_rows,
    site_axis_label,
)
from ._heatmap import KL_CAP, capped_vmax, colour_label, heatmap_metric, heatmap_values

Number = Union[int, float]

_PLOTLY_SCALES = {"Blues": "Blues", "magma_r": "Magma_r"}


def _import_plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError as exc:
        raise InputError(
            "The interactive heatmap needs plotly, which is not installed.",
            expected="the optional package plotly (>= 5)",
            received=f"ImportError: {exc}",
            fix="pip install plotly, or use lensbox's static plot_heatmap (matplotlib) instead",
        ) from exc
    return go


def _colour_range(
    spec: Metric, colour: Float[np.ndarray, "site pos"], vmin: Number | None, vmax: Number | None,
    kl_cap: float | None,
) -> tuple[float, float]:
    """``(zmin, zmax)`` as the static heatmap picks them (ranks on a log10 axis; KL capped at ``kl_cap``)."""
    if spec.scale == "prob":
        return (0.0 if vmin is None else vmin), (1.0 if vmax is None else vmax)
    finite = colour[np.isfinite(colour)]
    log = spec.scale == "rank"
    if vmin is not None:
        zmin = math.log10(vmin) if log else vmin
    else:
        zmin = float(finite.min()) if finite.size else 0.0
    if vmax is not None:
        zmax = math.log10(vmax) if log else vmax
    else:
        zmax = capped_vmax(spec, float(np.percentile(finite, 98)) if finite.size else 1.0, kl_cap)
    return zmin, zmax


def _hover_texts(
    result: LensResult, b: int, rows: list[int], cols: list[int], values: Float[np.ndarray, "site pos"],
    spec: Metric, label_chars: int,
) -> tuple[list[list[str]], list[list[str]]]:
    """Per cell: the printed top-1 token, and the hover text (site, position, tokens, top-k, metric)."""
    n_pos = int(result.tokens.shape[1])
    labels_in = result.input_labels[b]
    k = int(result.top_ids.shape[-1])
    probs = result.top_logprobs[b].exp()
    text: list[list[str]] = []
    hover: list[list[str]] = []
    for ri, r in enumerate(rows):
        row_text, row_hover = [], []
        for ci, c in enumerate(cols):
            top = result.top_labels[b][r][c]
            row_text.append(html.escape(clip_label(top[0], label_chars)))
            lines = [f"{html.escape(t)}: {float(probs[r, c, j]):.3f}" for j, t in enumerate(top[:k])]
            target = html.escape(labels_in[c + 1]) if c + 1 < n_pos else "(none: last position)"
            v = values[ri, ci]
            shown = "n/a" if not np.isfinite(v) else (f"{int(v)}" if spec.scale == "rank" else f"{v:.4g}")
            row_hover.append(
                f"<b>{result.sites[r].name}</b>, position {c}<br>input: {html.escape(labels_in[c])}"
                f"<br>target: {target}<br>{html.escape(spec.label)}: {shown}<br>top-{k}:<br>" + "<br>".join(lines)
            )
        text.append(row_text)
        hover.append(row_hover)
    return text, hover


def _target_labels(result: LensResult, b: int, cols: list[int], label_chars: int) -> list[str]:
    """Top-axis labels: the next token of each position, ``(*)`` where the model's final top-1 is right."""
    n_pos = int(result.tokens.shape[1])
    labels_in, final, toks = result.input_labels[b], result.final_top1[b], result.tokens[b]
    out = []
    for c in cols:
        if c + 1 < n_pos:
            star = " (*)" if int(final[c]) == int(toks[c + 1]) else ""
            out.append(html.escape(clip_label(labels_in[c + 1], label_chars)) + star)
        else:
            out.append("—")
    return out


def plot_heatmap_interactive(
    result: LensResult,
    metric: str = "top1",
    *,
    batch: int = 0,
    positions: PositionSpec = None,
    max_positions: int = 24,
    sites: SitesSpec = None,
    vmin: Number | None = None,
    vmax: Number | None = None,
    label_chars: int = 8,
    outline: bool = True,
    kl_cap: float | None = KL_CAP,
    title: str | None = None,
) -> Any:
    """The logit-lens heatmap as a plotly Figure (same layout and arguments as ``plot_heatmap``).

    Rank metrics are coloured by ``log10(rank)``. Cells agreeing with the final top-1 are
    outlined; ``(*)`` on a top label marks a position whose final top-1 is the true next token.
    Requires plotly (``pip install plotly``).
    """
    go = _import_plotly()
    spec = heatmap_metric(metric)
    b = check_batch(result, batch)
    cols = select_positions(int(result.tokens.shape[1]), positions, default_max=max_positions)
    rows = select_rows(result, sites)
    values = heatmap_values(result, spec.name, batch=b)[np.ix_(rows, cols)]
    colour = np.log10(values) if spec.scale == "rank" else values
    zmin, zmax = _colour_range(spec, colour, vmin, vmax, kl_cap)
    text, hover = _hover_texts(result, b, rows, cols, values, spec, label_chars)
    bar_label = colour_label(spec, values, zmax, kl_cap)
    heat = go.Heatmap(
        z=np.where(np.isfinite(colour), colour, np.nan).tolist(), x=list(range(len(cols))), y=list(range(len(rows))),
        text=text, texttemplate="%{text}", textfont={"size": 10}, customdata=hover,
        hovertemplate="%{customdata}<extra></extra>", colorscale=_PLOTLY_SCALES.get(spec.cmap, spec.cmap),
        zmin=zmin, zmax=zmax, colorbar={"title": {"text": ("log10 " if spec.scale == "rank" else "") + bar_label}},
    )
    fig = go.Figure(heat)
    final = result.final_top1[b]
    if outline:
        for ri, r in enumerate(rows):
            for ci, c in enumerate(cols):
                if int(final[c]) >= 0 and int(result.top_ids[b, r, c, 0]) == int(final[c]):
                    fig.add_shape(type="rect", x0=ci - 0.46, x1=ci + 0.46, y0=ri - 0.44, y1=ri + 0.44,
                                  line={"color": "#111111", "width": 1.5}, name="agree")
    ticks = list(range(len(cols)))
    fig.update_layout(
        title={"text": html.escape(title if title is not None else
                                   f"{result.lens} on {result.model_name} — colour: {spec.label}"),
               "font": {"size": 13}, "y": 0.99, "yref": "container", "yanchor": "top"},
        xaxis={"tickmode": "array", "tickvals": ticks, "tickangle": -45,
               "ticktext": [html.escape(clip_label(result.input_labels[b][c], label_chars)) for c in cols],
               "title": {"text": "input token (position i)"}},
        xaxis2={"tickmode": "array", "tickvals": ticks, "ticktext": _target_labels(result, b, cols, label_chars),
                "tickangle": -45, "overlaying": "x", "side": "top", "matches": "x",
                "title": {"text": "next token; (*) = model's final top-1 is right"}},
        yaxis={"tickmode": "array", "tickvals": list(range(len(rows))),
               "ticktext": [site_axis_label(result.sites[r]) for r in rows], "title": {"text": "site"}},
        width=int(160 + 70 * len(cols)), height=int(300 + 28 * len(rows)), plot_bgcolor="#d9d9d9", margin={"t": 190},
    )
    # An invisible trace on the top axis makes plotly draw its tick labels.
    fig.add_trace(go.Scatter(x=ticks, y=[None] * len(cols), xaxis="x2", showlegend=False, hoverinfo="skip"))
    return fig
