"""Plots: every figure renders, heatmap cells/outlines/stars match the data, labels in many scripts have glyphs."""

import io
import math
import warnings
from typing import List

import numpy as np
import pandas as pd
import pytest
import torch

from lensbox import Site
from lensbox._errors import InputError
from lensbox.plot._fonts import CJK_FAMILIES, font_families, has_cjk_font, missing_glyphs
from lensbox.lenses._geometry import ResidualNorms, TokenPlaneTrajectory
from lensbox.plot import (
    HEATMAP_METRICS,
    clip_label,
    heatmap_cell_texts,
    heatmap_outlines,
    heatmap_values,
    layer_summary,
    plot_compare_views,
    plot_heatmap,
    plot_kl_by_layer,
    plot_layer_metric,
    plot_probe_accuracy,
    plot_residual_norms,
    plot_trajectory,
    save_figure,
    select_positions,
)
from lensbox.lenses._result import LensResult
from lensbox.lenses import METRIC_TABLE, get_metric

# Labels in several scripts, with the visible-whitespace symbols lensbox uses.
VOCAB_LABELS = [
    "␣the", "␣cat", "↵", "⇥x", "↳", "Paris", "␣Берлин", "␣Москва", "中国", "首都", "日本語", "です", "東京",
    "بيروت", "العربية", "␣$x$", "a_b", "<0xE4>", "␣France", "␣is", "␣of", "␣capital", "Ελλάδα", "한국",
]


def make_result(n_layers: int = 4, n_pos: int = 9, vocab: int = len(VOCAB_LABELS), k: int = 3, seed: int = 0) -> LensResult:
    """A small, self-consistent LensResult computed directly from random logits (no model)."""
    g = torch.Generator().manual_seed(seed)
    n_sites = n_layers + 1
    logits = torch.randn(1, n_sites, n_pos, vocab, generator=g) * 3
    # Make later layers drift towards the final distribution so agreement varies by layer.
    for i in range(n_sites):
        logits[:, i] = logits[:, i] * (1 - i / n_sites) + logits[:, -1] * (i / n_sites)
    lp = logits.log_softmax(-1)
    final_top1 = lp[:, -1].argmax(-1)  # [1, pos]
    tokens = torch.randint(0, vocab, (1, n_pos), generator=g)
    # The final top-1 is right at positions 1, 4, 6 (their next tokens are set to it).
    for p in (1, 4, 6):
        tokens[0, p + 1] = final_top1[0, p]
    for p in (0, 2):
        if tokens[0, p + 1] == final_top1[0, p]:
            tokens[0, p + 1] = (final_top1[0, p] + 1) % vocab
    top = lp.topk(k, dim=-1)
    nxt = torch.full((1, n_sites, n_pos), float("nan"))
    nrank = torch.full((1, n_sites, n_pos), -1, dtype=torch.long)
    for p in range(n_pos - 1):
        t = tokens[0, p + 1]
        nxt[0, :, p] = lp[0, :, p, t]
        nrank[0, :, p] = (lp[0, :, p] > lp[0, :, p, t : t + 1]).sum(-1)
    ftl = lp.gather(-1, final_top1[:, None, :, None].expand(1, n_sites, n_pos, 1))[..., 0]
    frank = (lp > ftl[..., None]).sum(-1)
    irank = (lp > lp.gather(-1, tokens[:, None, :, None].expand(1, n_sites, n_pos, 1))).sum(-1)  # the input token
    p = lp.exp()
    kl = lambda a, b: (a.exp() * (a - b)).sum(-1)  # noqa: E731  KL(a || b) from log-probs
    fin = lp[:, -1:].expand_as(lp)
    inp = lp[:, :1].expand_as(lp)
    labels = VOCAB_LABELS[:vocab]
    return LensResult(
        lens="logit_lens",
        model_name="synthetic",
        decoder="logit",
        sites=[Site.embed()] + [Site.resid_post(i) for i in range(n_layers)],
        tokens=tokens,
        input_labels=[[labels[t] for t in tokens[0].tolist()]],
        top_ids=top.indices,
        top_logprobs=top.values,
        top_labels=[[[[labels[t] for t in cell] for cell in row] for row in layer] for layer in top.indices[0:1].tolist()],
        final_top1=final_top1,
        next_logprob=nxt,
        next_rank=nrank,
        final_top1_logprob=ftl,
        final_top1_rank=frank,
        kl_final=kl(fin, lp).clamp(min=0),
        kl_final_reverse=kl(lp, fin).clamp(min=0),
        kl_input=kl(inp, lp).clamp(min=0),
        kl_input_reverse=kl(lp, inp).clamp(min=0),
        entropy=-(p * lp).sum(-1),
        cross_entropy=-nxt,
        n_model_layers=n_layers,
        top_logits=logits.gather(-1, top.indices),
        input_rank=irank,
    )


