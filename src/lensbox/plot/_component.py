"""The component-lens heatmap: components (rows) x positions (columns), one statistic as colour."""

from typing import Any

import numpy as np

from ._common import PositionSpec, clip_label, figure_and_axes, fonts_context, select_positions

#: Statistics drawn on a diverging scale centred at 0 (logits); the rank uses a log scale.
_DIVERGING = ("next_logit", "top1_logit", "bottom1_logit")


def plot_components(
    result: Any,
    statistic: str = "next_logit",
    *,
    batch: int = 0,
    positions: PositionSpec = None,
    max_positions: int = 16,
    label_chars: int = 8,
    cell_text: bool = True,
    cmap: str | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """Heatmap of a `ComponentLensResult`: one row per component, one column per position.

    Each cell prints the token the component promotes most there; its colour is ``statistic``:
    ``'next_logit'`` (default: the component's logit for the next input token, red = promotes it,
    blue = suppresses it), ``'next_rank'`` (that token's rank in the component's readout, log
    scale), ``'top1_logit'`` or ``'bottom1_logit'``. The embeddings are the bottom row.

    Args:
        result: a `lensbox.lenses.ComponentLensResult`.
        statistic: the colour (see above).
        batch: which input of the batch.
        positions: the columns (as for `plot_heatmap`: None = all or the last ``max_positions``).
        label_chars: token labels longer than this are shortened with '…'.
        cell_text: print the promoted token in each cell.
        cmap: a matplotlib colormap name.
        title: figure title (default: model, statistic and norm convention).
        ax: draw into this Axes instead of a new figure.

    Returns the matplotlib Figure.
    """
    values_all = result.statistic(statistic)  # refuses unknown names
    n_pos = int(result.tokens.shape[1])
    cols = select_positions(n_pos, positions, default_max=max_positions)
    values = values_all[batch][:, cols].numpy()
    n_r, n_c = values.shape
    with fonts_context():
        import matplotlib
        from matplotlib import colors

        cell_w = max(0.5, 0.085 * label_chars + 0.05)
        fig, ax = figure_and_axes(ax, 1.8 + n_c * cell_w + 1.3, 2.2 + n_r * 0.27)
        finite = values[np.isfinite(values)]
        if statistic in _DIVERGING:
            span = float(np.abs(finite).max()) if finite.size else 1.0
            norm: Any = colors.TwoSlopeNorm(vcenter=0.0, vmin=-max(span, 1e-9), vmax=max(span, 1e-9))
            colormap = matplotlib.colormaps[cmap or "RdBu_r"]
        else:
            values = values + 1.0  # rank 0 -> 1 on the log scale
            finite = values[np.isfinite(values)]
            norm = colors.LogNorm(vmin=1.0, vmax=max(float(finite.max()) if finite.size else 10.0, 10.0))
            colormap = matplotlib.colormaps[cmap or "viridis_r"]
        colormap = colormap.with_extremes(bad="#d9d9d9")
        image = ax.imshow(np.ma.masked_invalid(values), cmap=colormap, norm=norm, aspect="auto", origin="lower",
                          interpolation="nearest", extent=(-0.5, n_c - 0.5, -0.5, n_r - 0.5))
        if cell_text:
            for ri in range(n_r):
                for ci, col in enumerate(cols):
                    ax.text(ci, ri, clip_label(result.top_labels[batch][ri][col][0], label_chars), ha="center",
                            va="center", fontsize=7, parse_math=False)
        labels_in = result.input_labels[batch]
        ax.set_yticks(range(n_r), [c.name for c in result.components], fontsize=8)
        ax.set_xticks(range(n_c), [clip_label(labels_in[c], label_chars) for c in cols], rotation=45, ha="right",
                      rotation_mode="anchor", fontsize=8, parse_math=False)
        ax.set_xlabel("input token (position i)")
        ax.set_ylabel("component (embeddings at the bottom)")
        top = ax.secondary_xaxis("top")
        top.set_xticks(range(n_c), [clip_label(labels_in[c + 1], label_chars) if c + 1 < n_pos else "—" for c in cols],
                       rotation=45, ha="left", rotation_mode="anchor", fontsize=8, parse_math=False)
        top.set_xlabel("next token (target of position i)", fontsize=8)
        ax.tick_params(length=0)
        top.tick_params(length=0)
        bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, shrink=min(1.0, 0.25 + 0.05 * n_r))
        label = "rank of the next token (1 = top)" if statistic == "next_rank" else statistic.replace("_", " ")
        bar.set_label(label, fontsize=8)
        bar.ax.tick_params(labelsize=7)
        if title is None:
            title = (f"component lens on {result.model_name} — colour: {label}; cell: the token it promotes most; "
                     f"final norm: {result.norm}")
        fig.suptitle(title, fontsize=9.5)
    return fig


__all__ = ["plot_components"]
