"""Static pictures (matplotlib): heatmaps, per-layer curves, norms, token-plane paths.

Every function here takes results or DataFrames and returns a matplotlib
:class:`~matplotlib.figure.Figure`; none runs a model. Figures are built without
pyplot (no global figure registry, no GUI backend needed), so they work headless and
display once in a notebook. Save them with :func:`save_figure` (``.png``, ``.svg`` or
``.pdf``), or ``fig.savefig``.

Token labels are drawn with a fallback list of font families (see ``lensbox.plot._fonts``)
so Chinese, Japanese, Cyrillic and Arabic labels render with real glyphs when the
fonts are installed (``scripts/install_fonts.sh``).
"""

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .._errors import InputError
from ._fonts import font_rc
from ..lenses._result import LensResult
from ..core._sites import Site, SiteKind, SiteLike

PositionSpec = Union[None, int, slice, range, Sequence[int], Tuple[int, int]]
Number = Union[int, float]

# name -> (description, colour-bar label, colormap, scale); scale is "prob" (0..1),
# "rank" (1-based, log colour scale) or "linear".
HEATMAP_METRICS: Dict[str, Tuple[str, str, str, str]] = {
    "top1": ("probability of the top-1 guess", "p(top-1)", "Blues", "prob"),
    "prob": ("probability of the top-1 guess", "p(top-1)", "Blues", "prob"),
    "logit": ("raw logit of the top-1 guess", "logit of top-1", "viridis", "linear"),
    "top1_logprob": ("log-probability of the top-1 guess", "log p(top-1), nats", "Blues", "linear"),
    "logprob": ("log-probability of the true next token", "log p(next token), nats", "Blues", "linear"),
    "next_prob": ("probability of the true next token", "p(next token)", "Blues", "prob"),
    "rank": ("rank of the true next token", "rank of next token (1 = top)", "magma_r", "rank"),
    "final_rank": ("rank of the final layer's top-1 guess", "rank of final top-1 (1 = top)", "magma_r", "rank"),
    "kl": ("KL(final ‖ layer) — compare with the final layer", "KL(final ‖ layer), nats", "magma_r", "linear"),
    "kl_reverse": ("KL(layer ‖ final)", "KL(layer ‖ final), nats", "magma_r", "linear"),
    "kl_input": (
        "KL(first layer ‖ layer) — compare with the first layer (input embeddings)",
        "KL(input ‖ layer), nats",
        "magma_r",
        "linear",
    ),
    "kl_input_reverse": ("KL(layer ‖ first layer)", "KL(layer ‖ input), nats", "magma_r", "linear"),
    "entropy": ("entropy of the decoded distribution", "entropy, nats", "magma_r", "linear"),
    "ce": ("cross-entropy against the true next token", "cross-entropy, nats", "magma_r", "linear"),
}

#: Aliases for the two comparison views of the logit-lens post.
METRIC_ALIASES = {"kl_final": "kl", "compare_final": "kl", "compare_first": "kl_input", "compare_input": "kl_input"}

_OUTLINE_GID = "lensbox-agree"
_CELL_TEXT_GID = "lensbox-cell"


# ============================================================================ helpers
def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _figure_and_axes(ax: Any, width: float, height: float) -> Tuple[Any, Any]:
    """``(figure, axes)``: the caller's ``ax`` and its figure, or a new ``width`` x ``height`` figure."""
    if ax is not None:
        return ax.figure, ax
    fig = _new_figure(width, height)
    return fig, fig.add_subplot()


def _fonts_context() -> Any:
    import matplotlib

    return matplotlib.rc_context(font_rc())


def clip_label(label: str, max_chars: int) -> str:
    """Shorten a token label to ``max_chars`` characters, marking the cut with '…'."""
    if max_chars < 2 or len(label) <= max_chars:
        return label
    return label[: max_chars - 1] + "…"