def render_png(fig) -> List[str]:
    """Render to PNG in memory; return the messages of warnings raised while drawing."""
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(buf, format="png", dpi=60)
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    return [str(w.message) for w in caught]


def render_rgb(fig, *, dpi: int = 60) -> np.ndarray:
    """Render to PNG in memory and decode it: a ``[height, width, 3]`` float array in 0..1."""
    from matplotlib.image import imread

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    return imread(buf, format="png")[..., :3]


def assert_drawn(fig, *, dpi: int = 60, min_ink: float = 0.03, min_colours: int = 16) -> np.ndarray:
    """The figure renders at its nominal size with ink on it (not blank, not one flat colour)."""
    img = render_rgb(fig, dpi=dpi)
    want_w, want_h = fig.get_size_inches() * dpi
    assert abs(img.shape[1] - want_w) <= 1 and abs(img.shape[0] - want_h) <= 1, (img.shape, want_w, want_h)
    ink = float((img < 0.9).any(-1).mean())
    assert ink > min_ink, f"only {ink:.1%} of the pixels are drawn"
    colours = len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert colours >= min_colours, f"only {colours} distinct colours"
    return img


def glyph_warnings(messages: List[str]) -> List[str]:
    return [m for m in messages if "missing from" in m or "Glyph" in m or "findfont" in m]


# ------------------------------------------------------------------ heatmap
@pytest.mark.parametrize("metric", [m.name for m in METRIC_TABLE])
def test_heatmap_renders_every_metric_of_the_table(metric):
    r = make_result()
    m = get_metric(metric)
    if not m.in_result:  # evaluation-only metrics (bits per byte, top-1 agreement) need a whole text
        assert metric not in HEATMAP_METRICS
        with pytest.raises(InputError, match="Unknown metric"):
            plot_heatmap(r, metric)
        return
    assert metric in HEATMAP_METRICS
    fig = plot_heatmap(r, metric)
    assert len(fig.axes) >= 2  # heatmap + colour bar
    image = fig.axes[0].images[0]
    values = heatmap_values(r, metric)
    assert np.allclose(np.ma.getdata(image.get_array()), values, equal_nan=True)
    bar = [ax for ax in fig.axes if ax is not fig.axes[0] and ax.get_ylabel()][0]
    assert bar.get_ylabel() == m.label
    assert image.cmap.name.startswith(m.cmap)
    assert_drawn(fig)
    for alias in m.aliases:  # every alias colours the same cells
        assert np.array_equal(heatmap_values(r, alias), values, equal_nan=True)


def test_heatmap_kl_input_reverse_is_kl_layer_to_input():
    r = make_result()
    fig = plot_heatmap(r, "kl_input_reverse")
    got = np.ma.getdata(fig.axes[0].images[0].get_array())
    # make_result computes it from the full distributions as kl(lp, inp); the forward direction differs.
    assert np.allclose(got, r.kl_input_reverse[0].numpy(), atol=1e-6)
    assert not np.allclose(got, r.kl_input[0].numpy(), atol=1e-3)
    assert np.allclose(got[0], 0.0, atol=1e-6)  # the embeddings row compared with itself


def test_logit_metric_needs_raw_logits():
    from lensbox.plot import heatmap_values

    result = make_result()
    assert (heatmap_values(result, "logit") == result.top_logits[0, :, :, 0].double().numpy()).all()
    result.top_logits = None
    with pytest.raises(InputError, match="no raw logits"):
        result.metric("logit")


def test_heatmap_cells_print_top1_labels():
    r = make_result()
    fig = plot_heatmap(r, "top1", label_chars=20, max_width=None)   # every position, however wide
    texts = heatmap_cell_texts(fig)
    n_sites, n_pos = r.kl_final.shape[1:]
    assert len(texts) == n_sites * n_pos
    for t in texts:
        x, y = t.get_position()
        row, col = int(round(y)), int(round(x))
        assert t.get_text() == r.top_labels[0][row][col][0]
    # The texts were placed on a centred grid, one per cell.
    cells = {(int(round(t.get_position()[1])), int(round(t.get_position()[0]))) for t in texts}
    assert cells == {(i, j) for i in range(n_sites) for j in range(n_pos)}


