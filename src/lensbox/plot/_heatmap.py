"""The logit-lens heatmap (sites x positions) and the two KL views side by side.

Each cell prints the top-1 token decoded at one site and position and is coloured by a
metric of the metric table; cells agreeing with the model's final top-1 are outlined.
"""

from typing import Any

import numpy as np
from jaxtyping import Float

from ..core._sites import SitesSpec
from ..lenses._metrics import Metric, get_metric, metric_names
from ..lenses._result import LensResult
from ._common import (
    Number,
    PositionSpec,
    check_batch,
    clip_label,
    figure_and_axes,
    fonts_context,
    new_figure,
    select_positions,
    select_rows,
    site_axis_label,
    wrap_title,
)

#: Every metric a heatmap can colour by, from the metric table (kept as a name for compatibility).
HEATMAP_METRICS: tuple[str, ...] = metric_names("result")

#: Default top of the colour scale of KL metrics, in nats (as in the logit-lens post); ``kl_cap=None`` lifts it.
KL_CAP = 30.0

#: Default largest width of a heatmap figure, in inches. The default number of positions is
#: the number that fits; a page column of 688 px then shows an 8-inch figure saved at 110 dpi
#: at 78% of its size, so 8-point cell text stays about 9.5 px tall without zooming.
MAX_WIDTH = 8.0

#: Font size (points) of the token printed in each cell (labels of up to 8 characters; longer ones get 7).
CELL_FONT = 8.0

#: The label (``Figure.get_label()``) of a heatmap figure ("-pair" added for `plot_compare_views`).
HEATMAP_LABEL = "lensbox-heatmap"

# Figure layout, in inches: room left of the cells (site labels), right of them (colour bar),
# above and below them (tilted token labels, titles), and the height of one row.
_LEFT, _RIGHT, _TOP_BOTTOM, _ROW_H = 0.95, 1.15, 2.6, 0.27

_OUTLINE_GID = "lensbox-agree"
_CELL_TEXT_GID = "lensbox-cell"


def heatmap_metric(metric: str) -> Metric:
    """The metric-table record a heatmap colours by (aliases resolved; only per-cell metrics)."""
    return get_metric(metric, scope="result")


def is_kl(metric: Metric) -> bool:
    """Whether ``metric`` is one of the KL divergences (the ones ``kl_cap`` applies to)."""
    return metric.name.startswith("kl")


def capped_vmax(metric: Metric, auto_vmax: float, kl_cap: float | None) -> float:
    """``auto_vmax`` lowered to ``kl_cap`` for KL metrics (unchanged for other metrics or ``kl_cap=None``)."""
    if kl_cap is not None and is_kl(metric) and auto_vmax > kl_cap:
        return float(kl_cap)
    return auto_vmax


def colour_label(metric: Metric, values: Float[np.ndarray, "..."], vmax: float | None, kl_cap: float | None) -> str:
    """The colour-bar label, stating the KL cap when it clipped some of ``values``."""
    finite = values[np.isfinite(values)]
    capped = kl_cap is not None and is_kl(metric) and vmax == kl_cap and finite.size and finite.max() > kl_cap
    return f"{metric.label} (colour capped at {kl_cap:g})" if capped else metric.label


def heatmap_values(result: LensResult, metric: str, *, batch: int = 0) -> Float[np.ndarray, "site pos"]:
    """The ``[site, pos]`` array a heatmap colours, for ``metric`` (ranks are 1-based, NaN where undefined)."""
    m = heatmap_metric(metric)
    t = m.values(result, batch=check_batch(result, batch)).double()
    if m.scale == "rank":
        t = t.masked_fill(t < 0, float("nan")) + 1.0
    return t.cpu().numpy()


def _luminance(rgba: Float[np.ndarray, "*cells 4"]) -> Float[np.ndarray, "*cells"]:
    """Relative luminance (sRGB) of RGBA colours, one per cell."""
    c = np.asarray(rgba, dtype=np.float64)[..., :3]
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def colour_norm(
    scale: str, values: Float[np.ndarray, "site pos"], vmin: Number | None, vmax: Number | None, vocab: int
) -> Any:
    """The matplotlib norm for ``scale``: [0, 1] for probabilities, log for ranks, 2nd..98th percentile else."""
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


def cell_font(label_chars: int) -> float:
    """The cell-text font size, in points, for labels of at most ``label_chars`` characters."""
    return CELL_FONT if label_chars <= 8 else CELL_FONT - 1.0


