"""Plots on the real SmolLM2 model: an English and a Chinese prompt render with every glyph."""

import io
import warnings

import pytest

import lensbox
from lensbox.plot import heatmap_cell_texts, plot_compare_views, plot_heatmap

pytestmark = pytest.mark.smollm2


@pytest.fixture(scope="module")
def model():
    return lensbox.load_model(progress=False)


def render_warnings(fig):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(io.BytesIO(), format="png", dpi=60)
    return [str(w.message) for w in caught if "missing from" in str(w.message) or "Glyph" in str(w.message)]


def test_english_heatmap_on_smollm2(model):
    r = lensbox.logit_lens(model, "The capital of France is Paris. The capital of Germany is")
    fig = plot_heatmap(r, label_chars=20, max_width=None)  # every position, not the docs column's share
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in heatmap_cell_texts(fig)}
    last_row, last_col = len(r.sites) - 1, r.tokens.shape[1] - 1
    # This run's final top-1 after "... The capital of Germany is" is " Berlin".
    assert texts[(last_row, last_col)] == "␣Berlin"
    assert render_warnings(fig) == []
    assert render_warnings(plot_compare_views(r, positions=6)) == []


def test_chinese_heatmap_on_smollm2_has_real_glyphs(model):
    r = lensbox.logit_lens(model, "中国的首都是北京。日本的首都是")
    labels = " ".join(r.input_labels[0])
    assert "北" in labels and "日" in labels
    fig = plot_heatmap(r, positions=None, max_positions=40)
    bottom = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert bottom == [lab if len(lab) <= 8 else lab[:7] + "…" for lab in r.input_labels[0]]
    assert render_warnings(fig) == []
