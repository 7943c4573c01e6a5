"""The optional plotly heatmap: same cells/outlines/stars as the static one; a clear error without plotly."""

import sys

import numpy as np
import pytest

from lensbox._errors import InputError
from test_plot import make_result


def test_missing_plotly_gives_a_clear_error(monkeypatch):
    import lensbox.plot._interactive as pi

    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(InputError, match="pip install plotly"):
        pi.plot_heatmap_interactive(make_result())


def test_importing_lensbox_does_not_import_plotly():
    import subprocess

    code = "import sys, lensbox, lensbox.plot._heatmap, lensbox.plot._interactive; print('plotly' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_interactive_heatmap_matches_result():
    pytest.importorskip("plotly", reason="plotly is an optional extra (pip install plotly)")
    from lensbox.plot._interactive import plot_heatmap_interactive

    r = make_result()
    fig = plot_heatmap_interactive(r, "kl", label_chars=40)
    heat = fig.data[0]
    n_sites, n_pos = r.kl_final.shape[1:]
    assert np.allclose(np.array(heat.z, dtype=float), r.kl_final[0].numpy(), atol=1e-6)
    import html

    for i in range(n_sites):
        for p in range(n_pos):
            assert html.unescape(heat.text[i][p]) == r.top_labels[0][i][p][0]
    agree = int((r.top_ids[0, :, :, 0] == r.final_top1[0]).sum())
    assert len(fig.layout.shapes) == agree
    top = [html.unescape(t) for t in fig.layout.xaxis2.ticktext]
    want = [p for p in range(n_pos - 1) if int(r.final_top1[0, p]) == int(r.tokens[0, p + 1])]
    assert [i for i, t in enumerate(top) if t.endswith(" (*)")] == want
    # Hover text lists the top-k tokens with probabilities.
    assert r.sites[0].name in heat.customdata[0][0] and "top-3" in heat.customdata[0][0]
    html_out = fig.to_html(include_plotlyjs=False)
    assert "Heatmap" in html_out or "heatmap" in html_out
    rank = plot_heatmap_interactive(r, "rank", positions=4)
    assert np.array(rank.data[0].z, dtype=float).shape == (n_sites, 4)


def test_interactive_kl_scale_is_capped():
    pytest.importorskip("plotly", reason="plotly is an optional extra (pip install plotly)")
    import torch

    from lensbox.plot import plot_heatmap_interactive

    r = make_result()
    r.kl_final = r.kl_final * 0 + torch.linspace(0, 85, r.kl_final.shape[-1])
    fig = plot_heatmap_interactive(r, "kl")
    assert fig.data[0].zmax == 30.0 and "capped at 30" in fig.data[0].colorbar.title.text
    assert plot_heatmap_interactive(r, "kl", kl_cap=None).data[0].zmax > 30
