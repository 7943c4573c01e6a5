"""Input-reconstruction probe figures: accuracy per layer, one curve per offset, one panel per token bucket."""

from typing import Any, Literal

from .._errors import InputError
from ._common import fonts_context, layer_ticks, new_figure

PROBE_COLUMNS = ("site", "layer_depth", "offset", "top1", "top5", "bucket")
_TICK_SPACING_IN = 0.45  # room for one horizontal layer label ("embed", "29") at 8 pt


def _check_table(table: Any, metric: str, bucket: str | None) -> list[str]:
    """Validate a probe accuracy table; return the buckets to draw."""
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
    present = list(dict.fromkeys(table["bucket"].tolist()))
    if bucket is not None and bucket not in present:
        raise InputError(
            f"No rows for bucket {bucket!r}.",
            expected="one of " + ", ".join(map(repr, present)),
            received=repr(bucket),
            fix="pick a bucket in the table, or bucket=None for all",
        )
    return [bucket] if bucket is not None else present


def plot_probe_accuracy(
    table: Any,
    *,
    metric: Literal["top1", "top5"] = "top1",
    bucket: str | None = None,
    title: str | None = None,
) -> Any:
    """Probe accuracy per layer, one curve per offset (one panel per token bucket).

    The x axis is the layer axis of the other per-layer figures: ``embed`` = -1,
    ``resid_post.i`` = i, ``resid_mid.i`` = i - 0.5 (from the table's ``layer_depth``).

    Args:
        table: a pandas DataFrame with columns ``site, layer_depth, offset, top1, top5,
            bucket`` (e.g. ``probes.accuracy_table()``); one row per (site, offset, bucket).
        metric: ``'top1'`` or ``'top5'`` accuracy.
        bucket: draw only this bucket (default: one panel per bucket present).
    """
    buckets = _check_table(table, metric, bucket)
    offsets = sorted(table["offset"].unique().tolist())
    # Sites on the layer axis of the other curves (embed = -1, resid_post.i = i, resid_mid.i = i - 0.5),
    # with short horizontal tick labels, as many as the panel width holds.
    xs = sorted({float(d) / 2.0 - 1.0 for d in table["layer_depth"]})
    panel_width = min(16.0, 1.5 + 5.0 * len(buckets)) / len(buckets) - 0.6
    max_ticks = max(2, int(panel_width / _TICK_SPACING_IN))
    with fonts_context():
        import matplotlib

        fig = new_figure(min(16.0, 1.5 + 5.0 * len(buckets)), 4.2)
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
                ax.plot(rows["layer_depth"].to_numpy() / 2.0 - 1.0, rows[metric], marker="o", markersize=3,
                        color=color, label=name)
            layer_ticks(ax, xs, max_ticks=max_ticks, xlabel="layer (embed = input embeddings)")
            ax.tick_params(axis="x", labelsize=8)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(True, alpha=0.3)
            ax.set_title(f"bucket: {bk}", fontsize=9)
        axes[0].set_ylabel(f"{metric} accuracy")
        axes[-1].legend(fontsize=7.5, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.suptitle(
            title if title is not None else f"Input-reconstruction probes: {metric} accuracy per layer, one curve per offset",
            fontsize=9.5,
        )
    return fig
