"""MkDocs hooks for the lensbox site (listed under ``hooks:`` in mkdocs.yml).

* Puts ``examples/`` on ``sys.path`` so the pages' executed code can ``import _support``.
* Shares one loaded model across all example pages: while the site builds,
  ``lensbox.load_model`` returns the same object for the same arguments, so the
  SmolLM2 weights are read once per build instead of once per page.
* Adds every ``docs/results/*.md`` page (written by the benchmarks) to the navigation.
* Points ``.md`` links in Markdown printed by executed code at the built pages (MkDocs only
  rewrites the links of the page's own Markdown).
* Logs how long each page took to render (its examples run during rendering; wall-clock
  and CPU seconds, the latter less sensitive to other load on the machine) and the whole
  build, names the pages over the per-page budget, and writes the timings to
  ``site/build-timings.json``.
* Click-to-zoom figures: every image embedded as a data URI (the figures the examples
  print, notebook outputs) is written to ``site/figures/<sha256>.<ext>`` and shown from
  there inside a link to that file, so a figure scaled down to the page column opens at
  full size on click.
"""

import base64
import functools
import hashlib
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, Tuple

log = logging.getLogger("mkdocs.hooks.lensbox_docs")

#: A page whose examples take longer than this (wall-clock seconds) is named at the end of the build.
PAGE_BUDGET_S = 20.0

_T0 = time.perf_counter()
_C0 = time.process_time()
_PAGE_START: Dict[str, Tuple[float, float]] = {}
_TIMINGS: Dict[str, float] = {}
_CPU: Dict[str, float] = {}
_MODELS: Dict[Tuple[Any, ...], Any] = {}

_DATA_IMG = re.compile(
    r'<img\b(?P<before>[^>]*?)\bsrc="data:image/(?P<kind>png|jpeg|gif|svg\+xml);base64,(?P<data>[A-Za-z0-9+/=\s]+)"'
    r"(?P<after>[^>]*)>"
)
_EXT = {"png": "png", "jpeg": "jpg", "gif": "gif", "svg+xml": "svg"}
_ZOOM_STYLE = (
    "<style>a.lensbox-zoom{display:inline-block;max-width:100%}"
    "a.lensbox-zoom img{cursor:zoom-in;max-width:100%;height:auto}</style>"
)


