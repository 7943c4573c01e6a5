"""Execute ``examples/notebooks/*.ipynb`` in a real Jupyter kernel, once per content.

Used by ``tests/test_notebooks.py`` and by the docs build (``docs/_hooks/notebooks.py``), so
that a CI run, which builds the site and then runs the tests, executes each notebook once:

* :func:`execute` runs a notebook with ``nbclient`` in an ``ipykernel`` kernel started from
  this interpreter (the ``python3`` kernelspec resolves to ``sys.executable``), with this
  checkout's ``src`` first on ``PYTHONPATH``; a cell that raises raises
  ``nbclient.exceptions.CellExecutionError``. A first cell, tagged ``lensbox-probe`` and added to
  the executed copy only, prints the kernel's interpreter and where ``lensbox`` came from.
* The executed copy is kept in lensbox's cache (``<cache>/notebooks/``) under a key that
  hashes the notebook's code cells, every file of ``src/lensbox``, the interpreter and this
  checkout's path; a later call with the same key reads it back instead of executing again
  (with the markdown cells of the notebook as it is now) (``fresh=True``, or
  ``LENSBOX_NOTEBOOKS_FRESH=1``, always executes). The seconds the execution took, and the CPU
  seconds the kernel used (a load-independent measure on a shared machine), are kept in the
  copy's metadata (``metadata.lensbox.seconds``, ``cpu_seconds``).

Command line: ``python scripts/run_notebooks.py [--fresh] [NAME ...]`` executes (or reads back)
the named notebooks (default: all) and prints their execution times.
"""

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "examples" / "notebooks"
PROBE_TAG = "lensbox-probe"
PROBE = "import sys, lensbox\nprint('KERNEL', sys.executable)\nprint('LENSBOX', lensbox.__file__)"
CELL_TIMEOUT_S = 900  # generous: a shared, loaded machine runs these many times slower than a quiet one


def notebooks() -> list[Path]:
    """Every notebook in ``examples/notebooks``, sorted by name."""
    return sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def content_key(path: Path) -> str:
    """A hash of everything the executed outputs depend on: the code cells (not the prose, which
    is taken from the notebook itself on a cache hit), ``src/lensbox``, the interpreter, the checkout."""
    import nbformat

    h = hashlib.sha256()
    for part in (sys.executable, str(ROOT), path.name):
        h.update(part.encode() + b"\0")
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode() + b"\0")
    for f in sorted((ROOT / "src" / "lensbox").rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _cache_dir() -> Path:
    sys.path.insert(0, str(ROOT / "src"))
    try:
        import lensbox
    finally:
        sys.path.pop(0)
    return Path(lensbox.cache_dir()) / "notebooks"


def _run(path: Path) -> tuple[Any, float]:
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    probe = nbformat.v4.new_code_cell(PROBE)
    probe.metadata["tags"] = [PROBE_TAG]
    nb.cells.insert(0, probe)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("MPLBACKEND", None)  # the kernel picks Jupyter's inline backend
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    start, cpu = time.perf_counter(), _children_cpu()
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    nb.metadata["lensbox"] = {"seconds": round(time.perf_counter() - start, 2), "cpu_seconds": round(_children_cpu() - cpu, 2)}
    return nb, time.perf_counter() - start


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children: the kernel, once shut down."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stored(path: Path, key: str) -> Path:
    return _cache_dir() / f"{path.stem}-{key[:20]}.ipynb"


def _fresh_requested() -> bool:
    return os.environ.get("LENSBOX_NOTEBOOKS_FRESH") == "1"


def cached(path: Path) -> bool:
    """Whether an executed copy of this notebook's current content is in the cache (and may be used)."""
    return not _fresh_requested() and _stored(Path(path), content_key(Path(path))).is_file()


def from_cache(path: Path, key: "str | None" = None) -> "tuple[Any, float, bool] | None":
    """``(executed notebook, seconds, True)`` from the cache, or None when its current content
    (``key``, computed when not given) is not there."""
    import nbformat

    path = Path(path)
    key = key or content_key(path)
    stored = _stored(path, key)
    if not stored.is_file():
        return None
    done = nbformat.read(stored, as_version=4)
    if done.metadata.get("lensbox", {}).get("key") != key:
        return None
    return _with_prose(path, done), float(done.metadata["lensbox"]["seconds"]), True


def execute(path: Path, *, fresh: bool = False) -> tuple[Any, float, bool]:
    """``(executed notebook, seconds its execution took, whether it was read from the cache)``."""
    import nbformat

    path = Path(path)
    key = content_key(path)
    got = None if fresh or _fresh_requested() else from_cache(path, key)
    if got is not None:
        return got
    stored = _stored(path, key)
    cache = stored.parent
    nb, seconds = _run(path)
    nb.metadata["lensbox"]["key"] = key
    cache.mkdir(parents=True, exist_ok=True)
    tmp = stored.with_name(f".{stored.name}.{os.getpid()}.tmp")
    tmp.write_text(nbformat.writes(nb), encoding="utf-8")
    os.replace(tmp, stored)
    for old in cache.glob(f"{path.stem}-*.ipynb"):
        if old != stored:
            old.unlink(missing_ok=True)
    return nb, seconds, False


def _with_prose(path: Path, done: Any) -> Any:
    """The notebook as it is now, with the outputs of ``done`` (same code cells, maybe other prose)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    executed = [c for c in done.cells if c.cell_type == "code"]
    nb.cells.insert(0, done.cells[0])  # the probe cell
    code = [c for c in nb.cells[1:] if c.cell_type == "code"]
    for cell, ran in zip(code, executed[1:], strict=True):
        cell.outputs, cell.execution_count = ran.outputs, ran.execution_count
    nb.metadata["lensbox"] = done.metadata["lensbox"]
    return nb


def main(argv: list[str]) -> int:
    fresh = "--fresh" in argv
    names = [a for a in argv if a != "--fresh"]
    chosen = [p for p in notebooks() if not names or p.stem in names]
    for path in chosen:
        nb, seconds, cached = execute(path, fresh=fresh)
        cpu = nb.metadata["lensbox"].get("cpu_seconds", float("nan"))
        print(f"{path.name}: executed in {seconds:.1f} s (kernel CPU {cpu:.1f} s)"
              f"{' (read back from the cache)' if cached else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