def select_positions(n: int, positions: PositionSpec, *, default_max: int) -> List[int]:
    """Resolve a position window into sorted column indices.

    ``None``: every position, or the last ``default_max`` when there are more;
    an ``int`` k: the last k positions; a ``slice``/``range``; a ``(start, stop)`` pair;
    or an explicit list of positions (negative values count from the end).
    """
    if positions is None:
        return list(range(max(0, n - default_max), n))
    if isinstance(positions, bool):
        raise InputError(
            "Cannot read a bool as positions.",
            expected="None, an int (last k), a slice, a (start, stop) pair or a list of positions",
            received=repr(positions),
            fix="e.g. positions=12 for the last 12 positions",
        )
    if isinstance(positions, int):
        if positions < 1:
            raise InputError(
                "The position window must hold at least one position.",
                expected="an int >= 1 (the last k positions)",
                received=str(positions),
                fix="e.g. positions=12",
            )
        return list(range(max(0, n - positions), n))
    if isinstance(positions, slice):
        cols = list(range(n))[positions]
    elif isinstance(positions, tuple) and len(positions) == 2 and all(isinstance(v, int) for v in positions):
        cols = list(range(n))[slice(*positions)]
    else:
        try:
            raw = [int(p) for p in positions]  # type: ignore[union-attr]
        except TypeError as exc:
            raise InputError(
                "Cannot read these positions.",
                expected="None, an int (last k), a slice, a (start, stop) pair or a list of positions",
                received=f"{type(positions).__name__}: {positions!r}",
                fix="e.g. positions=slice(5, 20)",
            ) from exc
        bad = [p for p in raw if not -n <= p < n]
        if bad:
            raise InputError(
                "Positions out of range.",
                expected=f"positions in 0..{n - 1} (or negative from the end)",
                received=str(bad[:8]),
                fix="use result.tokens.shape[1] to see the length",
            )
        cols = sorted({p % n for p in raw})
    if not cols:
        raise InputError(
            "The position window is empty.",
            expected=f"at least one position of 0..{n - 1}",
            received=repr(positions),
            fix="widen the window",
        )
    return cols


def _select_rows(result: LensResult, sites: Optional[Sequence[SiteLike]]) -> List[int]:
    if sites is None:
        return list(range(len(result.sites)))
    if isinstance(sites, (str, int, Site)):
        sites = [sites]
    rows = sorted({result.site_index(s) for s in sites})
    if not rows:
        raise InputError("No sites were selected.", expected="at least one site", received="[]", fix="sites=None for all")
    return rows


def _check_batch(result: Any, batch: int) -> int:
    n = int(result.tokens.shape[0])
    if not -n <= batch < n:
        raise InputError(
            "Batch row out of range.",
            expected=f"a batch index in 0..{n - 1}",
            received=str(batch),
            fix="pick one of the inputs you passed",
        )
    return batch % n


def _resolve_metric(metric: str) -> str:
    name = METRIC_ALIASES.get(metric, metric)
    if name not in HEATMAP_METRICS:
        raise InputError(
            f"Unknown heatmap metric {metric!r}.",
            expected="one of " + ", ".join(sorted(set(HEATMAP_METRICS) | set(METRIC_ALIASES))),
            received=repr(metric),
            fix="e.g. metric='top1' (probability), 'rank', 'kl', 'kl_input' or 'entropy'",
        )
    return name


def heatmap_values(result: LensResult, metric: str, *, batch: int = 0) -> "np.ndarray":
    """The ``[layer, pos]`` array a heatmap colours, for ``metric`` (ranks are 1-based)."""
    name = _resolve_metric(metric)
    b = _check_batch(result, batch)
    if name == "top1_logprob":
        t = result.top_logprobs[b, :, :, 0]
    elif name == "next_prob":
        t = result.next_logprob[b].exp()
    elif name in ("rank", "final_rank"):
        raw = (result.next_rank if name == "rank" else result.final_top1_rank)[b].double()
        t = raw.masked_fill(raw < 0, float("nan")) + 1.0
    else:
        t = result.metric(name)[b]
    return t.double().cpu().numpy()


def _site_axis_label(site: Site) -> str:
    if site.kind is SiteKind.EMBED:
        return "embed"
    short = {SiteKind.RESID_PRE: "pre", SiteKind.RESID_MID: "mid", SiteKind.RESID_POST: "post"}[site.kind]
    return f"{short} {site.layer}"


