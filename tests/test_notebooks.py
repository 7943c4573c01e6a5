"""The notebooks in ``examples/notebooks`` run in a real Jupyter kernel and show what they promise.

* Every notebook is stored without outputs (quick test).
* Each notebook is executed by ``scripts/run_notebooks.py`` with ``nbclient`` in an
  ``ipykernel`` kernel started from this interpreter, with this tree's ``src`` first on
  ``PYTHONPATH``; any cell error fails the test. A first cell, added to the executed copy only,
  records the kernel's interpreter and where ``lensbox`` was imported from. The executed copy
  is cached under a hash of the notebook and of ``src/lensbox`` (the docs build executes the
  same notebooks first in CI; ``LENSBOX_NOTEBOOKS_FRESH=1`` forces a new run).
* The executed outputs must hold the rich HTML display of every result type the notebook
  shows, its figures as ``image/png``, the interactive heatmap as plotly JSON whose hover
  text lists the top-k tokens with their probabilities, and progress bars as Jupyter widgets.
  Marked ``smollm2``: the notebooks load the real model.
* On a built site (``LENSBOX_SITE_DIR``), each notebook has its page with its figures, a
  download link to the stored notebook, and plotly drawn by the site's own copy of plotly.js.
"""

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples" / "notebooks").glob("*.ipynb"))
PLOTLY = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"

# What each notebook's executed outputs must show: text of the rich displays (text/html),
# how many PNG figures, whether a plotly heatmap and progress-bar widgets.
LENS_HTML = "cell = top-1 token"  # LensResult._repr_html_
EXPECT = {
    "quickstart": dict(html=[LENS_HTML, "kl_final"], png=1, plotly=True, widgets=False),
    "from_transformerlens": dict(html=[LENS_HTML], png=0, plotly=False, widgets=False),
    "tuned_lens": dict(html=["<b>TunedLens</b>", "<b>LensEvaluation</b>", LENS_HTML], png=2, plotly=False, widgets=True),
    "components": dict(html=["<b>component lens</b>", "<b>LogitAttribution</b>"], png=3, plotly=False, widgets=False),
    "probes": dict(html=["<b>InputProbe</b>", "<b>ProbeEvaluation</b>", "layer_depth"], png=2, plotly=False, widgets=True),
}


def _runner():
    spec = importlib.util.spec_from_file_location("lensbox_run_notebooks", ROOT / "scripts" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_notebooks():
    assert {p.stem for p in NOTEBOOKS} == set(EXPECT), "a notebook without expectations (add it to EXPECT)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name} cell {i} has outputs"


def _outputs(nb, mime):
    return [
        o["data"][mime]
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if o.get("output_type") in ("execute_result", "display_data") and mime in o.get("data", {})
    ]


def _check_plotly_heatmap(figures):
    """The interactive heatmap: a plotly heatmap whose hover text lists the top-k tokens and probabilities."""
    heat = [t for fig in figures for t in fig["data"] if t.get("type") == "heatmap"]
    assert heat, "no plotly heatmap"
    trace = heat[0]
    assert "%{customdata}" in trace["hovertemplate"]
    hovers = [h for row in trace["customdata"] for h in row]
    assert hovers and all("top-5:" in h for h in hovers), hovers[:1]
    probs = [float(p) for h in hovers for p in re.findall(r": (\d\.\d{3})(?:<br>|$)", h.split("top-5:")[1])]
    assert len(probs) == 5 * len(hovers) and all(0.0 <= p <= 1.0 for p in probs)


@pytest.mark.smollm2
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_a_kernel(path):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb, seconds, cached = _runner().execute(path)  # raises on the first failing cell
    cpu = nb.metadata["lensbox"].get("cpu_seconds")
    print(f"{path.name}: executed in {seconds:.1f} s (kernel CPU {cpu} s){' (cached)' if cached else ''}")
    probe = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert f"KERNEL {sys.executable}\n" in probe, probe
    assert f"LENSBOX {ROOT / 'src' / 'lensbox' / '__init__.py'}\n" in probe, probe

    want = EXPECT[path.stem]
    html = _outputs(nb, "text/html")
    for marker in want["html"]:
        assert any(marker in h for h in html), f"no rich display containing {marker!r}"
    pngs = _outputs(nb, "image/png")
    assert len(pngs) >= want["png"] and all(len(p) > 1000 for p in pngs), f"{len(pngs)} figures"
    if want["plotly"]:
        _check_plotly_heatmap(_outputs(nb, PLOTLY))
    if want["widgets"]:
        assert _outputs(nb, WIDGET), "no progress bar rendered as a Jupyter widget (tqdm.auto)"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors


SITE = os.environ.get("LENSBOX_SITE_DIR")


@pytest.mark.skipif(not SITE, reason="needs a built site in LENSBOX_SITE_DIR")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_page_on_the_site(path):
    site = Path(SITE)
    page = (site / "notebooks" / path.stem / "index.html").read_text(encoding="utf-8")
    assert (site / "notebooks" / path.name).read_bytes() == path.read_bytes(), "the download is not the notebook"
    assert f'href="../{path.name}"' in page and f'download="{path.name}"' in page
    want = EXPECT[path.stem]
    # The docs hook writes each inline figure to site/figures/ and links it for zooming.
    figures = re.findall(r'<img[^>]+src="(?:data:image/png;base64,|\.\./\.\./figures/[0-9a-f]+\.png")', page)
    assert len(figures) >= want["png"], (len(figures), want["png"])
    for name in re.findall(r'src="\.\./\.\./(figures/[0-9a-f]+\.png)"', page):
        assert (site / name).stat().st_size > 1000, name
    for marker in want["html"]:
        assert marker.replace('"', "&quot;") in page or marker in page, marker
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page)
    assert not [s for s in scripts if s.startswith(("http:", "https:", "//"))], scripts
    if want["plotly"]:
        assert '<script src="../../assets/plotly.min.js"></script>' in page
        assert (site / "assets" / "plotly.min.js").stat().st_size > 1_000_000
        assert "Plotly.newPlot(" in page