def test_heatmap_outlines_match_final_top1_agreement():
    r = make_result()
    fig = plot_heatmap(r)
    outlines = heatmap_outlines(fig)
    agree = (r.top_ids[0, :, :, 0] == r.final_top1[0][None, :])
    assert len(outlines) == int(agree.sum())
    # The final layer's own row always agrees with itself.
    assert bool(agree[-1].all())
    got = {(int(round(p.get_y() + p.get_height() / 2)), int(round(p.get_x() + p.get_width() / 2))) for p in outlines}
    want = {tuple(ix) for ix in agree.nonzero().tolist()}
    assert got == want
    assert heatmap_outlines(plot_heatmap(r, outline=False)) == []


def test_heatmap_star_marks_correct_final_predictions():
    r = make_result()
    fig = plot_heatmap(r, label_chars=30, max_width=None)
    ax = fig.axes[0]
    top_axis = [c for c in ax.child_axes if c.get_xticklabels()][0]
    top = [t.get_text() for t in top_axis.get_xticklabels()]
    n_pos = r.tokens.shape[1]
    assert len(top) == n_pos
    starred = [i for i, t in enumerate(top) if t.endswith(" (*)")]
    # Independent: positions whose final top-1 equals the next input token.
    want = [p for p in range(n_pos - 1) if int(r.final_top1[0, p]) == int(r.tokens[0, p + 1])]
    assert starred == want
    assert set(want) >= {1, 4, 6} and 0 not in want and 2 not in want
    for p in range(n_pos - 1):
        assert top[p].removesuffix(" (*)") == r.input_labels[0][p + 1]
    bottom = [t.get_text() for t in ax.get_xticklabels()]
    assert bottom == r.input_labels[0]


def test_heatmap_position_window_and_sites():
    r = make_result(n_pos=9)
    fig = plot_heatmap(r, positions=(2, 6), sites=["embed", 1, 3], label_chars=30)
    texts = heatmap_cell_texts(fig)
    assert len(texts) == 3 * 4
    bottom = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert bottom == r.input_labels[0][2:6]
    rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert rows == ["embed", "post 1", "post 3"]
    # The same rows from a sites string, as every sites= argument reads it.
    again = plot_heatmap(r, positions=(2, 6), sites="embed,1,3", label_chars=30)
    assert [t.get_text() for t in again.axes[0].get_yticklabels()] == rows
    # Text in column 0 / row 1 is resid_post.1 at position 2.
    cell = [t for t in texts if t.get_position() == (0, 1)][0]
    assert cell.get_text() == r.top_labels[0][2][2][0]
    # Last-k window and long-input default.
    assert select_positions(100, None, default_max=16) == list(range(84, 100))
    assert select_positions(10, 3, default_max=16) == [7, 8, 9]
    assert select_positions(10, slice(None, None, 4), default_max=16) == [0, 4, 8]
    assert select_positions(10, [-1, 0, 0], default_max=16) == [0, 9]
    with pytest.raises(InputError, match="out of range"):
        select_positions(10, [12], default_max=16)
    with pytest.raises(InputError, match="empty"):
        select_positions(10, slice(5, 5), default_max=16)


def test_heatmap_colours_follow_metric_values():
    r = make_result()
    fig = plot_heatmap(r, "kl", vmin=0, vmax=5)
    image = fig.axes[0].images[0]
    arr = np.ma.getdata(image.get_array())
    expected = r.kl_final[0].numpy()
    assert np.allclose(arr, expected, atol=1e-6)
    assert image.norm.vmin == 0 and image.norm.vmax == 5
    # Rank view: 1-based, log colour scale, undefined last column masked.
    fig = plot_heatmap(r, "rank")
    image = fig.axes[0].images[0]
    from matplotlib.colors import LogNorm

    assert isinstance(image.norm, LogNorm)
    vals = heatmap_values(r, "rank")
    assert np.isnan(vals[:, -1]).all()
    assert np.array_equal(vals[:, :-1], r.next_rank[0, :, :-1].numpy() + 1)
    assert bool(np.ma.getmaskarray(image.get_array())[:, -1].all())