def _luminance(rgba: Tuple[float, float, float, float]) -> float:
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgba[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _norm_for(scale: str, values: "np.ndarray", vmin: Optional[Number], vmax: Optional[Number], vocab: int) -> Any:
    from matplotlib import colors

    finite = values[np.isfinite(values)]
    if scale == "prob":
        return colors.Normalize(vmin=0.0 if vmin is None else vmin, vmax=1.0 if vmax is None else vmax)
    if scale == "rank":
        hi = vmax if vmax is not None else float(max(10.0, min(float(vocab), finite.max() if finite.size else 10.0)))
        return colors.LogNorm(vmin=1.0 if vmin is None else max(1.0, vmin), vmax=max(hi, 2.0))
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    if vmax is not None:
        hi = vmax
    elif finite.size:
        # Clip the top 2% so one huge cell (often the first position or the embeddings)
        # does not wash out the rest; the colour bar shows the clip with an arrow.
        hi = float(np.percentile(finite, 98))
        if hi <= lo:
            hi = float(finite.max())
    else:
        hi = 1.0
    if hi <= lo:
        hi = lo + 1e-9
    return colors.Normalize(vmin=lo, vmax=hi)


# ============================================================================ heatmap
def plot_heatmap(
    result: LensResult,
    metric: str = "top1",
    *,
    batch: int = 0,
    positions: PositionSpec = None,
    max_positions: int = 16,
    sites: Optional[Sequence[SiteLike]] = None,
    vmin: Optional[Number] = None,
    vmax: Optional[Number] = None,
    cmap: Optional[str] = None,
    label_chars: int = 8,
    outline: bool = True,
    cell_text: bool = True,
    title: Optional[str] = None,
    ax: Any = None,
) -> Any:
    """The logit-lens heatmap of one input: rows = sites, columns = positions.

    Each cell prints the top-1 token decoded at that site and position; its colour is
    ``metric``. The input tokens are the tilted labels at the bottom; the top labels are
    the next-token targets (position ``i`` predicts token ``i + 1``), marked ``(*)`` where
    the model's final top-1 guess is that token. Cells whose top-1 equals the model's
    final top-1 are outlined. The embeddings are the bottom row, the last layer the top.

    Args:
        result: a :class:`LensResult` (logit lens, tuned lens, ...).
        metric: colour. ``'top1'`` probability of the top-1 guess (default),
            ``'top1_logprob'``, ``'logprob'`` / ``'next_prob'`` of the true next token,
            ``'rank'`` of the true next token or ``'final_rank'`` of the final top-1 (log
            colour scale, 1 = top), ``'kl'`` = KL(final ‖ layer) ("compare with final
            layer"), ``'kl_input'`` = KL(first layer ‖ layer) ("compare with first layer"),
            ``'kl_reverse'``, ``'kl_input_reverse'``, ``'entropy'``, ``'ce'``.
        batch: which input of the batch.
        positions: the window of positions (columns) — ``None``: all, or the last
            ``max_positions`` of a long input; an int k: the last k; a slice; a
            ``(start, stop)`` pair; or a list of positions.
        sites: which rows (default all sites of the result), e.g. ``result.sites[::2]``.
        vmin, vmax: colour limits (defaults: [0, 1] for probabilities, [1, largest rank shown] on a log scale for ranks,
            and the 2nd..98th percentile span elsewhere). Pass the same ``vmax`` to compare
            two KL views on one scale.
        cmap: a matplotlib colormap name.
        label_chars: token labels longer than this are shortened with '…'.
        outline: outline cells that agree with the final top-1.
        cell_text: print the top-1 token in each cell.
        title: figure title (default: lens, model and metric).
        ax: draw into this Axes instead of a new figure.

    Returns the matplotlib Figure.
    """
    name = _resolve_metric(metric)
    b = _check_batch(result, batch)
    n_pos = int(result.tokens.shape[1])
    cols = select_positions(n_pos, positions, default_max=max_positions)
    rows = _select_rows(result, sites)
    desc, bar_label, default_cmap, scale = HEATMAP_METRICS[name]
    values_all = heatmap_values(result, name, batch=b)
    values = values_all[np.ix_(rows, cols)]
    vocab = max(int(result.next_rank.max()) + 1, int(result.final_top1_rank.max()) + 1, 10)
    top1 = result.top_ids[b, :, :, 0]
    final = result.final_top1[b]
    toks = result.tokens[b]
    labels_in = result.input_labels[b]

    with _fonts_context():
        import matplotlib
        from matplotlib import patheffects
        from matplotlib.patches import Rectangle

        n_r, n_c = len(rows), len(cols)
        cell_w = max(0.5, 0.085 * label_chars + 0.05)
        fig, ax = _figure_and_axes(ax, 1.6 + n_c * cell_w + 1.3, 2.6 + n_r * 0.27)
        colormap = matplotlib.colormaps[cmap or default_cmap].with_extremes(bad="#d9d9d9")
        norm = _norm_for(scale, values, vmin, vmax, vocab)
        masked = np.ma.masked_invalid(values)
        image = ax.imshow(
            masked, cmap=colormap, norm=norm, aspect="auto", origin="lower", interpolation="nearest",
            extent=(-0.5, n_c - 0.5, -0.5, n_r - 0.5),
        )
        font_size = 7.5 if label_chars <= 8 else 6.5
        # A white halo keeps the dark outline visible on dark cells.
        halo = [patheffects.Stroke(linewidth=2.8, foreground="white"), patheffects.Normal()]
        for ri, row in enumerate(rows):
            for ci, col in enumerate(cols):
                v = values[ri, ci]
                agree = bool(top1[row, col] == final[col])
                if cell_text:
                    if np.isfinite(v):
                        rgba = colormap(norm(v))
                        color = "black" if _luminance(rgba) > 0.35 else "white"
                    else:
                        color = "black"
                    text = ax.text(
                        ci, ri, clip_label(result.top_labels[b][row][col][0], label_chars),
                        ha="center", va="center", fontsize=font_size, color=color, parse_math=False,
                    )
                    text.set_gid(_CELL_TEXT_GID)
                if outline and agree:
                    rect = Rectangle(
                        (ci - 0.46, ri - 0.44), 0.92, 0.88, fill=False, edgecolor="#111111", linewidth=1.3,
                        path_effects=halo,
                    )
                    rect.set_gid(_OUTLINE_GID)
                    ax.add_patch(rect)

        # Axes: sites on y, input tokens at the bottom, next-token targets at the top.
        ax.set_yticks(range(n_r), [_site_axis_label(result.sites[r]) for r in rows], fontsize=8)
        ax.set_xticks(
            range(n_c), [clip_label(labels_in[c], label_chars) for c in cols],
            rotation=45, ha="right", rotation_mode="anchor", fontsize=8, parse_math=False,
        )
        ax.set_xlabel("input token (position i)")
        ax.set_ylabel("site (embeddings at the bottom)")
        top_labels = []
        for c in cols:
            if c + 1 < n_pos:
                star = " (*)" if int(final[c]) == int(toks[c + 1]) else ""
                top_labels.append(clip_label(labels_in[c + 1], label_chars) + star)
            else:
                top_labels.append("—")
        top = ax.secondary_xaxis("top")
        top.set_xticks(
            range(n_c), top_labels, rotation=45, ha="left", rotation_mode="anchor", fontsize=8, parse_math=False,
        )
        top.set_xlabel("next token (target of position i);  (*) = model's final top-1 is right", fontsize=8)
        ax.tick_params(length=0)
        top.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        extend = "neither"
        finite = values[np.isfinite(values)]
        if scale == "linear" and finite.size:
            over, under = finite.max() > norm.vmax, finite.min() < norm.vmin
            extend = "both" if over and under else "max" if over else "min" if under else "neither"
        bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, extend=extend, shrink=min(1.0, 0.25 + 0.05 * n_r))
        bar.set_label(bar_label, fontsize=8)
        bar.ax.tick_params(labelsize=7)
        if title is None:
            window = ""
            if len(cols) < n_pos:
                window = f"; positions {cols[0]}–{cols[-1]} of 0–{n_pos - 1}"
            outline_note = "; outlined = agrees with the final top-1" if outline else ""
            title = f"{result.lens} on {result.model_name} — colour: {desc}{outline_note}{window}"
        fig.suptitle(title, fontsize=9.5)
    return fig


