"""Plots (matplotlib, static; plotly only in :func:`plot_heatmap_interactive`).

``import lensbox.plot`` imports matplotlib lazily: nothing is imported until a plot is drawn.
"""

from typing import Any

_STATIC = (
    "plot_heatmap",
    "plot_compare_views",
    "plot_layer_metric",
    "plot_kl_by_layer",
    "plot_residual_norms",
    "plot_trajectory",
    "plot_probe_accuracy",
    "save_figure",
    "HEATMAP_METRICS",
)
_FONTS = ("use_fonts", "font_families", "FontWarning")

__all__ = list(_STATIC) + list(_FONTS) + ["plot_heatmap_interactive"]


def __getattr__(name: str) -> Any:
    if name in _STATIC:
        from . import _plot

        return getattr(_plot, name)
    if name in _FONTS:
        from . import _fonts

        return getattr(_fonts, name)
    if name == "plot_heatmap_interactive":
        from . import _interactive as _plot_interactive

        return _plot_interactive.plot_heatmap_interactive
    raise AttributeError(f"module 'lensbox.plot' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(__all__)