def test_kl_colour_scale_is_capped_at_30_nats_by_default():
    r = make_result()
    r.kl_final = r.kl_final * 0 + torch.linspace(0, 85, r.kl_final.shape[-1])  # KL up to 85 nats, as on SmolLM2
    fig = plot_heatmap(r, "kl")
    image = fig.axes[0].images[0]
    assert image.norm.vmax == 30.0
    bar = [ax for ax in fig.axes if ax is not fig.axes[0] and ax.get_ylabel()][0]
    assert "capped at 30" in bar.get_ylabel()
    # Uncapped on request: the 98th percentile of the values, and no note.
    fig = plot_heatmap(r, "kl", kl_cap=None)
    want = float(np.percentile(r.kl_final[0].numpy(), 98))
    assert math.isclose(fig.axes[0].images[0].norm.vmax, want, rel_tol=1e-9)
    assert "capped" not in [ax for ax in fig.axes if ax is not fig.axes[0] and ax.get_ylabel()][0].get_ylabel()
    # A cap the values never reach changes nothing; other metrics ignore it.
    small = make_result()
    assert plot_heatmap(small, "kl").axes[0].images[0].norm.vmax < 30
    assert plot_heatmap(small, "top1", kl_cap=0.01).axes[0].images[0].norm.vmax == 1.0
    # The compare views share the capped scale.
    r.kl_input = r.kl_final.flip(-1)
    views = plot_compare_views(r)
    assert [ax.images[0].norm.vmax for ax in views.axes if ax.images] == [30.0, 30.0]


def test_heatmap_text_colour_contrasts_with_cell():
    r = make_result()
    fig = plot_heatmap(r, "top1")
    image = fig.axes[0].images[0]
    for t in heatmap_cell_texts(fig):
        x, y = t.get_position()
        v = image.get_array()[int(round(y)), int(round(x))]
        rgba = image.cmap(image.norm(v))
        light = 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2] > 0.6
        if light:
            assert t.get_color() == "black"


# The documentation column (mkdocs-material at a 1280 px window) and the resolution figures are saved at there.
DOCS_COLUMN_PX, DOCS_DPI = 688, 110


def shown_cell_font_px(fig) -> float:
    """Height in CSS px of the cell text once the figure, saved as on the docs pages, is scaled to the column."""
    from matplotlib.image import imread

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DOCS_DPI, bbox_inches="tight", facecolor="white")
    buf.seek(0)
    width_px = imread(buf, format="png").shape[1]
    sizes = {t.get_fontsize() for t in heatmap_cell_texts(fig)}
    assert len(sizes) == 1, sizes
    return sizes.pop() / 72 * DOCS_DPI * min(1.0, DOCS_COLUMN_PX / width_px)


@pytest.mark.parametrize("metric", ["top1", "kl"])
def test_default_heatmap_is_legible_in_the_docs_column(metric):
    """A long input: the default figure's cell text is >= 9 px in a 688 px column (rows do not change the width)."""
    from lensbox.plot._heatmap import CELL_FONT, MAX_WIDTH, columns_that_fit

    r = make_result(n_layers=2, n_pos=40)
    fig = plot_heatmap(r, metric)
    assert fig.get_size_inches()[0] <= MAX_WIDTH
    assert len(fig.axes[0].get_xticks()) == columns_that_fit(MAX_WIDTH) >= 8
    assert {t.get_fontsize() for t in heatmap_cell_texts(fig)} == {CELL_FONT}
    assert shown_cell_font_px(fig) >= 9.0


def test_heatmap_width_limit_and_max_positions():
    r = make_result(n_layers=1, n_pos=40)
    assert len(plot_heatmap(r).axes[0].get_xticks()) == 10           # as many as fit in 8 inches
    assert len(plot_heatmap(r, max_positions=6).axes[0].get_xticks()) == 6
    wide = plot_heatmap(r, max_width=None)                            # no limit: every position
    assert len(wide.axes[0].get_xticks()) == 40 and wide.get_size_inches()[0] > 20
    # An explicit window wider than the limit is drawn in full, in a wider figure.
    assert len(plot_heatmap(r, positions=(0, 14)).axes[0].get_xticks()) == 14
    # Shorter labels fit more positions.
    assert len(plot_heatmap(r, label_chars=5).axes[0].get_xticks()) > 10


def test_compare_views_stack_when_side_by_side_would_not_fit():
    r = make_result(n_layers=2, n_pos=40)
    fig = plot_compare_views(r)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    (x0, y0), (x1, y1) = (ax.get_position().p0 for ax in panels)
    assert abs(x0 - x1) < 0.05 and y0 > y1                            # one above the other
    assert fig.get_size_inches()[0] <= 8.0
    assert shown_cell_font_px(fig) >= 9.0
    # Few positions fit side by side.
    small = plot_compare_views(r, positions=(30, 33))
    (x0, y0), (x1, y1) = (ax.get_position().p0 for ax in small.axes if ax.images)
    assert x1 > x0 + 0.3 and abs(y0 - y1) < 0.05