def heatmap_cell_texts(fig: Any) -> List[Any]:
    """The per-cell token Text artists of a :func:`plot_heatmap` figure (row-major, bottom row first)."""
    return [t for ax in fig.axes for t in ax.texts if t.get_gid() == _CELL_TEXT_GID]


def heatmap_outlines(fig: Any) -> List[Any]:
    """The outline Rectangles (cells agreeing with the final top-1) of a :func:`plot_heatmap` figure."""
    return [p for ax in fig.axes for p in ax.patches if p.get_gid() == _OUTLINE_GID]


def plot_compare_views(
    result: LensResult,
    *,
    batch: int = 0,
    positions: PositionSpec = None,
    max_positions: int = 12,
    sites: Optional[Sequence[SiteLike]] = None,
    vmax: Optional[Number] = None,
    label_chars: int = 8,
) -> Any:
    """Two heatmaps on one colour scale: KL(final ‖ layer) and KL(first layer ‖ layer).

    "Compare with the final layer" and "compare with the first layer" side by side, as
    in the logit-lens post's input-discarding section. ``vmax`` defaults to the 98th
    percentile of both views together.
    """
    b = _check_batch(result, batch)
    cols = select_positions(int(result.tokens.shape[1]), positions, default_max=max_positions)
    rows = _select_rows(result, sites)
    if vmax is None:
        both = np.concatenate(
            [heatmap_values(result, m, batch=b)[np.ix_(rows, cols)].ravel() for m in ("kl", "kl_input")]
        )
        both = both[np.isfinite(both)]
        vmax = float(np.percentile(both, 98)) if both.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
    with _fonts_context():
        cell_w = max(0.5, 0.085 * label_chars + 0.05)
        width = 2 * (1.6 + len(cols) * cell_w + 1.2)
        height = 2.6 + len(rows) * 0.27
        fig = _new_figure(width, height)
        left, right = fig.subplots(1, 2)
        for ax, m in ((left, "kl"), (right, "kl_input")):
            plot_heatmap(
                result, m, batch=b, positions=cols, sites=[result.sites[r] for r in rows], vmin=0.0, vmax=vmax,
                label_chars=label_chars, ax=ax, title="",
            )
            ax.set_title(HEATMAP_METRICS[m][0], fontsize=9)
        fig.suptitle(f"{result.lens} on {result.model_name}: where does each layer stand between input and output?",
                     fontsize=10)
    return fig


