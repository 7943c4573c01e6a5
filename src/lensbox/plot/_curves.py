"""Per-layer curves: one line per lens against the layer axis (lens results and held-out evaluations)."""

import math
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np

from .._errors import InputError
from ..core._sites import Site, SiteKind
from ..lenses._metrics import get_metric
from ..lenses._result import LensResult
from ._common import (
    PositionSpec,
    check_batch,
    figure_and_axes,
    fonts_context,
    layer_ticks,
    select_positions,
    site_x,
)

#: What `plot_layer_metric` accepts: one result, a list, or a mapping name -> result.
Results = Union[LensResult, Sequence[LensResult], Mapping[str, LensResult]]

# (label, x sorted ascending, y, optional (low, high) band); a None curve draws nothing but keeps its colour
_Curve = tuple[str, Any, Any, tuple[Any, Any] | None]


def _as_named_results(results: Any) -> list[tuple[str, LensResult]]:
    if isinstance(results, LensResult):
        return [(f"{results.lens} ({results.decoder})", results)]
    if isinstance(results, Mapping):
        items = list(results.items())
    else:
        items = [(f"{r.lens} ({r.decoder})", r) for r in results]
    if not items or not all(isinstance(r, LensResult) for _, r in items):
        raise InputError(
            "Expected lens results to plot.",
            expected="a LensResult, a list of them, or a dict name -> LensResult",
            received=repr(type(results).__name__),
            fix="e.g. plot_layer_metric({'logit lens': ll, 'tuned lens': tl})",
        )
    return [(str(k), r) for k, r in items]


def layer_summary(
    result: LensResult, metric: str = "kl", *, positions: PositionSpec = None, batch: int | None = None
) -> dict[str, "np.ndarray"]:
    """Per-site mean, 25% and 75% quantiles of ``metric`` over positions (and batch rows), NaNs skipped.

    Returns arrays ``x`` (layer coordinate, embed = -1), ``mean``, ``q25``, ``q75``. Ranks are
    summarised 1-based (1 = top), as the plots label them; undefined ranks are skipped.
    """
    m = get_metric(metric, scope="result")
    t = m.values(result).double()
    if m.scale == "rank":
        t = t.masked_fill(t < 0, float("nan")) + 1.0
    if batch is not None:
        b = check_batch(result, batch)
        t = t[b : b + 1]
    cols = select_positions(int(t.shape[2]), positions, default_max=10**9)
    arr = t[:, :, cols].double().cpu().numpy()  # [batch, layer, pos]
    arr = np.moveaxis(arr, 1, 0).reshape(len(result.sites), -1)
    mean, q25, q75 = [], [], []
    for row in arr:
        row = row[np.isfinite(row)]
        mean.append(row.mean() if row.size else math.nan)
        q25.append(np.percentile(row, 25) if row.size else math.nan)
        q75.append(np.percentile(row, 75) if row.size else math.nan)
    return {
        "x": np.array([site_x(s) for s in result.sites]),
        "mean": np.array(mean),
        "q25": np.array(q25),
        "q75": np.array(q75),
    }


def _layer_curves(
    curves: Sequence[_Curve | None], sites: Sequence[Site], *, ylabel: str, log: bool, title: str, ax: Any
) -> Any:
    """One line per curve (colour ``C{i}``) against the layer axis of ``sites``: the layer-metric figure."""
    with fonts_context():
        fig, ax = figure_and_axes(ax, 7.0, 4.2)
        for i, curve in enumerate(curves):
            if curve is None:
                continue
            name, x, y, band = curve
            color = f"C{i % 10}"
            ax.plot(x, y, marker="o", markersize=3, color=color, label=name)
            if band is not None:
                ax.fill_between(x, band[0], band[1], color=color, alpha=0.15, linewidth=0)
        if log:
            ax.set_yscale("log")
        layer_ticks(ax, sites)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
        ax.set_title(title, fontsize=9.5)
    return fig