def test_heatmap_tick_labels_do_not_overlap():
    """Neighbouring token labels (bottom, top, sites) and the long default title stay apart once drawn."""
    r = make_result(n_layers=8, n_pos=40)
    r.model_name = "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32)"
    fig = plot_heatmap(r, "kl")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    top = [a for a in ax.child_axes][0]
    for labels in (ax.get_xticklabels(), top.get_xticklabels(), ax.get_yticklabels()):
        boxes = [t.get_window_extent(renderer) for t in labels if t.get_text()]
        for a, b in zip(boxes, boxes[1:]):
            assert not a.overlaps(b.shrunk(0.98, 0.98)) or a.x1 - b.x0 < 1.0, (a, b)
    title = fig.get_suptitle() if hasattr(fig, "get_suptitle") else fig._suptitle.get_text()
    assert "\n" in title and fig._suptitle.get_window_extent(renderer).width <= fig.bbox.width


def test_heatmap_rejects_bad_arguments():
    r = make_result()
    with pytest.raises(InputError, match="Unknown metric"):
        plot_heatmap(r, "logits")
    with pytest.raises(InputError, match="Batch row"):
        plot_heatmap(r, batch=3)
    with pytest.raises(Exception, match="not in this result"):
        plot_heatmap(r, sites=["resid_mid.1"])


def test_compare_views_share_one_scale():
    r = make_result()
    fig = plot_compare_views(r)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    assert images[0].norm.vmax == images[1].norm.vmax
    assert np.allclose(np.ma.getdata(images[1].get_array()), r.kl_input[0].numpy(), atol=1e-6)
    img = assert_drawn(fig)
    # Both panels are drawn: each half of the picture carries ink.
    half = img.shape[1] // 2
    for part in (img[:, :half], img[:, half:]):
        assert float((part < 0.9).any(-1).mean()) > 0.05


def test_labels_are_not_parsed_as_math():
    math_label = "␣$x$"
    r = make_result()
    # Put the label exactly once where the heatmap must draw it: input token 3 (so the
    # next-token target of position 2) and one cell.
    r.input_labels[0] = ["x" if lab == math_label else lab for lab in r.input_labels[0]]
    for row in r.top_labels[0]:
        for cell in row:
            cell[0] = "x" if cell[0] == math_label else cell[0]
    r.input_labels[0][3] = math_label
    r.top_labels[0][1][4][0] = math_label
    fig = plot_heatmap(r, label_chars=30)
    assert_drawn(fig)
    ax = fig.axes[0]
    bottom = [t for t in ax.get_xticklabels() if t.get_text() == math_label]
    top_axis = [c for c in ax.child_axes if c.get_xticklabels()][0]
    top = [t for t in top_axis.get_xticklabels() if t.get_text().removesuffix(" (*)") == math_label]
    cells = [t for t in heatmap_cell_texts(fig) if t.get_text() == math_label]
    assert len(bottom) == 1 and len(top) == 1 and len(cells) == 1
    assert not any(t.get_parse_math() for t in bottom + top + cells)
    # Drawn literally: the cell text is as wide as the literal string, wider than its math rendering.
    renderer = fig.canvas.get_renderer()
    width = cells[0].get_window_extent(renderer).width
    ref = {}
    for parse in (False, True):
        t = ax.text(0, 0, math_label, fontsize=cells[0].get_fontsize(), parse_math=parse)
        ref[parse] = t.get_window_extent(renderer).width
        t.remove()
    assert ref[True] < ref[False] - 1
    assert math.isclose(width, ref[False], abs_tol=0.5)
    assert clip_label("abcdefghij", 5) == "abcd…"
    assert clip_label("abc", 5) == "abc"


# ------------------------------------------------------------------ fonts
def test_fonts_cover_cjk_arabic_cyrillic_and_symbols():
    fams = font_families()
    assert has_cjk_font(), (
        "no CJK font: run `bash scripts/install_fonts.sh` (CI must run it before the tests); families found: "
        f"{fams}"
    )
    assert any(f in CJK_FAMILIES for f in fams)
    sample = "中国首都 日本語です 東京 한국 العربية بيروت Москва Ελλάδα ␣ ↵ ⇥ ↳ …"
    assert missing_glyphs(sample) == []
    # The checker itself can fail: DejaVu Sans alone has no CJK.
    assert "中" in missing_glyphs("中", ["DejaVu Sans"])