# ============================================================================ per-layer curves
def _site_x(site: Site) -> float:
    """x coordinate of a site on a layer axis: embed = -1, resid_post.i = i, resid_mid.i = i - 0.5."""
    return site.depth / 2.0 - 1.0


def _layer_ticks(ax: Any, sites: Sequence[Site]) -> None:
    from matplotlib.ticker import MaxNLocator

    xs = sorted({_site_x(s) for s in sites})
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=12))
    lo, hi = xs[0], xs[-1]
    ax.set_xlim(lo - 0.5, hi + 0.5)
    ticks = [t for t in ax.get_xticks() if lo - 1e-9 <= t <= hi + 1e-9]
    if lo <= -1.0:
        # The embeddings get their own tick; drop integer ticks too close to it to read.
        step = (ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
        ticks = [-1.0] + [t for t in ticks if t >= -1.0 + max(1.0, 0.75 * step)]
    ax.set_xticks(ticks, ["embed" if t == -1 else str(int(t)) for t in ticks])
    ax.set_xlabel("layer (residual stream after block i; embed = input embeddings)")


def _as_named_results(results: Any) -> List[Tuple[str, LensResult]]:
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
    result: LensResult, metric: str = "kl", *, positions: PositionSpec = None, batch: Optional[int] = None
) -> Dict[str, "np.ndarray"]:
    """Per-site mean, 25% and 75% quantiles of ``metric`` over positions (and batch rows), NaNs skipped.

    Returns arrays ``x`` (layer coordinate, embed = -1), ``mean``, ``q25``, ``q75``.
    """
    t = result.metric(metric)
    if batch is not None:
        b = _check_batch(result, batch)
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
        "x": np.array([_site_x(s) for s in result.sites]),
        "mean": np.array(mean),
        "q25": np.array(q25),
        "q75": np.array(q75),
    }


# (label, x sorted ascending, y, optional (low, high) band); a None curve draws nothing but keeps its colour
_Curve = Tuple[str, Any, Any, Optional[Tuple[Any, Any]]]


def _plot_layer_curves(
    curves: Sequence[Optional[_Curve]], sites: Sequence[Site], *, ylabel: str, log: bool, title: str, ax: Any
) -> Any:
    """One line per curve (colour ``C{i}``) against the layer axis of ``sites``: the layer-metric figure."""
    with _fonts_context():
        fig, ax = _figure_and_axes(ax, 7.0, 4.2)
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
        _layer_ticks(ax, sites)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
        ax.set_title(title, fontsize=9.5)
    return fig


def plot_layer_metric(
    results: Any,
    metric: str = "kl",
    *,
    positions: PositionSpec = None,
    batch: Optional[int] = None,
    band: bool = True,
    log: bool = False,
    title: Optional[str] = None,
    ax: Any = None,
) -> Any:
    """A statistic per layer for one or several lenses on one axis (default: KL to the final layer).

    Each curve is the mean over positions (and batch rows) of ``metric``; the shaded
    band spans the 25%..75% quantiles over positions.

    Args:
        results: a :class:`LensResult`, a list, or a dict ``{"logit lens": r1, "tuned lens": r2}``.
        metric: a ``LensResult.metric`` name: ``'kl'`` (KL(final ‖ layer), default),
            ``'kl_input'``, ``'entropy'``, ``'ce'``, ``'top1'``, ...
        positions: positions to average over (see :func:`plot_heatmap`; default all;
            ``slice(1, None)`` drops the first, often atypical, position).
        batch: one batch row, or None for all.
        band: draw the interquartile band.
        log: logarithmic y axis.
    """
    from ..lenses._result import METRICS

    named = _as_named_results(results)
    if metric not in METRICS:
        raise InputError(
            f"Unknown metric {metric!r}.",
            expected="one of " + ", ".join(sorted(METRICS)),
            received=repr(metric),
            fix="e.g. metric='kl'",
        )
    curves: List[Optional[_Curve]] = []
    all_sites: List[Site] = []
    for name, r in named:
        s = layer_summary(r, metric, positions=positions, batch=batch)
        order = np.argsort(s["x"])
        quartiles = (s["q25"][order], s["q75"][order]) if band else None
        curves.append((name, s["x"][order], s["mean"][order], quartiles))
        all_sites.extend(r.sites)
    first = named[0][1]
    return _plot_layer_curves(
        curves,
        all_sites,
        ylabel=METRICS[metric],
        log=log,
        title=title if title is not None else f"{METRICS[metric]} per layer — {first.model_name}"
        + (" (mean over positions; band = 25–75%)" if band else " (mean over positions)"),
        ax=ax,
    )


