"""The notebooks in ``examples/notebooks`` run in a real Jupyter kernel and show what they promise.

* Every notebook is stored without outputs (quick test).
* Each notebook is executed with ``nbclient`` in an ``ipykernel`` kernel started from this
  interpreter (the ``python3`` kernelspec resolves to ``sys.executable``), with this tree's
  ``src`` first on ``PYTHONPATH``; any cell error fails the test. A first cell, added to the
  executed copy only, records the kernel's interpreter and where ``lensbox`` was imported from.
  The executed outputs must hold the rich HTML display of a ``LensResult`` and, for the
  quickstart, a PNG figure. Marked ``smollm2``: the notebooks load the real model.
"""

import json
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples" / "notebooks").glob("*.ipynb"))
LENS_HTML = "cell = top-1 token"  # text of LensResult._repr_html_
PROBE = "import sys, lensbox\nprint('KERNEL', sys.executable)\nprint('LENSBOX', lensbox.__file__)"


def test_there_are_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "from_transformerlens"}


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


def _execute(path, tmp_path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(PROBE))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("MPLBACKEND", None)  # the kernel picks Jupyter's inline backend
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    start = time.perf_counter()
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    elapsed = time.perf_counter() - start
    print(f"{path.name}: executed in {elapsed:.1f} s")
    probe = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert f"KERNEL {sys.executable}\n" in probe, probe
    assert f"LENSBOX {ROOT / 'src' / 'lensbox' / '__init__.py'}\n" in probe, probe
    return nb


@pytest.mark.smollm2
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_a_kernel(path, tmp_path):
    nb = _execute(path, tmp_path)
    assert any(LENS_HTML in html for html in _outputs(nb, "text/html")), "no LensResult rich display"
    if path.stem == "quickstart":
        pngs = _outputs(nb, "image/png")
        assert pngs and all(len(p) > 1000 for p in pngs), "no figure displayed"
        assert any("<table" in html and "kl_final" in html for html in _outputs(nb, "text/html")), "no DataFrame"