def plot_layer_metric(
    results: Results,
    metric: str = "kl",
    *,
    positions: PositionSpec = None,
    batch: int | None = None,
    band: bool = True,
    log: bool = False,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """A statistic per layer for one or several lenses on one axis (default: KL to the final layer).

    Each curve is the mean over positions (and batch rows) of ``metric``; the shaded
    band spans the 25%..75% quantiles over positions.

    Args:
        results: a `LensResult`, a list, or a dict ``{"logit lens": r1, "tuned lens": r2}``.
        metric: a ``LensResult.metric`` name: ``'kl'`` (KL(final ‖ layer), default),
            ``'kl_input'``, ``'entropy'``, ``'ce'``, ``'top1'``, ...
        positions: positions to average over (see `plot_heatmap`; default all;
            ``slice(1, None)`` drops the first, often atypical, position).
        batch: one batch row, or None for all.
        band: draw the interquartile band.
        log: logarithmic y axis.
    """
    m = get_metric(metric, scope="result")
    named = _as_named_results(results)
    curves: list[_Curve | None] = []
    all_sites: list[Site] = []
    for name, r in named:
        s = layer_summary(r, m.name, positions=positions, batch=batch)
        order = np.argsort(s["x"])
        quartiles = (s["q25"][order], s["q75"][order]) if band else None
        curves.append((name, s["x"][order], s["mean"][order], quartiles))
        all_sites.extend(r.sites)
    if title is None:
        title = f"{m.label} per layer — {named[0][1].model_name}" + (
            " (mean over positions; band = 25–75%)" if band else " (mean over positions)")
    return _layer_curves(curves, all_sites, ylabel=m.label, log=log, title=title, ax=ax)


def plot_kl_by_layer(results: Results, **kwargs: Any) -> Any:
    """KL(final ‖ layer) per layer for one or several lenses: `plot_layer_metric` with ``metric='kl'``."""
    return plot_layer_metric(results, "kl", **kwargs)


def plot_evaluation(
    evaluation: Any, metric: str = "kl", *, log: bool = False, title: str | None = None, ax: Any = None
) -> Any:
    """Plot a `LensEvaluation`: ``metric`` per layer on held-out text, one line per lens."""
    from ..lenses._evaluate import LensEvaluation

    if not isinstance(evaluation, LensEvaluation):
        raise InputError(
            "Expected a lens evaluation.",
            expected="a LensEvaluation from lensbox.evaluate(model, data, lenses)",
            received=type(evaluation).__name__,
            fix="evaluate the lenses first",
        )
    m = get_metric(metric, scope="evaluation")
    curves: list[_Curve | None] = []
    has_embed = any(s.kind is SiteKind.EMBED for s in evaluation.sites)
    for lens in evaluation.lenses:
        pts = sorted((site_x(s), v) for s, v in zip(evaluation.sites, evaluation.values[lens][m.name])
                     if not math.isnan(v))
        name = f"{lens} (mean {evaluation.mean(lens, m.name):.3g}"
        name += f", {evaluation.mean(lens, m.name, include_embed=False):.3g} without embed)" if has_embed else ")"
        curves.append((name, [p[0] for p in pts], [p[1] for p in pts], None) if pts else None)
    label = m.label
    if title is None:
        title = f"{label} per layer, held-out text ({evaluation.tokens} tokens) — {evaluation.model_name}"
    fig = _layer_curves(curves, evaluation.sites, ylabel=label, log=log, title=title, ax=ax)
    axis = fig.axes[0] if ax is None else ax
    styles = {"uniform": ":", "unigram": "--"}
    for j, (b, vals) in enumerate(getattr(evaluation, "baselines", {}).items()):
        v = vals.get(m.name, math.nan)
        if not math.isnan(v):  # a baseline does not depend on the site: one horizontal line
            axis.axhline(v, color="0.35", linestyle=styles.get(b, "-."), linewidth=1.0, label=f"{b} baseline ({v:.3g})")
    if getattr(evaluation, "baselines", None):
        with fonts_context():
            axis.legend(fontsize=8, frameon=False)
    return fig