def plot_kl_by_layer(results: Any, **kwargs: Any) -> Any:
    """KL(final ‖ layer) per layer for one or several lenses: :func:`plot_layer_metric` with ``metric='kl'``."""
    return plot_layer_metric(results, "kl", **kwargs)


# ============================================================================ norms
def plot_residual_norms(
    norms: Any,
    *,
    batch: int = 0,
    positions: PositionSpec = None,
    max_positions: int = 16,
    log: bool = True,
    title: Optional[str] = None,
    ax: Any = None,
) -> Any:
    """Residual-stream norm per layer: one line per position (labelled by its token), plus the median.

    Args:
        norms: a :class:`ResidualNorms` from :func:`lensbox.residual_norms`.
        positions: which positions get a line (default: all, or the last ``max_positions``).
        log: logarithmic y axis (norms often span orders of magnitude, e.g. the first position).
    """
    from ..lenses._geometry import ResidualNorms

    if not isinstance(norms, ResidualNorms):
        raise InputError(
            "Expected residual norms.",
            expected="a ResidualNorms from lensbox.residual_norms(model, inputs)",
            received=type(norms).__name__,
            fix="compute them first: norms = lensbox.residual_norms(model, text)",
        )
    b = _check_batch(norms, batch)
    n_pos = int(norms.norms.shape[2])
    cols = select_positions(n_pos, positions, default_max=max_positions)
    xs = np.array([_site_x(s) for s in norms.sites])
    order = np.argsort(xs)
    data = norms.norms[b].double().numpy()  # [layer, pos]
    with _fonts_context():
        import matplotlib

        fig, ax = _figure_and_axes(ax, 7.5, 4.4)
        cmap = matplotlib.colormaps["viridis"]
        for j, c in enumerate(cols):
            color = cmap(j / max(1, len(cols) - 1) * 0.9)
            ax.plot(xs[order], data[order, c], color=color, linewidth=1.2, alpha=0.9,
                    label=f"{c}: {clip_label(norms.input_labels[b][c], 12)}")
        # The median, not the mean: one position (often the first) can be far larger than the rest.
        ax.plot(xs[order], np.median(data[order], axis=1), color="black", linewidth=2.2, linestyle="--",
                label=f"median over all {n_pos} positions")
        if log:
            ax.set_yscale("log")
        _layer_ticks(ax, norms.sites)
        ax.set_ylabel("‖residual stream‖₂")
        ax.grid(True, alpha=0.3)
        legend = ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5),
                           title="position: token", title_fontsize=7.5)
        for t in legend.get_texts():
            t.set_parse_math(False)
        ax.set_title(title if title is not None else f"Residual-stream norm per layer — {norms.model_name}",
                     fontsize=9.5)
    return fig


