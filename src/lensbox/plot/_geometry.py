"""Residual-stream geometry figures: norms across layers, confidence against norm, and one position's path in a
two-token plane."""

import math
from typing import Any

import numpy as np

from .._errors import InputError
from ._common import (
    PositionSpec,
    check_batch,
    clip_label,
    figure_and_axes,
    fonts_context,
    layer_ticks,
    literal_text,
    new_figure,
    select_positions,
    site_axis_label,
    site_x,
)

_COLOUR_A, _COLOUR_B = "#c0392b", "#2471a3"


def plot_residual_norms(
    norms: Any,
    *,
    batch: int = 0,
    positions: PositionSpec = None,
    max_positions: int = 16,
    log: bool = True,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """Residual-stream norm per layer: one line per position (labelled by its token), plus the median.

    Args:
        norms: a `ResidualNorms` from `lensbox.residual_norms`.
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
    b = check_batch(norms, batch)
    n_pos = int(norms.norms.shape[2])
    cols = select_positions(n_pos, positions, default_max=max_positions)
    xs = np.array([site_x(s) for s in norms.sites])
    order = np.argsort(xs)
    data = norms.norms[b].double().numpy()  # [layer, pos]
    with fonts_context():
        import matplotlib

        fig, ax = figure_and_axes(ax, 7.5, 4.4)
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
        layer_ticks(ax, norms.sites)
        ax.set_ylabel("‖residual stream‖₂")
        ax.grid(True, alpha=0.3)
        legend = ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5),
                           title="position: token", title_fontsize=7.5)
        literal_text(legend.get_texts())
        ax.set_title(title if title is not None else f"Residual-stream norm per layer — {norms.model_name}",
                     fontsize=9.5)
    return fig


def _token_arrows(ax: Any, dirs: "np.ndarray", labels: Any, extent: float) -> None:
    """The two tokens' unembedding directions as arrows from the origin, rescaled to the path's extent."""
    scale = 0.9 * extent / float(np.linalg.norm(dirs, axis=1).max())
    for k, (label, color) in enumerate(zip(labels, (_COLOUR_A, _COLOUR_B))):
        d = dirs[k] * scale
        ax.annotate("", xy=(d[0], d[1]), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", color=color, linewidth=1.6), zorder=3)
        unit = d / (np.linalg.norm(d) or 1.0)
        ax.annotate(f"{label} (W_U)", xy=(d[0], d[1]), xytext=(10 * unit[0], 10 * unit[1]),
                    textcoords="offset points", color=color, fontsize=9, parse_math=False,
                    ha="left" if unit[0] >= -0.2 else "right", va="bottom" if unit[1] >= -0.2 else "top")


def _preference_regions(ax: Any, dirs: "np.ndarray", bias: "np.ndarray", labels: Any, lim: float) -> None:
    """Shade where the lens prefers each token and draw the equal-logit line ``c · (d_a - d_b) + (b_a - b_b) = 0``."""
    from matplotlib.patches import Patch

    la, lb = labels
    diff, offset = dirs[0] - dirs[1], bias[0] - bias[1]
    grid = np.linspace(-lim, lim, 200)
    gx, gy = np.meshgrid(grid, grid)
    prefers_a = (gx * diff[0] + gy * diff[1] + offset) > 0
    ax.contourf(gx, gy, prefers_a.astype(float), levels=[-0.5, 0.5, 1.5], colors=[_COLOUR_B, _COLOUR_A],
                alpha=0.07, zorder=0)
    if np.linalg.norm(diff) == 0:
        return
    normal = diff / np.linalg.norm(diff)
    foot = -offset / np.linalg.norm(diff) * normal
    along = np.array([-normal[1], normal[0]])
    seg = np.stack([foot - 3 * lim * along, foot + 3 * lim * along])
    ax.plot(seg[:, 0], seg[:, 1], linestyle="--", color="#555555", linewidth=1.0, label=f"equal logits: {la} = {lb}")
    handles = ax.get_legend_handles_labels()[0] + [
        Patch(facecolor=_COLOUR_A, alpha=0.2, label=f"lens prefers {la}"),
        Patch(facecolor=_COLOUR_B, alpha=0.2, label=f"lens prefers {lb}"),
    ]
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="lower left")
    literal_text(ax.get_legend().get_texts())


SITE_LABEL_GID = "lensbox-site-label"


def _site_labels(fig: Any, ax: Any, pts: "np.ndarray", sites: Any, every: int) -> None:
    """Label every ``every``-th point with its site (the last and first first), skipping a label that would
    overlap one already placed: where the path bunches up, fewer labels rather than a pile of text."""
    n = len(sites)
    wanted = [i for i in range(n) if i % every == 0 or i == n - 1]
    order = [n - 1, 0] + [i for i in wanted if i not in (0, n - 1)]
    fig.canvas.draw()  # the final layout, so the text boxes below are where they will be drawn
    renderer = fig.canvas.get_renderer()
    placed: list = []
    for i in dict.fromkeys(order):
        text = ax.annotate(site_axis_label(sites[i]), (pts[i, 0], pts[i, 1]), textcoords="offset points",
                           xytext=(5, 4), fontsize=7)
        box = text.get_window_extent(renderer).expanded(1.1, 1.2)
        if any(box.overlaps(other) for other in placed):
            text.remove()
            continue
        text.set_gid(SITE_LABEL_GID)
        placed.append(box)


def plot_trajectory(
    traj: Any,
    *,
    batch: int = 0,
    annotate_every: int | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """A position's path across layers in the plane of two token directions.

    Points are the final-normed residual stream at each site projected onto the plane of
    the two tokens' unembedding directions (arrows, rescaled to the path's extent). The
    dashed line is where the two tokens' logit-lens logits are equal; on each side the lens
    prefers the token written there.

    Args:
        traj: a `TokenPlaneTrajectory` from `lensbox.token_plane_trajectory`.
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
    b = check_batch(traj, batch)
    pts = traj.coords[b].double().numpy()  # [layer, 2]
    la, lb = traj.token_labels
    n = len(traj.sites)
    every = annotate_every or max(1, math.ceil(n / 8))
    extent = float(np.abs(pts).max()) if pts.size else 1.0
    extent = extent if extent > 0 else 1.0
    lim = 1.25 * extent
    with fonts_context():
        fig, ax = figure_and_axes(ax, 6.6, 6.0)
        ax.plot(pts[:, 0], pts[:, 1], color="#999999", linewidth=1.0, zorder=1)
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=np.arange(n), cmap="viridis", s=28, zorder=2, edgecolors="white",
                        linewidths=0.5)
        _token_arrows(ax, traj.directions.double().numpy(), (la, lb), extent)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        _preference_regions(ax, traj.directions.double().numpy(), traj.bias.double().numpy(), (la, lb), lim)
        ax.axhline(0, color="#dddddd", linewidth=0.6, zorder=0)
        ax.axvline(0, color="#dddddd", linewidth=0.6, zorder=0)
        ax.set_aspect("equal")
        ax.set_xlabel(f"along {la}", fontsize=8)
        ax.set_ylabel(f"along the part of {lb}\northogonal to {la}", fontsize=8)
        literal_text((ax.xaxis.label, ax.yaxis.label))
        bar = fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.03, shrink=0.8)
        bar.set_label("site index (0 = embeddings)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
        token = traj.input_labels[b][traj.pos]
        final_a, final_b = (float(v) for v in traj.logits[b, -1])
        if title is None:
            title = (f"Position {traj.pos} ({token!r}) across layers in the plane of {la!r} and {lb!r}\n"
                     f"{traj.sites[-1].name}: logit {la!r} = {final_a:.2f}, {lb!r} = {final_b:.2f}")
        ax.set_title(title, fontsize=9, parse_math=False)
        _site_labels(fig, ax, pts, traj.sites, every)
    return fig


# --------------------------------------------------------------------------- confidence against norm
def confidence_norm_data(
    result: Any, norms: Any, *, batch: int = 0, positions: PositionSpec = None
) -> dict[str, "np.ndarray"]:
    """The numbers `plot_confidence_vs_norm` draws, one entry per (site, position) cell.

    Returns ``norm`` (‖resid‖₂ before any normalisation), ``top1_prob``, ``entropy`` (nats),
    ``site_index``, ``site_x`` (the layer axis coordinate) and ``pos``, each a flat array.

    Args:
        result: a `LensResult`, e.g. ``lensbox.logit_lens(model, text)``.
        norms: a `ResidualNorms` of the same inputs and sites, e.g.
            ``lensbox.residual_norms(model, text)`` with the same ``sites=`` / ``include_mid=``.
        batch: which input of the batch.
        positions: which positions (default: every position but the first, whose norm is
            usually far from the rest); same forms as `plot_heatmap`'s ``positions``.
    """
    from ..lenses._geometry import ResidualNorms
    from ..lenses._result import LensResult

    if not isinstance(result, LensResult) or not isinstance(norms, ResidualNorms):
        raise InputError(
            "Expected a lens result and the residual norms of the same inputs.",
            expected="(LensResult, ResidualNorms), e.g. lensbox.logit_lens(model, text), lensbox.residual_norms(model, text)",
            received=f"({type(result).__name__}, {type(norms).__name__})",
            fix="compute both on the same text",
        )
    same_tokens = result.tokens.shape == norms.tokens.shape and bool((result.tokens == norms.tokens).all())
    if list(result.sites) != list(norms.sites) or not same_tokens:
        raise InputError(
            "The lens result and the residual norms cover different sites or tokens.",
            expected="the same inputs and sites for both",
            received=f"sites {len(result.sites)} vs {len(norms.sites)}, tokens {tuple(result.tokens.shape)} vs "
                     f"{tuple(norms.tokens.shape)}",
            fix="pass the same text and the same sites= / include_mid= to logit_lens and residual_norms",
        )
    b = check_batch(result, batch)
    n_pos = int(result.tokens.shape[1])
    cols = select_positions(n_pos, positions if positions is not None else slice(1 if n_pos > 1 else 0, None),
                            default_max=n_pos)
    n_sites = len(result.sites)
    grid = np.ix_(range(n_sites), cols)
    site_index = np.repeat(np.arange(n_sites), len(cols))
    return {
        "norm": norms.norms[b].double().numpy()[grid].reshape(-1),
        "top1_prob": result.top_logprobs[b, :, :, 0].exp().double().numpy()[grid].reshape(-1),
        "entropy": result.entropy[b].double().numpy()[grid].reshape(-1),
        "site_index": site_index,
        "site_x": np.array([site_x(s) for s in result.sites])[site_index],
        "pos": np.tile(np.array(cols), n_sites),
    }


def plot_confidence_vs_norm(
    result: Any,
    norms: Any,
    *,
    batch: int = 0,
    positions: PositionSpec = None,
    title: str | None = None,
) -> Any:
    """Confidence against size: each (site, position) cell's residual norm against its top-1
    probability (left) and entropy (right), coloured by layer.

    The norm is the raw stream's, before the final norm the lens applies; `confidence_norm_data`
    returns the plotted numbers.

    Args:
        result: a `LensResult`, e.g. ``lensbox.logit_lens(model, text)``.
        norms: a `ResidualNorms` of the same inputs and sites, e.g. ``lensbox.residual_norms(model, text)``.
        batch: which input of the batch.
        positions: which positions (default: all but the first); see `confidence_norm_data`.
        title: figure title (default: lens and model).
    """
    data = confidence_norm_data(result, norms, batch=batch, positions=positions)
    with fonts_context():
        fig = new_figure(10.0, 4.0)
        axes = fig.subplots(1, 2)
        for ax, key, label in ((axes[0], "top1_prob", "top-1 probability"), (axes[1], "entropy", "entropy, nats")):
            sc = ax.scatter(data["norm"], data[key], c=data["site_x"], cmap="viridis", s=9, alpha=0.75,
                            edgecolors="none")
            ax.set_xscale("log")
            ax.set_xlabel("‖residual stream‖₂ (before the final norm)", fontsize=8)
            ax.set_ylabel(label, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
        axes[0].set_ylim(-0.02, 1.02)
        bar = fig.colorbar(sc, ax=list(axes), fraction=0.035, pad=0.02)
        bar.set_label("layer (-1 = embeddings)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
        fig.suptitle(title if title is not None else
                     f"Confidence against residual norm — {result.lens} on {result.model_name}", fontsize=9.5)
    return fig
