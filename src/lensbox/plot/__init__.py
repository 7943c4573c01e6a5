"""Plots of lensbox results (matplotlib, static; plotly only in `plot_heatmap_interactive`).

Every function takes a result (a ``LensResult``, ``LensEvaluation``, ``ResidualNorms``,
``TokenPlaneTrajectory``, ``LogitAttribution`` or a probe accuracy table) and returns a figure; none runs a model.
``import lensbox.plot`` imports no plotting library: matplotlib is imported when a plot is
drawn, plotly only by the interactive heatmap.

Internals, one concept per module:

* ``_common``: the headless figure, the font context, position and site selection, the
  layer axis, `save_figure`;
* ``_heatmap``: `plot_heatmap` (sites x positions, top-1 token per cell, coloured by a
  metric of ``lensbox.lenses``' metric table) and `plot_compare_views`;
* ``_curves``: per-layer curves, `plot_layer_metric`, `plot_kl_by_layer`,
  `plot_evaluation`;
* ``_component``: `plot_components` (components x positions of a ``ComponentLensResult``);
* ``_geometry``: `plot_residual_norms`, `plot_confidence_vs_norm` (its numbers:
  `confidence_norm_data`), `plot_trajectory`;
* ``_probes``: `plot_probe_accuracy`;
* ``_attribution``: `plot_attribution` (a bar per component at one position) and
  `plot_attribution_heads` (layer x head heatmap) of a ``LogitAttribution``;
* ``_interactive``: `plot_heatmap_interactive` (plotly, optional);
* ``_fonts``: the fallback list of font families for labels in many scripts.
"""

import importlib
from typing import Any

# public name -> private module that defines it
_WHERE = {
    "plot_heatmap": "_heatmap",
    "plot_compare_views": "_heatmap",
    "heatmap_values": "_heatmap",
    "heatmap_cell_texts": "_heatmap",
    "heatmap_outlines": "_heatmap",
    "HEATMAP_METRICS": "_heatmap",
    "plot_layer_metric": "_curves",
    "plot_kl_by_layer": "_curves",
    "plot_evaluation": "_curves",
    "layer_summary": "_curves",
    "plot_components": "_component",
    "plot_residual_norms": "_geometry",
    "plot_trajectory": "_geometry",
    "plot_confidence_vs_norm": "_geometry",
    "confidence_norm_data": "_geometry",
    "plot_probe_accuracy": "_probes",
    "plot_attribution": "_attribution",
    "plot_attribution_heads": "_attribution",
    "save_figure": "_common",
    "select_positions": "_common",
    "clip_label": "_common",
    "plot_heatmap_interactive": "_interactive",
    "use_fonts": "_fonts",
    "font_families": "_fonts",
    "FontWarning": "_fonts",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lensbox.plot' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list:
    return sorted(__all__)
