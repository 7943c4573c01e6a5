"""The documentation site, tested the way a reader uses it.

* The site builds with ``mkdocs build --strict`` and its examples executed (or, when
  ``LENSBOX_SITE_DIR`` names an already-built site, that one is checked: CI builds once).
* A headless Debian Chromium (``/usr/bin/chromium`` driven by ``chromedriver`` through
  selenium) opens every page from a local HTTP server on 127.0.0.1, checks that every
  image loaded (``naturalWidth > 0``), that the page logged no console error, and saves a
  screenshot per page (to ``$LENSBOX_DOCS_ARTIFACTS``, default ``out/docs-screenshots``).
* Broken internal links fail a strict build under this project's mkdocs.yml settings
  (checked on a two-page throwaway site, with a passing control). Links the strict build
  cannot see (HTML printed by executed code, API cross-references) are checked on the
  *built* HTML: every internal ``href``/``src`` names a file of the site and every
  ``#anchor`` an id on the target page.
* The browser records every network request of every page: nothing is fetched from
  outside the local server. The search box finds pages.
* Figures: every image fits the page column, one scaled down to fit is a link to its
  full-size file (click to zoom), and a heatmap is shown at >= 74% of its natural size
  (its 8-point cell text stays >= 9 px tall).
* Prose: every page that names a source (the logit-lens post, the hypersphere post, the
  tuned-lens paper, the latent-language study) links to it, every worked example about a
  published finding links to its source, and no page uses the word "seed" for its sources.
"""

import functools
import html as html_lib
import http.server
import json
import os
import re
import socketserver
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple
from urllib.parse import unquote, urljoin, urlsplit

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
    "examples/components/": 1,
    "examples/ablation/": 1,
}
# The sources the pages build on: a page that names one must link to it.
SOURCES = {
    "logit-lens post": "https://www.lesswrong.com/posts/AcKRB8wDpdaN6v6ru/interpreting-gpt-the-logit-lens",
    "hypersphere post": "https://www.lesswrong.com/posts/pHPmMGEMYefk9jLeh/llm-basics-embedding-spaces-transformer-token-vectors-are",
    "tuned-lens paper": "https://arxiv.org/abs/2303.08112",
    "latent-language study": "https://arxiv.org/abs/2402.10588",
}
# Worked examples about the API rather than a published finding need not cite a source.
NO_SOURCE_NEEDED = {"examples/", "examples/quickstart/", "examples/plugin/", "examples/ablation/", "examples/direction/"}
# A heatmap (8-point cell text saved at 110 dpi) shown at this fraction of its size keeps 9 px text.
MIN_HEATMAP_SCALE = 9.0 / (8.0 / 72 * 110)



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
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
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


_FIGURES_JS = """
const column = document.querySelector('article.md-content__inner') || document.body;
const style = getComputedStyle(column);
const inner = column.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
return {column: inner, images: Array.from(column.querySelectorAll('img')).map(i => {
  const a = i.closest('a');
  return {src: i.currentSrc.slice(-60), alt: i.alt.slice(0, 60), natural: i.naturalWidth,
          shown: i.getBoundingClientRect().width, kind: i.dataset.lensboxFigure || '',
          link: a ? a.href : '', same: a ? a.href === i.currentSrc : false};
})};
"""