def test_mixed_script_heatmap_renders_without_missing_glyph_warnings():
    r = make_result(n_pos=12, seed=3)
    text = " ".join(r.input_labels[0]) + " ".join(l[0] for layer in r.top_labels[0] for cell in layer for l in [cell])
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text), "the sample must contain CJK labels"
    assert any("\u0600" <= ch <= "\u06ff" for ch in text) or any("\u0400" <= ch <= "\u04ff" for ch in text)
    fig = plot_heatmap(r, "top1", label_chars=10)
    assert glyph_warnings(render_png(fig)) == []
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(buf, format="svg")
        fig.savefig(io.BytesIO(), format="pdf")
    assert glyph_warnings([str(w.message) for w in caught]) == []


def test_missing_glyph_warnings_are_detected_without_fallback():
    """The capture used above does see matplotlib's warning when a font lacks a glyph."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):
        fig = Figure()
        fig.text(0.5, 0.5, "中国")
    assert glyph_warnings(render_png(fig)) != []


# ------------------------------------------------------------------ per-layer curves
def test_layer_metric_plots_several_lenses():
    a, b = make_result(seed=1), make_result(seed=2)
    fig = plot_layer_metric({"logit lens": a, "tuned lens": b}, "kl", positions=slice(1, None))
    ax = fig.axes[0]
    lines = [l for l in ax.get_lines() if l.get_label() in ("logit lens", "tuned lens")]
    assert [l.get_label() for l in lines] == ["logit lens", "tuned lens"]
    # Independent mean over positions 1.. for each site.
    want = a.kl_final[0, :, 1:].mean(-1).numpy()
    assert np.allclose(lines[0].get_ydata(), want, atol=1e-6)
    assert list(lines[0].get_xdata()) == [-1, 0, 1, 2, 3]
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "embed"
    assert_drawn(fig)
    fig = plot_kl_by_layer([a, b], log=True, band=False)
    assert fig.axes[0].get_yscale() == "log"
    assert len(fig.axes[0].collections) == 0  # no bands
    assert_drawn(fig)


def test_evaluation_plot_one_line_per_lens():
    from lensbox.lenses import LensEvaluation
    from lensbox.plot import plot_evaluation

    sites = [Site.embed()] + [Site.resid_post(i) for i in range(3)]
    nan = float("nan")
    values = {
        "logit": {"kl": [5.0, 3.0, 1.0, 0.0], "ce": [9.0, 6.0, 4.0, 3.0], "bpb": [3.0, 2.0, 1.5, 1.0],
                  "top1_agree": [0.1, 0.3, 0.7, 1.0]},
        "tuned": {"kl": [nan, 1.0, 0.5, 0.0], "ce": [nan, 4.0, 3.5, 3.0], "bpb": [nan, 1.4, 1.2, 1.0],
                  "top1_agree": [nan, 0.8, 0.9, 1.0]},
    }
    ev = LensEvaluation("synthetic", ["logit", "tuned"], sites, values, 512, 2, 2000,
                        baselines={"uniform": {"kl": 4.0, "ce": 8.0, "bpb": 2.0, "top1_agree": nan}})
    fig = plot_evaluation(ev, "kl")
    ax = fig.axes[0]
    lines = {l.get_label().split(" (")[0]: l for l in ax.get_lines()}
    # the legend gives both means (over the non-final sites), and the uniform baseline is a horizontal line
    assert lines["logit"].get_label() == "logit (mean 3, 2 without embed)"
    assert lines["uniform baseline"].get_label() == "uniform baseline (4)"
    assert list(lines["uniform baseline"].get_ydata()) == [4.0, 4.0]
    assert not [l for l in ax.get_lines() if l.get_label().startswith("uniform") and l is not lines["uniform baseline"]]
    assert list(lines["logit"].get_xdata()) == [-1, 0, 1, 2] and list(lines["logit"].get_ydata()) == [5, 3, 1, 0]
    assert list(lines["tuned"].get_xdata()) == [0, 1, 2]  # the NaN site is left out
    assert ax.get_ylabel() == get_metric("kl").label
    assert_drawn(fig)
    assert ev.plot("top1_agree").axes[0].get_ylabel() == get_metric("top1_agree").label
    with pytest.raises(InputError, match="Unknown metric"):
        plot_evaluation(ev, "entropy")  # a per-cell metric the evaluation does not report


def test_layer_summary_ranks_are_one_based():
    r = make_result()
    s = layer_summary(r, "rank")
    want = (r.next_rank[0, :, :-1].double() + 1).mean(-1).numpy()  # last position has no target
    assert np.allclose(s["mean"], want)


def test_layer_summary_skips_nan_cells():
    r = make_result()
    s = layer_summary(r, "ce")
    want = r.cross_entropy[0, :, :-1].mean(-1).numpy()  # last position has no target
    assert np.allclose(s["mean"], want, atol=1e-6)
    assert np.all(s["q25"] <= s["q75"])


# ------------------------------------------------------------------ norms and trajectory
def make_norms() -> ResidualNorms:
    sites = [Site.embed()] + [Site.resid_post(i) for i in range(5)]
    norms = torch.exp(torch.linspace(0, 3, 6))[None, :, None] * (1 + torch.arange(7.0))[None, None, :]
    return ResidualNorms("synthetic", sites, torch.zeros(1, 7, dtype=torch.long),
                         [["<s>", "␣John", "␣和", "␣Mary", "↵", "東京", "␣$"]], norms)


def test_residual_norm_plot():
    n = make_norms()
    fig = plot_residual_norms(n, positions=[1, 2, 5])
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 4  # three positions + mean
    assert np.allclose(lines[1].get_ydata(), n.norms[0, :, 2].numpy())
    assert np.allclose(lines[-1].get_ydata(), n.norms[0].median(-1).values.numpy())
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()][:3] == ["1: ␣John", "2: ␣和", "5: 東京"]
    assert glyph_warnings(render_png(fig)) == []
    with pytest.raises(InputError, match="residual norms"):
        plot_residual_norms(make_result())


def make_trajectory() -> TokenPlaneTrajectory:
    sites = [Site.embed()] + [Site.resid_post(i) for i in range(6)]
    t = torch.linspace(0, 1, 7)
    coords = torch.stack([torch.cos(t * 2) * (1 + 4 * t), torch.sin(t * 3) * (1 + 2 * t)], -1)[None]
    directions = torch.tensor([[2.0, 0.0], [0.8, 1.5]])
    bias = torch.tensor([0.1, -0.2])
    logits = coords @ directions.T + bias
    return TokenPlaneTrajectory("synthetic", sites, torch.zeros(1, 5, dtype=torch.long),
                                [["a", "b", "c", "d", "␣for"]], 4, (1, 2), ("␣Mary", "␣John"),
                                coords, logits, directions, bias)


def test_trajectory_plot():
    tr = make_trajectory()
    fig = plot_trajectory(tr)
    ax = fig.axes[0]
    path = ax.get_lines()[0]
    assert np.allclose(path.get_xdata(), tr.coords[0, :, 0].numpy())
    assert np.allclose(path.get_ydata(), tr.coords[0, :, 1].numpy())
    # The dashed line is exactly where the two logits are equal.
    boundary = [l for l in ax.get_lines() if l.get_linestyle() == "--"][0]
    for x, y in zip(boundary.get_xdata(), boundary.get_ydata()):
        la, lb = np.array([x, y]) @ tr.directions.numpy().T + tr.bias.numpy()
        assert math.isclose(la, lb, abs_tol=1e-6)
    assert glyph_warnings(render_png(fig)) == []


def test_trajectory_site_labels_do_not_overlap():
    from lensbox.plot._geometry import SITE_LABEL_GID

    # 25 sites, the first 20 bunched near the origin (as early layers are), then a long excursion.
    sites = [Site.embed()] + [Site.resid_post(i) for i in range(24)]
    t = torch.linspace(0, 1, 25)
    coords = torch.stack([t**6 * 8 + 0.02 * t, t**6 * 5 - 0.01 * t], -1)[None]
    directions = torch.tensor([[2.0, 0.0], [0.8, 1.5]])
    bias = torch.tensor([0.1, -0.2])
    traj = TokenPlaneTrajectory("synthetic", sites, torch.zeros(1, 5, dtype=torch.long),
                                [["a", "b", "c", "d", "e"]], 4, (1, 2), ("␣Mary", "␣John"),
                                coords, coords @ directions.T + bias, directions, bias)
    fig = plot_trajectory(traj, annotate_every=1)
    fig.canvas.draw()
    labels = [t for t in fig.axes[0].texts if t.get_gid() == SITE_LABEL_GID]
    names = [t.get_text() for t in labels]
    assert names[0] == "post 23" and "embed" in names  # the last and first sites always get a label
    assert 3 <= len(labels) < 25  # the bunched ones are thinned out
    assert overlapping_labels(fig, labels) == []
    assert overlapping_labels(fig, [fig.axes[0].yaxis.label, fig.axes[0].title]) == []
    assert_drawn(fig)


# ------------------------------------------------------------------ probes
def probe_table() -> pd.DataFrame:
    rows = []
    sites = ["embed"] + [f"resid_post.{i}" for i in range(6)]
    for bucket in ("rare", "frequent"):
        for off in (0, -1, -2):
            for depth, site in enumerate(sites):
                decay = math.exp(-abs(off) * 0.5 - depth * 0.2 * (1 if bucket == "frequent" else 0.5))
                rows.append({"site": site, "layer_depth": 2 * depth, "offset": off, "top1": decay,
                             "top5": min(1.0, decay * 1.3), "bucket": bucket})
    return pd.DataFrame(rows)


def test_probe_accuracy_plot():
    df = probe_table()
    fig = plot_probe_accuracy(df)
    axes = [ax for ax in fig.axes if ax.get_lines()]
    assert [ax.get_title() for ax in axes] == ["bucket: rare", "bucket: frequent"]
    for ax, bucket in zip(axes, ("rare", "frequent")):
        labels = [l.get_label() for l in ax.get_lines()]
        assert labels == ["offset -2", "offset -1", "offset 0 (current token)"]
        line = ax.get_lines()[2]
        want = df[(df.bucket == bucket) & (df.offset == 0)].sort_values("layer_depth")
        assert np.allclose(line.get_ydata(), want["top1"].to_numpy())
        # The layer axis of the other curves: embed = -1, resid_post.i = i.
        assert np.allclose(line.get_xdata(), want["layer_depth"].to_numpy() / 2 - 1)
    assert [t.get_text() for t in axes[0].get_xticklabels()][0] == "embed"
    assert_drawn(fig)
    one = plot_probe_accuracy(df, metric="top5", bucket="rare")
    assert len([ax for ax in one.axes if ax.get_lines()]) == 1
    with pytest.raises(InputError, match="lacks columns"):
        plot_probe_accuracy(df.drop(columns=["bucket"]))
    with pytest.raises(InputError, match="No rows for bucket"):
        plot_probe_accuracy(df, bucket="medium")


def overlapping_labels(fig, texts) -> list:
    """Pairs of drawn, non-empty texts whose rendered boxes overlap (on the figure's renderer)."""
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text()]
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]


