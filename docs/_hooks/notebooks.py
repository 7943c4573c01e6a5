"""MkDocs hook: the Notebooks pages, one per ``examples/notebooks/*.ipynb`` (listed under ``hooks:``).

For each notebook the build

* executes it in a real Jupyter kernel through ``scripts/run_notebooks.py`` (which keeps the
  executed copy in lensbox's cache under a content hash, so the test suite and later builds
  of the same tree reuse it instead of executing again; a cell that raises fails the build);
* writes a page ``notebooks/<name>.md`` from the executed copy: markdown cells as they are,
  code cells as Python blocks, outputs as the page shows them: text in plain blocks, rich
  HTML displays as they are, figures as inline PNG images, plotly figures drawn by a local
  copy of plotly.js (``assets/plotly.min.js``, from the installed plotly package): the site
  loads nothing from outside itself. stderr (warnings) and progress-bar widgets are left out;
* adds the stored notebook itself (outputs stripped) as ``notebooks/<name>.ipynb``, linked
  from the top of its page for download.

The hand-written ``docs/notebooks/index.md`` lists them; ``mkdocs.yml``'s nav names the pages.
"""

import base64
import importlib.util
import json
import logging
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.notebooks")

ROOT = Path(__file__).resolve().parents[2]
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PLOTLY_JS = "assets/plotly.min.js"


def _runner() -> Any:
    spec = importlib.util.spec_from_file_location("lensbox_run_notebooks", ROOT / "scripts" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _fence(text: str, lang: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _raw_html(markup: str) -> str:
    """HTML kept as one raw block: no blank line inside (markdown would end the block there)."""
    body = "\n".join(line for line in markup.strip().splitlines() if line.strip())
    return f'<div class="nb-output" style="overflow-x:auto">\n{body}\n</div>'


def _plotly(figure: dict, div_id: str) -> str:
    height = int(figure.get("layout", {}).get("height") or 480)
    payload = json.dumps({"data": figure.get("data", []), "layout": figure.get("layout", {})})
    payload = payload.replace("</", "<\\/")  # never close the script element early
    return (
        f'<div class="nb-output"><div id="{div_id}" class="nb-plotly" style="height:{height}px"></div></div>\n'
        f"<script>document.addEventListener('DOMContentLoaded', function () {{ var f = {payload}; "
        f"Plotly.newPlot('{div_id}', f.data, f.layout, {{responsive: true, displaylogo: false}}); }});</script>"
    )


def _output(out: Any, div_id: str) -> tuple[str, bool]:
    """Markdown for one output, and whether it is a plotly figure."""
    kind = out.get("output_type")
    if kind == "stream":
        return (_fence(out.get("text", ""), "text") if out.get("name") == "stdout" else ""), False
    if kind not in ("execute_result", "display_data"):
        return "", False
    data = out.get("data", {})
    if WIDGET_MIME in data:
        return "", False
    if PLOTLY_MIME in data:
        return _plotly(data[PLOTLY_MIME], div_id), True
    if "image/png" in data:
        png = data["image/png"]
        png = png if isinstance(png, str) else base64.b64encode(png).decode()
        return _raw_html(f'<img class="nb-figure" alt="figure" style="max-width:100%" src="data:image/png;base64,{png.strip()}">'), False
    if "text/html" in data:
        return _raw_html(data["text/html"]), False
    if "text/plain" in data:
        return _fence(data["text/plain"], "text"), False
    return "", False


def notebook_page(nb: Any, name: str, plotly_src: str) -> tuple[str, bool]:
    """The markdown of a notebook's page, and whether it draws plotly figures."""
    parts: list[str] = []
    uses_plotly = False
    download = (
        f'[Download this notebook ({name}.ipynb)]({name}.ipynb){{: download="{name}.ipynb" }} '
        "· the outputs below come from running it in a Jupyter kernel for this build"
    )
    for i, cell in enumerate(nb.cells):
        if "lensbox-probe" in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "markdown":
            parts.append(cell.source)
            if not any(download in p for p in parts) and re.match(r"^# ", cell.source):
                parts.append(download)
        elif cell.cell_type == "code":
            parts.append(_fence(cell.source, "python"))
            for j, out in enumerate(cell.get("outputs", [])):
                text, is_plotly = _output(out, f"nb-{name}-{i}-{j}")
                uses_plotly |= is_plotly
                if text:
                    parts.append(text)
    if not any(download in p for p in parts):
        parts.insert(0, download)
    if uses_plotly:
        parts.insert(0, f'<script src="{plotly_src}"></script>')
    return "\n\n".join(parts) + "\n", uses_plotly


def on_files(files: Any, config: Any) -> Any:
    runner = _runner()
    any_plotly = False
    for path in runner.notebooks():
        nb, seconds, cached = runner.execute(path)
        log.info("notebooks: %s %s (%.1f s)", path.name, "read back from the cache" if cached else "executed", seconds)
        up = "../../" if config["use_directory_urls"] else "../"  # from the page's folder to the site root
        page, uses_plotly = notebook_page(nb, path.stem, up + PLOTLY_JS)
        any_plotly |= uses_plotly
        files.append(File.generated(config, f"notebooks/{path.stem}.md", content=page))
        files.append(File.generated(config, f"notebooks/{path.name}", abs_src_path=str(path)))
    if any_plotly:
        import plotly

        js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        files.append(File.generated(config, PLOTLY_JS, abs_src_path=str(js)))
    return files