# ============================================================================ token plane
def plot_trajectory(
    traj: Any,
    *,
    batch: int = 0,
    annotate_every: Optional[int] = None,
    title: Optional[str] = None,
    ax: Any = None,
) -> Any:
    """A position's path across layers in the plane of two token directions.

    Points are the final-normed residual stream at each site projected onto the plane of
    the two tokens' unembedding directions (arrows, rescaled to the path's extent). The
    dashed line is where the two tokens' logit-lens logits are equal; on each side the lens
    prefers the token written there.

    Args:
        traj: a :class:`TokenPlaneTrajectory` from :func:`lensbox.token_plane_trajectory`.
        annotate_every: label every k-th site (default: about eight labels).
    """
    from ..lenses._geometry import TokenPlaneTrajectory

    if not isinstance(traj, TokenPlaneTrajectory):
        raise InputError(
            "Expected a token-plane trajectory.",
            expected="a TokenPlaneTrajectory from lensbox.token_plane_trajectory(model, inputs, (' Mary', ' John'))",
            received=type(traj).__name__,
            fix="compute it first",
        )
    b = _check_batch(traj, batch)
    pts = traj.coords[b].double().numpy()  # [layer, 2]
    dirs = traj.directions.double().numpy()
    bias = traj.bias.double().numpy()
    la, lb = traj.token_labels
    n = len(traj.sites)
    every = annotate_every or max(1, math.ceil(n / 8))
    with _fonts_context():
        import matplotlib

        fig, ax = _figure_and_axes(ax, 6.6, 6.0)
        cmap = matplotlib.colormaps["viridis"]
        ax.plot(pts[:, 0], pts[:, 1], color="#999999", linewidth=1.0, zorder=1)
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=np.arange(n), cmap=cmap, s=28, zorder=2, edgecolors="white",
                        linewidths=0.5)
        for i, site in enumerate(traj.sites):
            if i % every == 0 or i == n - 1:
                ax.annotate(_site_axis_label(site), (pts[i, 0], pts[i, 1]), textcoords="offset points",
                            xytext=(5, 4), fontsize=7)
        extent = float(np.abs(pts).max()) if pts.size else 1.0
        extent = extent if extent > 0 else 1.0
        scale = 0.9 * extent / float(np.linalg.norm(dirs, axis=1).max())
        for k, (label, color) in enumerate(((la, "#c0392b"), (lb, "#2471a3"))):
            d = dirs[k] * scale
            ax.annotate("", xy=(d[0], d[1]), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="-|>", color=color, linewidth=1.6), zorder=3)
            unit = d / (np.linalg.norm(d) or 1.0)
            ax.annotate(f"{label} (W_U)", xy=(d[0], d[1]), xytext=(10 * unit[0], 10 * unit[1]),
                        textcoords="offset points", color=color, fontsize=9, parse_math=False,
                        ha="left" if unit[0] >= -0.2 else "right", va="bottom" if unit[1] >= -0.2 else "top")
        # Equal-logit line: c · (d_a - d_b) + (bias_a - bias_b) = 0.
        diff = dirs[0] - dirs[1]
        offset = bias[0] - bias[1]
        lim = 1.25 * extent
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        # Light shading: which of the two tokens the lens prefers in each part of the plane.
        grid = np.linspace(-lim, lim, 200)
        gx, gy = np.meshgrid(grid, grid)
        prefers_a = (gx * diff[0] + gy * diff[1] + offset) > 0
        ax.contourf(gx, gy, prefers_a.astype(float), levels=[-0.5, 0.5, 1.5], colors=["#2471a3", "#c0392b"],
                    alpha=0.07, zorder=0)
        if np.linalg.norm(diff) > 0:
            normal = diff / np.linalg.norm(diff)
            foot = -offset / np.linalg.norm(diff) * normal
            along = np.array([-normal[1], normal[0]])
            seg = np.stack([foot - 3 * lim * along, foot + 3 * lim * along])
            ax.plot(seg[:, 0], seg[:, 1], linestyle="--", color="#555555", linewidth=1.0,
                    label=f"equal logits: {la} = {lb}")
            from matplotlib.patches import Patch

            handles = ax.get_legend_handles_labels()[0] + [
                Patch(facecolor="#c0392b", alpha=0.2, label=f"lens prefers {la}"),
                Patch(facecolor="#2471a3", alpha=0.2, label=f"lens prefers {lb}"),
            ]
            ax.legend(handles=handles, fontsize=8, frameon=False, loc="lower left")
            for t in ax.get_legend().get_texts():
                t.set_parse_math(False)
        ax.axhline(0, color="#dddddd", linewidth=0.6, zorder=0)
        ax.axvline(0, color="#dddddd", linewidth=0.6, zorder=0)
        ax.set_aspect("equal")
        ax.set_xlabel(f"along {la}", fontsize=8)
        ax.set_ylabel(f"along the part of {lb} orthogonal to {la}", fontsize=8)
        ax.xaxis.label.set_parse_math(False)
        ax.yaxis.label.set_parse_math(False)
        bar = fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label("site index (0 = embeddings)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
        token = traj.input_labels[b][traj.pos]
        final_a, final_b = (float(v) for v in traj.logits[b, -1])
        t = title if title is not None else (
            f"Position {traj.pos} ({token!r}) across layers in the plane of {la!r} and {lb!r}\n"
            f"{traj.sites[-1].name}: logit {la!r} = {final_a:.2f}, {lb!r} = {final_b:.2f}"
        )
        ax.set_title(t, fontsize=9, parse_math=False)
    return fig


# ============================================================================ probes
PROBE_COLUMNS = ("site", "layer_depth", "offset", "top1", "top5", "bucket")


def plot_probe_accuracy(
    table: Any,
    *,
    metric: str = "top1",
    bucket: Optional[str] = None,
    title: Optional[str] = None,
) -> Any:
    """Probe accuracy per layer, one curve per offset (one panel per token bucket).

    Args:
        table: a pandas DataFrame with columns ``site, layer_depth, offset, top1, top5,
            bucket`` (e.g. ``probes.accuracy_table()``); one row per (site, offset, bucket).
        metric: ``'top1'`` or ``'top5'`` accuracy.
        bucket: draw only this bucket (default: one panel per bucket present).
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise InputError(
            "Expected a pandas DataFrame of probe accuracies.",
            expected=f"a DataFrame with columns {', '.join(PROBE_COLUMNS)}",
            received=type(table).__name__,
            fix="pass probes.accuracy_table()",
        )
    missing = [c for c in PROBE_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(
            "The probe table lacks columns.",
            expected=f"columns {', '.join(PROBE_COLUMNS)}",
            received=f"columns {list(table.columns)} (missing {missing})",
            fix="pass probes.accuracy_table()",
        )
    if metric not in ("top1", "top5"):
        raise InputError("Unknown probe metric.", expected="'top1' or 'top5'", received=repr(metric), fix="metric='top1'")
    if table.empty:
        raise InputError("The probe table is empty.", expected="at least one row", received="0 rows", fix="train probes first")
    buckets = [bucket] if bucket is not None else list(dict.fromkeys(table["bucket"].tolist()))
    if bucket is not None and bucket not in set(table["bucket"]):
        raise InputError(
            f"No rows for bucket {bucket!r}.",
            expected="one of " + ", ".join(map(repr, dict.fromkeys(table["bucket"]))),
            received=repr(bucket),
            fix="pick a bucket in the table, or bucket=None for all",
        )
    offsets = sorted(table["offset"].unique().tolist())
    ticks = table.drop_duplicates("layer_depth").sort_values("layer_depth")
    with _fonts_context():
        import matplotlib

        fig = _new_figure(min(16.0, 1.5 + 5.0 * len(buckets)), 4.2)
        axes = fig.subplots(1, len(buckets), sharey=True, squeeze=False)[0]
        cmap = matplotlib.colormaps["tab10" if len(offsets) <= 10 else "viridis"]
        for ax, bk in zip(axes, buckets):
            part = table[table["bucket"] == bk]
            for j, off in enumerate(offsets):
                rows = part[part["offset"] == off].sort_values("layer_depth")
                if rows.empty:
                    continue
                color = cmap(j % 10) if len(offsets) <= 10 else cmap(j / max(1, len(offsets) - 1))
                name = "offset 0 (current token)" if int(off) == 0 else f"offset {int(off):+d}"
                ax.plot(rows["layer_depth"], rows[metric], marker="o", markersize=3, color=color, label=name)
            step = max(1, math.ceil(len(ticks) / 12))
            shown = ticks.iloc[::step]
            ax.set_xticks(shown["layer_depth"].tolist(), [str(s) for s in shown["site"]], rotation=45, ha="right",
                          rotation_mode="anchor", fontsize=7)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(True, alpha=0.3)
            ax.set_title(f"bucket: {bk}", fontsize=9)
            ax.set_xlabel("site")
        axes[0].set_ylabel(f"{metric} accuracy")
        axes[-1].legend(fontsize=7.5, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.suptitle(
            title if title is not None else f"Input-reconstruction probes: {metric} accuracy per layer, one curve per offset",
            fontsize=9.5,
        )
    return fig


# ============================================================================ saving
_FORMATS = {".png", ".svg", ".pdf"}


def save_figure(fig: Any, path: Union[str, "os.PathLike[str]"], *, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (``.png``, ``.svg`` or ``.pdf``, chosen by the suffix); returns the path.

    SVG text is stored as outlines, so the file looks the same on machines without the fonts.
    """
    p = Path(path)
    if p.suffix.lower() not in _FORMATS:
        raise InputError(
            "Unsupported figure format.",
            expected="a path ending in .png, .svg or .pdf",
            received=str(p),
            fix=f"e.g. {p.with_suffix('.png')}",
        )
    p.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "path", "pdf.fonttype": 42}):
        fig.savefig(p, dpi=dpi, bbox_inches="tight", facecolor="white")
    return p


save = save_figure
