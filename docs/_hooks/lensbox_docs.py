"""MkDocs hooks for the lensbox site (listed under ``hooks:`` in mkdocs.yml).

* Puts ``examples/`` on ``sys.path`` so the pages' executed code can ``import _support``.
* Shares one loaded model across all example pages: while the site builds,
  ``lensbox.load_model`` returns the same object for the same arguments, so the
  SmolLM2 weights are read once per build instead of once per page.
* Adds every ``docs/results/*.md`` page (written by the benchmarks) to the navigation.
* Logs how long each page took to render (its examples run during rendering) and the
  whole build, and writes those timings to ``site/build-timings.json``.
"""

import functools
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Tuple

log = logging.getLogger("mkdocs.hooks.lensbox_docs")

_T0 = time.perf_counter()
_PAGE_START: Dict[str, float] = {}
_TIMINGS: Dict[str, float] = {}
_MODELS: Dict[Tuple[Any, ...], Any] = {}


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
    _PAGE_START[page.file.src_uri] = time.perf_counter()
    return markdown


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    start = _PAGE_START.pop(page.file.src_uri, None)
    if start is not None:
        seconds = time.perf_counter() - start
        _TIMINGS[page.file.src_uri] = round(seconds, 2)
        if seconds > 1.0:
            log.info("lensbox_docs: %s rendered in %.1f s", page.file.src_uri, seconds)
    return html


def on_post_build(config: Any, **kwargs: Any) -> None:
    total = time.perf_counter() - _T0
    log.info("lensbox_docs: build took %.1f s (pages with examples: %.1f s)", total, sum(_TIMINGS.values()))
    out = Path(config.site_dir) / "build-timings.json"
    out.write_text(json.dumps({"total_s": round(total, 1), "pages_s": _TIMINGS}, indent=1), encoding="utf-8")
