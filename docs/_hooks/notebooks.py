"""MkDocs hook: the Notebooks pages, one per ``examples/notebooks/*.ipynb`` (listed under ``hooks:``).

For each notebook the build

* executes it in a real Jupyter kernel through ``scripts/run_notebooks.py`` (which keeps the
  executed copy in lensbox's cache under a content hash, so the test suite and later builds
  of the same tree reuse it instead of executing again; a cell that raises fails the build).
  The notebooks not cached yet run in a background process started when the build collects
  its files, so they execute while the example pages render; each notebook page waits for it;
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
    """scripts/run_notebooks.py as a module, loaded once per build process."""
    if "runner" in _state:
        return _state["runner"]
    spec = importlib.util.spec_from_file_location("lensbox_run_notebooks", ROOT / "scripts" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    _state["runner"] = module
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


#: The background run of scripts/run_notebooks.py started by on_files, and the notebooks' paths by page.
_state: dict = {"proc": None, "pages": {}}


def _start_background(runner: Any) -> None:
    """Execute every notebook not cached yet in another process while the other pages build.

    The pages read the executed copies from the cache (``on_page_markdown``); when that run
    failed, the page executes its notebook in this process, so the failing cell fails the build.
    """
    import os
    import subprocess
    import sys

    proc = _state.get("proc")
    if proc is not None and proc.poll() is None:
        proc.wait()
    _state["background_ok"] = True
    if all(runner.cached(path) for path in runner.notebooks()):
        _state["proc"] = None
        return
    import tempfile

    log_file = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # not a pipe: a full pipe would stall the run
    _state["log"] = log_file
    # One thread each while both run: two processes with a thread per core each would spin-wait
    # against one another (OpenMP) and take several times the CPU.
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    _state["proc"] = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "run_notebooks.py")], cwd=str(ROOT), env=env,
        stdout=log_file, stderr=subprocess.STDOUT, text=True,
    )
    _set_threads(1)


def _set_threads(n: "int | None") -> None:
    """Torch's threads in this process: ``n``, or back to what they were (None)."""
    try:
        import torch
    except ImportError:
        return
    if n is None:
        if "threads" in _state:
            torch.set_num_threads(_state.pop("threads"))
        return
    _state.setdefault("threads", torch.get_num_threads())
    torch.set_num_threads(n)


def on_files(files: Any, config: Any) -> Any:
    runner = _runner()
    _start_background(runner)
    _state["pages"] = {}
    for path in runner.notebooks():
        src = f"notebooks/{path.stem}.md"
        _state["pages"][src] = path
        files.append(File.generated(config, src, content=f"# {path.stem}\n"))  # replaced by on_page_markdown
        files.append(File.generated(config, f"notebooks/{path.name}", abs_src_path=str(path)))
    js = _plotly_js()
    if js is not None:
        files.append(File.generated(config, PLOTLY_JS, abs_src_path=str(js)))
    return files


def _plotly_js() -> "Path | None":
    try:
        import plotly
    except ImportError:
        return None
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    path = _state["pages"].get(page.file.src_uri)
    proc = _state.get("proc")
    if path is None:
        if proc is not None and proc.poll() is not None:
            _set_threads(None)  # the background run is over: every core for the pages again
        return markdown
    if proc is not None:
        proc.wait()
        _set_threads(None)
        log_file = _state.pop("log")
        log_file.seek(0)
        out = log_file.read()
        log_file.close()
        for line in out.splitlines():
            if line.strip() and "Kernel is running over TCP" not in line:
                log.info("notebooks (background): %s", line)
        _state["proc"] = None
        _state["background_ok"] = proc.returncode == 0
    runner = _runner()
    got = runner.from_cache(path) if _state.get("background_ok", True) else None
    nb, seconds, cached = got if got is not None else runner.execute(path)
    log.info("notebooks: %s %s (%.1f s)", path.name, "read from the cache" if cached else "executed", seconds)
    up = "../../" if config["use_directory_urls"] else "../"  # from the page's folder to the site root
    page_md, uses_plotly = notebook_page(nb, path.stem, up + PLOTLY_JS)
    if uses_plotly and _plotly_js() is None:
        raise RuntimeError(f"{path.name} draws plotly figures but plotly is not installed: pip install plotly")
    return page_md