@pytest.mark.parametrize("n_buckets", [1, 3, 4])
def test_probe_accuracy_tick_labels_do_not_overlap(n_buckets):
    # A SmolLM2-sized table: embed + 30 blocks with their mid sites, five offsets.
    rows = []
    sites = [Site.embed()] + [s for i in range(30) for s in (Site.resid_mid(i), Site.resid_post(i))]
    for bucket in ("all", "rare", "frequent", "medium")[:n_buckets]:
        for off in range(-4, 1):
            for s in sites:
                rows.append({"site": s.name, "layer_depth": s.depth, "offset": off, "top1": 0.5, "top5": 0.7,
                             "bucket": bucket})
    fig = plot_probe_accuracy(pd.DataFrame(rows))
    fig.canvas.draw()
    axes = [ax for ax in fig.axes if ax.get_lines()]
    assert len(axes) == n_buckets
    for ax in axes:
        labels = ax.get_xticklabels()
        assert len([t for t in labels if t.get_text()]) >= 4
        assert overlapping_labels(fig, labels) == []
    # Nor do the panels' titles and axis labels run into each other.
    assert overlapping_labels(fig, [ax.xaxis.label for ax in axes] + [ax.title for ax in axes]) == []


# ------------------------------------------------------------------ saving
@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_save_figure_formats(tmp_path, suffix, magic):
    fig = plot_heatmap(make_result())
    out = save_figure(fig, tmp_path / "sub" / f"heat{suffix}")
    assert out.read_bytes()[: len(magic)] == magic
    assert out.stat().st_size > 1000


def test_save_figure_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "heat.png"
    out.write_bytes(b"previous")
    fig = plot_heatmap(make_result())

    def broken_savefig(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(KeyboardInterrupt):
        save_figure(fig, out)
    assert out.read_bytes() == b"previous"  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["heat.png"]  # no temporary file left behind
    monkeypatch.undo()
    save_figure(fig, out)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_save_figure_rejects_unknown_format(tmp_path):
    with pytest.raises(InputError, match="png, .svg or .pdf"):
        save_figure(plot_heatmap(make_result()), tmp_path / "x.jpg")
