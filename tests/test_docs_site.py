"""The documentation site, tested the way a reader uses it.

* The site builds with ``mkdocs build --strict`` and its examples executed (or, when
  ``LENSBOX_SITE_DIR`` names an already-built site, that one is checked: CI builds once).
* A headless Debian Chromium (``/usr/bin/chromium`` driven by ``chromedriver`` through
  selenium) opens every page from a local HTTP server on 127.0.0.1, checks that every
  image loaded (``naturalWidth > 0``), that the page logged no console error, and saves a
  screenshot per page (to ``$LENSBOX_DOCS_ARTIFACTS``, default ``out/docs-screenshots``).
* Broken internal links fail a strict build under this project's mkdocs.yml settings
  (checked on a two-page throwaway site, with a passing control).
"""

import functools
import html as html_lib
import http.server
import json
import os
import re
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("LENSBOX_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LENSBOX_CHROMEDRIVER", "/usr/bin/chromedriver")
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Example pages whose content is pictures: each must show at least this many images.
MIN_IMAGES = {
    "examples/quickstart/": 2,
    "examples/heatmap/": 3,
    "examples/alignment/": 1,
    "examples/rare_token/": 2,
    "examples/repetition/": 2,
    "examples/input_discarding/": 2,
    "examples/tied_embeddings/": 1,
    "examples/directions/": 3,
    "examples/multilingual/": 2,
    "examples/tuned_lens/": 2,
    "examples/probes/": 1,
    "examples/attribution/": 2,
}