def cell_width(label_chars: int) -> float:
    """Width of one heatmap column, in inches: room for a ``label_chars``-character token in the cell font."""
    return max(0.42, 0.0078 * cell_font(label_chars) * min(label_chars, 12) + 0.08)


def heatmap_size(n_rows: int, n_cols: int, *, label_chars: int = 8) -> tuple[float, float]:
    """``(width, height)`` in inches of a heatmap of ``n_rows`` sites and ``n_cols`` positions."""
    return _LEFT + n_cols * cell_width(label_chars) + _RIGHT, _TOP_BOTTOM + n_rows * _ROW_H


def columns_that_fit(max_width: float | None, *, label_chars: int = 8, minimum: int = 4) -> int | None:
    """How many positions fit in a heatmap at most ``max_width`` inches wide (at least ``minimum``; None: no limit)."""
    if max_width is None:
        return None
    return max(minimum, int((max_width - _LEFT - _RIGHT) // cell_width(label_chars)))


def _draw_cells(
    ax: Any, result: LensResult, b: int, rows: list[int], cols: list[int], values: Float[np.ndarray, "site pos"],
    colormap: Any, norm: Any, *, label_chars: int, cell_text: bool, outline: bool,
) -> None:
    """The top-1 token printed in each cell (black or white for contrast) and the agreement outlines."""
    from matplotlib import patheffects
    from matplotlib.patches import Rectangle

    top1 = result.top_ids[b, :, :, 0]
    final = result.final_top1[b]
    font_size = cell_font(label_chars)
    # A white halo keeps the dark outline visible on dark cells.
    halo = [patheffects.Stroke(linewidth=2.8, foreground="white"), patheffects.Normal()]
    # White text on dark cells; the colours of all cells at once (one call instead of one per cell).
    white = np.isfinite(values) & (_luminance(colormap(norm(values))) <= 0.35)
    for ri, row in enumerate(rows):
        for ci, col in enumerate(cols):
            if cell_text:
                color = "white" if white[ri, ci] else "black"
                text = ax.text(ci, ri, clip_label(result.top_labels[b][row][col][0], label_chars),
                               ha="center", va="center", fontsize=font_size, color=color, parse_math=False)
                text.set_gid(_CELL_TEXT_GID)
            if outline and int(final[col]) >= 0 and bool(top1[row, col] == final[col]):
                rect = Rectangle((ci - 0.46, ri - 0.44), 0.92, 0.88, fill=False, edgecolor="#111111",
                                 linewidth=1.3, path_effects=halo)
                rect.set_gid(_OUTLINE_GID)
                ax.add_patch(rect)


def _label_axes(ax: Any, result: LensResult, b: int, rows: list[int], cols: list[int], label_chars: int) -> None:
    """Sites on y, input tokens at the bottom, next-token targets (``(*)`` where the model is right) at the top."""
    n_pos = int(result.tokens.shape[1])
    labels_in = result.input_labels[b]
    final, toks = result.final_top1[b], result.tokens[b]
    ax.set_yticks(range(len(rows)), [site_axis_label(result.sites[r]) for r in rows], fontsize=8)
    ax.set_xticks(range(len(cols)), [clip_label(labels_in[c], label_chars) for c in cols],
                  rotation=45, ha="right", rotation_mode="anchor", fontsize=8, parse_math=False)
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
    top.set_xticks(range(len(cols)), top_labels, rotation=45, ha="left", rotation_mode="anchor", fontsize=8,
                   parse_math=False)
    top.set_xlabel("next token (target of position i);  (*) = model's final top-1 is right", fontsize=8)
    ax.tick_params(length=0)
    top.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _colour_bar(
    fig: Any, ax: Any, image: Any, values: Float[np.ndarray, "site pos"], spec: Metric, n_rows: int, label: str
) -> Any:
    """The colour bar, with an arrow at an end whose values were clipped."""
    norm = image.norm
    extend = "neither"
    finite = values[np.isfinite(values)]
    if spec.scale == "linear" and finite.size:
        over, under = finite.max() > norm.vmax, finite.min() < norm.vmin
        extend = "both" if over and under else "max" if over else "min" if under else "neither"
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, extend=extend, shrink=min(1.0, 0.25 + 0.05 * n_rows))
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return bar


def plot_heatmap(
    result: LensResult,
    metric: str = "top1",
    *,
    batch: int = 0,
    positions: PositionSpec = None,
    max_positions: int | None = None,
    max_width: float | None = MAX_WIDTH,
    sites: SitesSpec = None,
    vmin: Number | None = None,
    vmax: Number | None = None,
    cmap: str | None = None,
    label_chars: int = 8,
    outline: bool = True,
    cell_text: bool = True,
    kl_cap: float | None = KL_CAP,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """The logit-lens heatmap of one input: rows = sites, columns = positions.

    Each cell prints the top-1 token decoded at that site and position; its colour is
    ``metric``. The input tokens are the tilted labels at the bottom; the top labels are
    the next-token targets (position ``i`` predicts token ``i + 1``), marked ``(*)`` where
    the model's final top-1 guess is that token. Cells whose top-1 equals the model's
    final top-1 are outlined. The embeddings are the bottom row, the last layer the top.

    Args:
        result: a `LensResult` (logit lens, tuned lens, ...).
        metric: colour. ``'top1'`` probability of the top-1 guess (default),
            ``'top1_logprob'``, ``'logprob'`` / ``'next_prob'`` of the true next token,
            ``'rank'`` of the true next token, ``'final_rank'`` of the final top-1 or
            ``'input_rank'`` of the input token itself (log colour scale, 1 = top), ``'kl'`` = KL(final ‖ layer) ("compare with final
            layer"), ``'kl_input'`` = KL(first layer ‖ layer) ("compare with first layer"),
            ``'kl_reverse'``, ``'kl_input_reverse'``, ``'entropy'``, ``'ce'``.
        batch: which input of the batch.
        positions: the window of positions (columns) — ``None``: all, or the last
            ``max_positions`` of a long input; an int k: the last k; a slice; a
            ``(start, stop)`` pair; or a list of positions.
        max_positions: how many positions ``positions=None`` shows at most (default: as many
            as fit in ``max_width``, 10 with 8-character labels).
        max_width: the default figure width limit, in inches (default 8, readable in a 688 px
            page column); it sets the default ``max_positions``. An explicit ``positions``
            window wider than that makes a wider figure. ``None``: no limit (every position).
        sites: which rows (default all sites of the result), e.g. ``result.sites[::2]``.
        vmin: bottom of the colour scale (default: 0 for probabilities, rank 1 for ranks, the
            smallest value shown elsewhere).
        vmax: top of the colour scale (default: 1 for probabilities, the largest rank shown
            on a log scale for ranks, the 98th percentile elsewhere). Pass the same ``vmax`` to
            compare two KL views on one scale.
        kl_cap: for KL metrics, the colour scale stops at this many nats (default 30, as in
            the logit-lens post; the colour bar says so when cells exceed it); ``None``: no cap.
        cmap: a matplotlib colormap name.
        label_chars: token labels longer than this are shortened with '…'.
        outline: outline cells that agree with the final top-1.
        cell_text: print the top-1 token in each cell.
        title: figure title (default: lens, model and metric).
        ax: draw into this Axes instead of a new figure.

    Returns the matplotlib Figure.
    """
    spec = heatmap_metric(metric)
    b = check_batch(result, batch)
    n_pos = int(result.tokens.shape[1])
    fit = columns_that_fit(max_width, label_chars=label_chars)
    default_max = max_positions if max_positions is not None else fit if fit is not None else n_pos
    cols = select_positions(n_pos, positions, default_max=default_max)
    rows = select_rows(result, sites)
    values = heatmap_values(result, spec.name, batch=b)[np.ix_(rows, cols)]
    vocab = max(int(result.next_rank.max()) + 1, int(result.final_top1_rank.max()) + 1, 10,
                int(result.input_rank.max()) + 1 if result.input_rank is not None else 0)
    with fonts_context():
        import matplotlib

        n_r, n_c = len(rows), len(cols)
        own_figure = ax is None
        fig, ax = figure_and_axes(ax, *heatmap_size(n_r, n_c, label_chars=label_chars))
        if own_figure:
            fig.set_label(HEATMAP_LABEL)
        colormap = matplotlib.colormaps[cmap or spec.cmap].with_extremes(bad="#d9d9d9")
        norm = colour_norm(spec.scale, values, vmin, vmax, vocab)
        if vmax is None and capped_vmax(spec, norm.vmax, kl_cap) != norm.vmax:
            norm = colour_norm(spec.scale, values, vmin, kl_cap, vocab)
        image = ax.imshow(np.ma.masked_invalid(values), cmap=colormap, norm=norm, aspect="auto", origin="lower",
                          interpolation="nearest", extent=(-0.5, n_c - 0.5, -0.5, n_r - 0.5))
        _draw_cells(ax, result, b, rows, cols, values, colormap, norm, label_chars=label_chars,
                    cell_text=cell_text, outline=outline)
        _label_axes(ax, result, b, rows, cols, label_chars)
        _colour_bar(fig, ax, image, values, spec, n_r, colour_label(spec, values, norm.vmax, kl_cap))
        if title is None:
            window = f"; positions {cols[0]}–{cols[-1]} of 0–{n_pos - 1}" if len(cols) < n_pos else ""
            outline_note = "; outlined = agrees with the final top-1" if outline else ""
            title = f"{result.lens} on {result.model_name} — colour: {spec.label}{outline_note}{window}"
        fig.suptitle(wrap_title(title, float(fig.get_size_inches()[0]), 9.5), fontsize=9.5)
    return fig


def heatmap_cell_texts(fig: Any) -> list[Any]:
    """The per-cell token Text artists of a `plot_heatmap` figure (row-major, bottom row first)."""
    return [t for ax in fig.axes for t in ax.texts if t.get_gid() == _CELL_TEXT_GID]


def heatmap_outlines(fig: Any) -> list[Any]:
    """The outline Rectangles (cells agreeing with the final top-1) of a `plot_heatmap` figure."""
    return [p for ax in fig.axes for p in ax.patches if p.get_gid() == _OUTLINE_GID]


_VIEW_NOTES = {"kl": "compare with the final layer", "kl_input": "compare with the first layer (input embeddings)"}


def plot_compare_views(
    result: LensResult,
    *,
    batch: int = 0,
    positions: PositionSpec = None,
    max_positions: int | None = None,
    max_width: float | None = MAX_WIDTH,
    sites: SitesSpec = None,
    vmax: Number | None = None,
    label_chars: int = 8,
    kl_cap: float | None = KL_CAP,
) -> Any:
    """Two heatmaps on one colour scale: KL(final ‖ layer) and KL(first layer ‖ layer).

    "Compare with the final layer" and "compare with the first layer", as in the logit-lens
    post's input-discarding section: side by side when both fit in ``max_width`` inches,
    otherwise one above the other, each as wide as a single `plot_heatmap`. ``positions``,
    ``max_positions``, ``max_width``, ``sites`` and ``label_chars`` mean what they mean there.
    ``vmax`` defaults to the 98th percentile of both views together, at most ``kl_cap`` nats
    (``None``: no cap).
    """
    b = check_batch(result, batch)
    n_pos = int(result.tokens.shape[1])
    fit = columns_that_fit(max_width, label_chars=label_chars)
    default_max = max_positions if max_positions is not None else fit if fit is not None else n_pos
    cols = select_positions(n_pos, positions, default_max=default_max)
    rows = select_rows(result, sites)
    views = tuple(_VIEW_NOTES)
    if vmax is None:
        both = np.concatenate([heatmap_values(result, m, batch=b)[np.ix_(rows, cols)].ravel() for m in views])
        both = both[np.isfinite(both)]
        vmax = float(np.percentile(both, 98)) if both.size else 1.0
        vmax = capped_vmax(heatmap_metric("kl"), vmax if vmax > 0 else 1.0, kl_cap)
    with fonts_context():
        width, height = heatmap_size(len(rows), len(cols), label_chars=label_chars)
        side_by_side = max_width is None or 2 * width <= max_width
        fig = new_figure(2 * width, height) if side_by_side else new_figure(width, 2 * height)
        fig.set_label(HEATMAP_LABEL + "-pair")
        axes = fig.subplots(1, 2) if side_by_side else fig.subplots(2, 1)
        for ax, m in zip(axes, views):
            plot_heatmap(result, m, batch=b, positions=cols, sites=[result.sites[r] for r in rows], vmin=0.0,
                         vmax=vmax, label_chars=label_chars, kl_cap=kl_cap, ax=ax, title="")
            ax.set_title(f"{heatmap_metric(m).label} — {_VIEW_NOTES[m]}", fontsize=9)
        title = f"{result.lens} on {result.model_name}: where does each layer stand between input and output?"
        fig.suptitle(wrap_title(title, float(fig.get_size_inches()[0]), 10.0), fontsize=10)
    return fig