def _requests(driver: object) -> List[str]:
    """URLs the page requested since the last call (from Chromium's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _external(urls: List[str], base: str) -> List[str]:
    local = ("data:", "blob:", "about:", "chrome:", "chrome-extension:", "devtools:")
    return [u for u in urls if not u.startswith(base) and not u.startswith(local)]


def figure_problems(page: str, figures: Dict[str, object]) -> List[str]:
    """Figures wider than the column, scaled down without a full-size link, or heatmaps shown too small."""
    out = []
    column = float(figures["column"])
    for img in figures["images"]:
        name = img["alt"] or img["src"]
        if img["shown"] > column + 1:
            out.append(f"{page}: figure {name!r} is {img['shown']:.0f} px wide in a {column:.0f} px column")
        scaled = img["natural"] > img["shown"] + 1
        if scaled and not img["same"]:
            out.append(f"{page}: figure {name!r} is scaled to {img['shown']:.0f} of {img['natural']} px "
                       "and is not a link to its full-size image")
        if img["kind"].startswith("lensbox-heatmap") and img["shown"] < MIN_HEATMAP_SCALE * img["natural"]:
            out.append(f"{page}: heatmap {name!r} shown at {img['shown'] / img['natural']:.0%} of its "
                       f"{img['natural']} px: its cell text is under 9 px (show fewer positions)")
    return out


def _check_page(driver: object, base: str, page: str, shots: Path) -> Dict[str, object]:
    driver.get_log("browser")  # drop anything logged before this page
    _requests(driver)
    driver.get(base + page)
    driver.set_script_timeout(60)
    images = driver.execute_async_script(_IMAGES_JS)
    figures = driver.execute_script(_FIGURES_JS)
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 12000)")
    driver.set_window_size(1280, max(800, int(height)))
    name = (page.strip("/").replace("/", "__") or "index") + ".png"
    driver.save_screenshot(str(shots / name))
    driver.set_window_size(1280, 1000)
    logs = driver.get_log("browser")
    errors = [entry for entry in logs if entry.get("level") == "SEVERE"]
    text = driver.execute_script("return document.body.innerText")
    return {"images": images, "errors": errors, "text": text, "screenshot": name, "figures": figures,
            "external": _external(_requests(driver), base)}


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
        report[page] = {"images": len(got["images"]), "errors": got["errors"], "screenshot": got["screenshot"],
                        "figures": got["figures"]}
        broken = [img for img in got["images"] if not img["complete"] or img["width"] <= 0]
        if broken:
            problems.append(f"{page}: images that did not load: {broken}")
        if got["errors"]:
            problems.append(f"{page}: console errors: {got['errors']}")
        if got["external"]:
            problems.append(f"{page}: requests to outside the site: {got['external'][:5]}")
        problems += figure_problems(page, got["figures"])
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


def required_parameter_rows(html: str) -> List[str]:
    """Parameter-table rows marked *required* whose name is not one parameter (``a, b`` or ``a / b``):
    mkdocstrings finds no such parameter in the signature, so it calls it required whatever its default."""
    out = []
    for row in re.findall(r'<tr class="doc-section-item">(.*?)</tr>', html, re.S):
        name = re.search(r"<code>([^<]+)</code>", row)
        if name and "<em>required</em>" in row and re.search(r"[,/ ]", name.group(1).strip()):
            out.append(name.group(1))
    return out


def test_required_rows_checker_flags_grouped_parameters() -> None:
    row = '<tr class="doc-section-item"><td><code>{}</code></td><td><em>required</em></td></tr>'
    assert required_parameter_rows(row.format("k, chunk_rows")) == ["k, chunk_rows"]
    assert required_parameter_rows(row.format("steps / token_budget")) == ["steps / token_budget"]
    assert required_parameter_rows(row.format("model")) == []


@pytest.mark.smollm2
@pytest.mark.slow
def test_api_pages_document_one_parameter_per_row(site_dir: Path) -> None:
    """An optional parameter is never labelled required because its docstring entry grouped several names."""
    problems = []
    for page in (site_dir / "api").glob("*/index.html"):
        problems += [f"{page.parent.name}: {name}" for name in required_parameter_rows(page.read_text(encoding="utf-8"))]
    assert not problems, problems


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


# ------------------------------------------------------------------ links in the built HTML
_LINK = re.compile(r"""<(a|img|link|script|source|iframe)\b[^>]*?\s(href|src)\s*=\s*["']([^"']*)["']""", re.I)
_ID = re.compile(r"""\s(?:id|name)\s*=\s*["']([^"']+)["']""", re.I)
_EXTERNAL = ("http:", "https:", "mailto:", "data:", "javascript:", "tel:", "ftp:", "blob:")


def _html_files(site_dir: Path) -> List[Path]:
    return sorted(p for p in site_dir.rglob("*.html") if not p.relative_to(site_dir).as_posix().startswith("assets/"))


def _target_file(site_dir: Path, url_path: str) -> Path:
    """The file a site-relative URL path names (a directory URL means its index.html)."""
    path = site_dir / unquote(url_path).lstrip("/")
    if url_path.endswith("/") or path.is_dir():
        path = path / "index.html"
    return path


def dead_links(site_dir: Path) -> List[str]:
    """Every internal link or resource of the built site that names a missing file or anchor."""
    site_dir = Path(site_dir)
    root = "http://site.invalid/"
    ids: Dict[Path, Set[str]] = {}
    problems = []
    for page in _html_files(site_dir):
        html = page.read_text(encoding="utf-8", errors="replace")
        page_url = root + page.relative_to(site_dir).as_posix()
        for tag, _attr, raw in _LINK.findall(html):
            link = html_lib.unescape(raw).strip()
            if not link or link.lower().startswith(_EXTERNAL) or link.startswith("//"):
                continue
            parts = urlsplit(urljoin(page_url, link))
            if not (parts.scheme + "://" + parts.netloc + "/").startswith(root):
                continue
            target = _target_file(site_dir, parts.path[len("/"):]) if parts.path else page
            where = f"{page.relative_to(site_dir)}: <{tag}> {link}"
            if not target.is_file():
                problems.append(f"{where} -> missing {target.relative_to(site_dir)}")
                continue
            if parts.fragment and target.suffix == ".html":
                if target not in ids:
                    ids[target] = set(_ID.findall(target.read_text(encoding="utf-8", errors="replace")))
                if unquote(parts.fragment) not in ids[target]:
                    problems.append(f"{where} -> no anchor #{parts.fragment} in {target.relative_to(site_dir)}")
    return problems


def test_dead_link_checker_finds_missing_pages_files_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text(
        '<h2 id="here">x</h2><a href="../b/">ok</a> <a href="#here">ok</a> <a href="../b/#there">ok</a>'
        '<a href="https://example.org/x">external</a> <img src="data:image/png;base64,AAAA">'
        '<a href="../missing/">dead page</a> <a href="../b/#nowhere">dead anchor</a>'
        '<img src="../figures/gone.png"> <a href="#also-missing">dead local anchor</a>',
        encoding="utf-8",
    )
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "index.html").write_text('<p id="there">y</p><a href="../a/#here">ok</a>', encoding="utf-8")
    found = dead_links(tmp_path)
    assert len(found) == 4, found
    assert any("missing/" in f for f in found) and any("#nowhere" in f for f in found)
    assert any("gone.png" in f for f in found) and any("#also-missing" in f for f in found)


@pytest.mark.smollm2
@pytest.mark.slow
def test_no_dead_internal_links_in_the_built_site(site_dir: Path) -> None:
    """Including links printed by executed example code and API cross-references, which the strict build misses."""
    assert len(_html_files(site_dir)) >= 20
    problems = dead_links(site_dir)
    assert not problems, f"{len(problems)} dead links:\n" + "\n".join(problems[:40])


def _page_text(html: str) -> str:
    body = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", html)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", body))


@pytest.mark.smollm2
@pytest.mark.slow
def test_pages_cite_their_sources_and_use_no_seed_jargon(site_dir: Path) -> None:
    problems = []
    for page in _pages(site_dir):
        html = (site_dir / page / "index.html").read_text(encoding="utf-8")
        main = html.split('<article', 1)[-1]
        text = _page_text(main)
        for name, url in SOURCES.items():
            if re.search(re.escape(name), text, re.I) and url not in main:
                problems.append(f"{page}: names the {name} without linking {url}")
        if page.startswith("examples/") and page not in NO_SOURCE_NEEDED and not re.search(r'href="https?://', main):
            problems.append(f"{page}: cites no source (no link to the post, paper or study it builds on)")
        m = re.search(r"\bseed (?:Q&A|threads?|posts?|questions?|material|pages?)\b", text, re.I)
        if m:
            problems.append(f"{page}: internal jargon {m.group(0)!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.smollm2
@pytest.mark.slow
def test_search_finds_pages(site_dir: Path, server: str, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    box = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
    if not box.is_displayed():  # a narrow window hides the box behind the header's search button
        browser.find_element(By.CSS_SELECTOR, "label.md-header__button[for='__search']").click()
        WebDriverWait(browser, 20).until(lambda d: box.is_displayed())
    box.click()
    box.send_keys("tuned lens")
    links = WebDriverWait(browser, 60).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".md-search-result__item a") or False
    )
    hrefs = [a.get_attribute("href") for a in links]
    assert any("tuned_lens" in h for h in hrefs), hrefs[:10]
    for href in hrefs[:10]:
        parts = urlsplit(href)
        assert href.startswith(server) and _target_file(site_dir, parts.path).is_file(), href
    assert not _external(_requests(browser), server)


def _hooks() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("lensbox_docs_hooks", ROOT / "docs" / "_hooks" / "lensbox_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hook_points_md_links_from_executed_code_at_built_pages() -> None:
    from mkdocs.structure.files import File, Files

    hooks = _hooks()
    files = Files([File(p, "docs", "site", True) for p in ("examples/a.md", "examples/b.md", "index.md")])
    page = type("P", (), {"file": files.get_file_from_path("examples/a.md"), "url": "examples/a/"})()
    html = ('<a href="b.md">b</a> <a href="b.md#sec">b</a> <a href="../index.md">home</a> '
            '<a href="missing.md">x</a> <a href="https://x.org/c.md">ext</a> <a href="../b/">done</a>')
    out = hooks.resolve_md_links(html, page, files)
    assert out == ('<a href="../b/">b</a> <a href="../b/#sec">b</a> <a href="../../">home</a> '
                   '<a href="missing.md">x</a> <a href="https://x.org/c.md">ext</a> <a href="../b/">done</a>')


def test_hook_writes_embedded_figures_to_files_inside_zoom_links(tmp_path: Path) -> None:
    import base64

    hooks = _hooks()
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 40
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    html = f'<html><head></head><body><img alt="a" data-lensbox-figure="lensbox-heatmap" src="{uri}"></body></html>'
    out = hooks.zoomable_figures(html, "examples/a/", tmp_path)
    files = list((tmp_path / "figures").iterdir())
    assert len(files) == 1 and files[0].read_bytes() == png
    url = f"../../figures/{files[0].name}"
    assert f'<a class="lensbox-zoom" href="{url}"' in out and f'src="{url}"' in out and "data:" not in out
    assert 'data-lensbox-figure="lensbox-heatmap"' in out and "cursor:zoom-in" in out
    assert hooks.zoomable_figures("<p>no figures</p>", "x/", tmp_path) == "<p>no figures</p>"