def _mkdocs(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("LENSBOX_SITE_DIR")
    if given:
        path = Path(given)
        assert (path / "index.html").is_file(), f"LENSBOX_SITE_DIR={given} holds no built site (no index.html)"
        return path
    out = tmp_path_factory.mktemp("site")
    proc = _mkdocs("build", "--strict", "--site-dir", str(out))
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + proc.stderr[-6000:]
    return out


@pytest.fixture(scope="module")
def server(site_dir: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the docs extra: pip install -e '.[docs]'")
    from selenium.webdriver.chrome.service import Service

    for exe in (CHROMIUM, CHROMEDRIVER):
        assert Path(exe).is_file(), (
            f"{exe} not found: the docs browser test needs Debian's chromium and chromium-driver "
            "(bash scripts/install_system_deps.sh, or apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_argument("--user-data-dir=" + str(tmp_path_factory.mktemp("chromium-profile")))
    options.add_argument("--window-size=1280,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def _pages(site_dir: Path) -> List[str]:
    """Every HTML page of the site as a URL path relative to the root (directory URLs)."""
    pages = []
    for html in sorted(site_dir.rglob("index.html")):
        rel = html.parent.relative_to(site_dir).as_posix()
        if rel.startswith(("assets", "search")):
            continue
        pages.append("" if rel == "." else rel + "/")
    return pages


def _artifacts() -> Path:
    out = Path(os.environ.get("LENSBOX_DOCS_ARTIFACTS", ROOT / "out" / "docs-screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


_IMAGES_JS = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
Promise.all(imgs.map(i => i.complete ? Promise.resolve() :
    new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })))
  .then(() => done(imgs.map(i => ({src: i.currentSrc.slice(0, 80), alt: i.alt,
                                   complete: i.complete, width: i.naturalWidth}))));
"""


def _check_page(driver: object, base: str, page: str, shots: Path) -> Dict[str, object]:
    driver.get_log("browser")  # drop anything logged before this page
    driver.get(base + page)
    driver.set_script_timeout(60)
    images = driver.execute_async_script(_IMAGES_JS)
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 12000)")
    driver.set_window_size(1280, max(800, int(height)))
    name = (page.strip("/").replace("/", "__") or "index") + ".png"
    driver.save_screenshot(str(shots / name))
    driver.set_window_size(1280, 1000)
    logs = driver.get_log("browser")
    errors = [entry for entry in logs if entry.get("level") == "SEVERE"]
    text = driver.execute_script("return document.body.innerText")
    return {"images": images, "errors": errors, "text": text, "screenshot": name}


@pytest.mark.smollm2
@pytest.mark.slow
def test_every_page_loads_its_images_without_console_errors(site_dir: Path, server: str, browser: object) -> None:
    pages = _pages(site_dir)
    examples = [p for p in pages if p.startswith("examples/") and p != "examples/"]
    assert len(examples) >= int(os.environ.get("LENSBOX_MIN_EXAMPLES", "10")), f"expected the worked examples in the built site, found {examples}"
    shots = _artifacts()
    report = {}
    problems = []
    for page in pages:
        got = _check_page(browser, server, page, shots)
        report[page] = {"images": len(got["images"]), "errors": got["errors"], "screenshot": got["screenshot"]}
        broken = [img for img in got["images"] if not img["complete"] or img["width"] <= 0]
        if broken:
            problems.append(f"{page}: images that did not load: {broken}")
        if got["errors"]:
            problems.append(f"{page}: console errors: {got['errors']}")
        if page in MIN_IMAGES and len(got["images"]) < MIN_IMAGES[page]:
            problems.append(f"{page}: {len(got['images'])} images, expected at least {MIN_IMAGES[page]}")
        if re.search(r"Traceback \(most recent call last\)", str(got["text"])):
            problems.append(f"{page}: an example printed a traceback")
        if page.startswith("examples/") and page != "examples/":
            assert (shots / got["screenshot"]).stat().st_size > 10_000, f"{page}: screenshot looks empty"
    (shots / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    assert not problems, "\n".join(problems)


@pytest.mark.smollm2
@pytest.mark.slow
def test_api_reference_shows_typed_signatures(site_dir: Path) -> None:
    html = (site_dir / "api" / "logit_lens" / "index.html").read_text(encoding="utf-8")
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", html))
    assert "logit_lens" in text and "LensResult" in text
    # show_signature_annotations: the signature carries the parameter and return types
    assert re.search(r"chunk_rows\s*:\s*int\s*=\s*512", text), "typed signature of logit_lens not rendered"
    assert re.search(r"->\s*LensResult", text), "return annotation of logit_lens not rendered"


@pytest.mark.smollm2
@pytest.mark.slow
def test_examples_report_numbers_from_the_run(site_dir: Path) -> None:
    """The quickstart's prose quotes the run's own final-layer probability, as printed in its output."""
    html = (site_dir / "examples" / "quickstart" / "index.html").read_text(encoding="utf-8")
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", html))
    m = re.search(r"top guess after is is (\S+) with probability ([0-9]+\.[0-9]+)", text)
    assert m, "the quickstart's computed claim is missing"
    final_row = re.search(r"final \[\('(.+?)', ([0-9.]+)\)", text)
    assert final_row, "the quickstart's printed top tokens are missing"
    assert abs(float(m.group(2)) - float(final_row.group(2))) < 0.006


def _throwaway_site(tmp: Path, link: str) -> Path:
    """A two-page site using this project's validation settings; returns its config path."""
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    docs = tmp / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(f"# Home\n\nSee [the other page]({link}).\n", encoding="utf-8")
    (docs / "other.md").write_text("# Other\n\n## A section\n", encoding="utf-8")
    small = {
        "site_name": "t",
        "docs_dir": str(docs),
        "site_dir": str(tmp / "site"),
        "strict": config["strict"],
        "validation": config["validation"],
        "markdown_extensions": ["toc"],
        "nav": [{"Home": "index.md"}, {"Other": "other.md"}],
    }
    path = tmp / "mkdocs.yml"
    path.write_text(yaml.safe_dump(small), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "link, ok",
    [("other.md", True), ("other.md#a-section", True), ("missing.md", False), ("other.md#no-such-anchor", False)],
)
def test_broken_internal_links_fail_the_strict_build(tmp_path: Path, link: str, ok: bool) -> None:
    config = _throwaway_site(tmp_path, link)
    proc = _mkdocs("build", "-f", str(config), cwd=tmp_path)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        assert proc.returncode != 0, f"a link to {link!r} built without error"
        assert link.split("#")[-1] in proc.stderr


def test_project_config_is_strict_and_validates_links() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["strict"] is True
    assert config["validation"]["links"]["not_found"] == "warn"
    assert config["validation"]["links"]["anchors"] == "warn"
    options = config["plugins"][2]["mkdocstrings"]["handlers"]["python"]["options"]
    assert options["show_signature_annotations"] is True