def _share_models() -> None:
    import lensbox

    original = lensbox.load_model
    if getattr(original, "_lensbox_docs_shared", False):
        return

    @functools.wraps(original)
    def load_model(name: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("progress", False)
        key = (str(name),) + tuple(sorted((k, repr(v)) for k, v in kwargs.items() if k != "progress"))
        if key not in _MODELS:
            t0 = time.perf_counter()
            _MODELS[key] = original(name, **kwargs)
            log.info("lensbox_docs: loaded model %s in %.1f s (shared by all pages)", key[0], time.perf_counter() - t0)
        return _MODELS[key]

    load_model._lensbox_docs_shared = True  # type: ignore[attr-defined]
    lensbox.load_model = load_model


def on_config(config: Any) -> Any:
    root = Path(config.config_file_path).resolve().parent
    examples = str(root / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    os.environ.setdefault("MPLBACKEND", "Agg")
    _share_models()

    results_dir = Path(config.docs_dir) / "results"
    pages = sorted(p for p in results_dir.glob("*.md")) if results_dir.is_dir() else []
    if pages and config.nav is not None:
        index = [p for p in pages if p.name == "index.md"]
        rest = [p for p in pages if p.name != "index.md"]
        entries = [f"results/{p.name}" for p in index] + [
            {_title(p): f"results/{p.name}"} for p in rest
        ]
        config.nav = [item for item in config.nav if not (isinstance(item, dict) and "Benchmark results" in item)]
        config.nav.insert(len(config.nav) - 1, {"Benchmark results": entries})
    return config


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("_", " ").capitalize()


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    _PAGE_START[page.file.src_uri] = (time.perf_counter(), time.process_time())
    return markdown


_MD_LINK = re.compile(r'href="(?![a-z][a-z0-9+.-]*:|/|#)(?P<path>[^"#?]+\.md)(?P<frag>#[^"]*)?"')


def resolve_md_links(html: str, page: Any, files: Any) -> str:
    """Point ``href="other.md"`` links left in the HTML at the built page's URL.

    MkDocs rewrites the links of a page's own Markdown, but Markdown printed by executed code
    (markdown-exec renders it separately) keeps its ``.md`` targets, which do not exist in the
    built site. A target that is not a page of the site is left alone (the site test reports it).
    """
    import posixpath

    from mkdocs.utils import get_relative_url

    def replace(m: "re.Match[str]") -> str:
        src = posixpath.normpath(posixpath.join(posixpath.dirname(page.file.src_uri), m.group("path")))
        target = files.get_file_from_path(src) if files is not None else None
        if target is None:
            return m.group(0)
        return f'href="{get_relative_url(target.url, page.url)}{m.group("frag") or ""}"'

    return _MD_LINK.sub(replace, html)


def on_page_content(html: str, page: Any, files: Any = None, **kwargs: Any) -> str:
    html = resolve_md_links(html, page, files)
    start = _PAGE_START.pop(page.file.src_uri, None)
    if start is not None:
        seconds, cpu = time.perf_counter() - start[0], time.process_time() - start[1]
        _TIMINGS[page.file.src_uri] = round(seconds, 2)
        _CPU[page.file.src_uri] = round(cpu, 2)
        if seconds > 1.0:
            log.info("lensbox_docs: %s rendered in %.1f s (%.1f s of CPU)", page.file.src_uri, seconds, cpu)
    return html


def zoomable_figures(html: str, page_url: str, site_dir: Path) -> str:
    """``html`` with each data-URI image written under ``site_dir/figures/`` and linked to its file."""
    from mkdocs.utils import get_relative_url

    def replace(m: "re.Match[str]") -> str:
        data = base64.b64decode(re.sub(r"\s+", "", m.group("data")))
        name = f"figures/{hashlib.sha256(data).hexdigest()[:20]}.{_EXT[m.group('kind')]}"
        target = site_dir / name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        url = get_relative_url(name, page_url)
        img = f'<img{m.group("before")}src="{url}"{m.group("after")}>'
        return f'<a class="lensbox-zoom" href="{url}" title="Open the full-size figure">{img}</a>'

    out, n = _DATA_IMG.subn(replace, html)
    if n and "</head>" in out:
        out = out.replace("</head>", _ZOOM_STYLE + "</head>", 1)
    return out


def on_post_page(output: str, page: Any, config: Any, **kwargs: Any) -> str:
    return zoomable_figures(output, page.url, Path(config.site_dir))


def on_post_build(config: Any, **kwargs: Any) -> None:
    total, cpu = time.perf_counter() - _T0, time.process_time() - _C0
    log.info(
        "lensbox_docs: build took %.1f s, %.1f s of CPU (pages: %.1f s)", total, cpu, sum(_TIMINGS.values())
    )
    slow = {page: s for page, s in sorted(_TIMINGS.items(), key=lambda kv: -kv[1]) if s > PAGE_BUDGET_S}
    for page, seconds in slow.items():
        log.info("lensbox_docs: over the %.0f s page budget: %s took %.1f s (%.1f s of CPU)",
                 PAGE_BUDGET_S, page, seconds, _CPU.get(page, float("nan")))
    out = Path(config.site_dir) / "build-timings.json"
    record = {
        "total_s": round(total, 1),
        "cpu_s": round(cpu, 1),
        "cores": os.cpu_count(),
        "page_budget_s": PAGE_BUDGET_S,
        "over_budget": list(slow),
        "pages_s": _TIMINGS,
        "pages_cpu_s": _CPU,
    }
    out.write_text(json.dumps(record, indent=1), encoding="utf-8")