def test_page_conversion_keeps_rich_outputs_whole():
    """docs/_hooks/notebooks.py: a fake executed notebook becomes a page that Python-Markdown, with
    the site's extensions, renders with its HTML displays intact, its figure inline, plotly drawn
    from the local script, stderr and widgets left out, and the download link at the top."""
    markdown = pytest.importorskip("markdown")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("lensbox_nb_hook", ROOT / "docs" / "_hooks" / "notebooks.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    v4 = nbformat.v4
    probe = v4.new_code_cell("print('KERNEL')")
    probe.metadata["tags"] = ["lensbox-probe"]
    probe.outputs = [v4.new_output("stream", name="stdout", text="KERNEL /x\n")]
    code = v4.new_code_cell("result")
    table = '<div class="lensbox"><b>X</b>\n\n<table><tr><td>&lt;filename&gt;</td></tr>\n\n</table></div>'
    code.outputs = [
        v4.new_output("stream", name="stdout", text="hello\n"),
        v4.new_output("stream", name="stderr", text="a warning\n"),
        v4.new_output("display_data", data={WIDGET: {"model_id": "m"}, "text/plain": "bar"}),
        v4.new_output("execute_result", data={"text/html": table, "text/plain": "X"}, execution_count=1),
        v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}),
        v4.new_output("display_data", data={PLOTLY: {"data": [{"type": "heatmap", "customdata": [["<b>a</b>"]]}],
                                                     "layout": {"height": 300}}, "text/html": "<script src='https://cdn'>"}),
    ]
    nb = v4.new_notebook(cells=[probe, v4.new_markdown_cell("# Title\n\nIntro."), code])
    page, uses_plotly = hook.notebook_page(nb, "demo", "../../assets/plotly.min.js")
    assert uses_plotly and "KERNEL" not in page and "a warning" not in page and "bar" not in page.split("```")[-1]
    assert "https://cdn" not in page and "<\\/b>" in page and "</b>a" not in page
    html = markdown.markdown(page, extensions=["attr_list", "md_in_html", "pymdownx.superfences"])
    assert '<a download="demo.ipynb" href="demo.ipynb">' in html
    assert html.index("Title") < html.index("Download this notebook") < html.index("hello")
    assert "<td>&lt;filename&gt;</td>" in html and "<p><table>" not in html and "<p></table>" not in html
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in html
    assert html.startswith('<script src="../../assets/plotly.min.js"></script>') and "Plotly.newPlot('nb-demo-2-5'" in html
