"""The rendered book as a reader sees it, in headless Chromium (Debian's chromium + chromedriver).

Every page of the toc, in the HTML that ``make test`` renders from the smoke notebooks
(``_build/smoke/html``, or ``$DEVBOOK_HTML``), is opened from a server on 127.0.0.1, with
every other host made unresolvable, and must show: math typeset by MathJax (no raw TeX left in
the visible text, MathJax output where the page has math, no TeX errors), every image loaded,
no JavaScript error, no progress-bar text, no build-machine path, no library notice (tqdm's
"IProgress not found", Deprecation- and FutureWarnings), and no request that leaves
the loopback server. Screenshots of each page go to ``_build/screens/`` (``book__theory__llc-1.png``,
``-2.png``... for a long page).

The synthetic pages at the end show that each check fails when it should.
``make test`` runs this file after the render step; alone: ``pytest tests/test_browser.py``.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devbook.book import install_mathjax, pages
from devbook.paths import repo_root

Serve = Callable[[Path], str]  # the `serve` fixture: a folder -> its loopback URL

ROOT = repo_root()
HTML = Path(os.environ.get("DEVBOOK_HTML", ROOT / "_build" / "smoke" / "html"))
SCREENS = ROOT / "_build" / "screens"
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = next(
    (p for p in (Path("/usr/lib/chromium/chromium"), Path("/usr/bin/chromium")) if p.exists()), None
)

PROGRESS_TEXT = [r"[\d?](?:it|cell)/s", r"\ds/(?:it|cell)", r"%\|", "█"]
# Not ".venv" alone: the intro tells readers that `make book` creates .venv.
MACHINE_PATHS = ["/work/", "/root/", "/tmp/", "/home/", ".venv/lib", "site-packages", "ipykernel_"]
LIBRARY_NOISE = ["IProgress not found", "DeprecationWarning", "FutureWarning", "Moving model to device"]
RAW_TEX = [r"\\\(", r"\\\)", r"\\\[", r"\\\]", r"\$\$", r"\\begin\{", r"\$[^$\n]*[\\^_][^$\n]*\$"]

# The text a reader sees outside code (pre, code) and outside MathJax's own output.
PROSE_JS = """
const skip = new Set(['PRE', 'CODE', 'SCRIPT', 'STYLE', 'TEXTAREA', 'MJX-CONTAINER', 'MJX-ASSISTIVE-MML']);
const out = [];
const walk = (node) => {
  if (node.nodeType === Node.TEXT_NODE) { out.push(node.textContent); return; }
  if (node.nodeType !== Node.ELEMENT_NODE || skip.has(node.tagName)) return;
  if (getComputedStyle(node).display === 'none') return;
  for (const child of node.childNodes) walk(child);
};
walk(document.body);
return out.join(' ');
"""

# Wait for MathJax (if the page loads it) to finish typesetting; returns what it found.
MATH_JS = """
const done = arguments[arguments.length - 1];
const report = () => done({
  loaded: !!(window.MathJax && window.MathJax.version),
  math: document.querySelectorAll('.math, span.math, div.math').length,
  typeset: document.querySelectorAll('mjx-container').length,
  errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent).slice(0, 5),
});
if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
  MathJax.startup.promise.then(report, report);
} else { setTimeout(report, 1500); }
"""

# The text of the cells' outputs (myst-nb's .cell_output), not of their code.
OUTPUTS_JS = "return Array.from(document.querySelectorAll('.cell_output')).map(e => e.innerText).join('\\n');"

IMAGES_JS = """
return Array.from(document.images)
  .filter(img => !(img.complete && img.naturalWidth > 0))
  .map(img => img.getAttribute('src'));
"""

RESOURCES_JS = "return performance.getEntriesByType('resource').map(e => e.name);"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def serve() -> Iterator[Serve]:
    """``serve(folder)``: the loopback URL of ``folder`` (one server per folder, for the module)."""
    servers: dict[Path, str] = {}
    running = []

    def url(folder: Path) -> str:
        if folder not in servers:
            handler = functools.partial(_QuietHandler, directory=str(folder))
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            running.append(server)
            servers[folder] = f"http://127.0.0.1:{server.server_address[1]}"
        return servers[folder]

    yield url
    for server in running:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium driven by Debian's chromedriver; no host but 127.0.0.1 resolves."""
    if CHROMIUM is None or not CHROMEDRIVER.exists():
        pytest.fail(
            "the browser test needs Debian's chromium and chromium-driver: "
            "apt-get install -y chromium chromium-driver (make test installs them)"
        )
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: object, stem: Path, tile: int = 10000, tiles: int = 3) -> list[Path]:
    """PNGs of the page, ``tile`` CSS pixels tall each: ``<stem>-1.png``, ``<stem>-2.png``...

    At most ``tiles`` of them, from the top (a chapter fits; the API reference is cut: each
    10,000-px tile costs about 10 s). The viewport is made as tall as what is captured, as a
    very tall window would be (Chromium's ``captureBeyondViewport`` shifts some pages sideways).
    Earlier screenshots of the same page are removed first.
    """
    import base64

    stem.parent.mkdir(parents=True, exist_ok=True)
    for old in stem.parent.glob(f"{stem.name}-*.png"):
        old.unlink()
    height = min(int(driver.execute_script("return document.documentElement.scrollHeight")), tile * tiles)
    metrics = {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    paths = []
    try:
        for number, top in enumerate(range(0, height, tile), start=1):
            clip = {"x": 0, "y": top, "width": 1280, "height": min(tile, height - top), "scale": 1}
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip})
            paths.append(stem.parent / f"{stem.name}-{number}.png")
            paths[-1].write_bytes(base64.b64decode(shot["data"]))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return paths


def _near(text: str, needle: str) -> str:
    """``needle`` with up to 60 characters of ``text`` either side of its first occurrence."""
    at = text.find(needle)
    return repr(text[max(0, at - 60) : at + len(needle) + 60])


def _math_problems(math: dict, prose: str) -> list[str]:
    """What :data:`MATH_JS` found wrong, and raw TeX left in the prose."""
    found = []
    if math["math"] and not math["loaded"]:
        found.append(f"{math['math']} math elements but MathJax did not load")
    if math["math"] and not math["typeset"]:
        found.append(f"{math['math']} math elements but no MathJax output (mjx-container)")
    found += [f"TeX error in a formula: {error!r}" for error in math["errors"]]
    matches = [m.group(0) for pattern in RAW_TEX for m in [re.search(pattern, prose)] if m]
    return found + [f"raw TeX {match[:40]!r} in the visible text" for match in matches]


def _text_problems(text: str, outputs: str) -> list[str]:
    """Progress bars and machine paths in the page's text, library notices in its outputs."""
    bars = [m.group(0) for pattern in PROGRESS_TEXT for m in [re.search(pattern, text)] if m]
    found = [f"progress-bar text {bar!r} near {_near(text, bar)}" for bar in bars]
    found += [
        f"machine path {needle!r} near {_near(text, needle)}" for needle in MACHINE_PATHS if needle in text
    ]
    return found + [
        f"library notice {needle!r} in an output: {_near(outputs, needle)}"
        for needle in LIBRARY_NOISE
        if needle in outputs
    ]


def problems(driver: object, url: str, origin: str, shot: Path | None = None) -> list[str]:
    """Everything wrong with the page at ``url`` as a reader would see it (empty: all well).

    Parameters
    ----------
    driver
        A Selenium Chrome driver (the ``browser`` fixture).
    url
        The page; ``origin`` (``http://127.0.0.1:PORT``) is the only place it may load from.
    shot
        Where to save screenshots of the page (:func:`screenshot`'s ``stem``), if anywhere.
    """
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    found = _math_problems(driver.execute_async_script(MATH_JS), driver.execute_script(PROSE_JS))
    found += [f"image not loaded: {src}" for src in driver.execute_script(IMAGES_JS)]
    # A missing favicon.ico (Sphinx makes none) is not an error of the page.
    logs = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    found += [f"JavaScript error: {message[:300]}" for message in logs if "/favicon.ico " not in message]
    text = driver.execute_script("return document.body.innerText")
    found += _text_problems(text, driver.execute_script(OUTPUTS_JS))
    resources = driver.execute_script(RESOURCES_JS)
    found += [
        f"request off the local server: {name}"
        for name in resources
        if not (name.startswith(origin + "/") or name.startswith("data:"))
    ]
    if shot is not None:
        screenshot(driver, shot)
    return found


@pytest.mark.parametrize("page", pages(), ids=pages())
def test_page_as_a_reader_sees_it(page: str, browser: object, serve: Serve) -> None:
    html = HTML / (page + ".html")
    assert html.exists(), (
        f"no {html}: render the smoke notebooks first "
        "(make test, or python -m devbook.book render --preset smoke --html _build/smoke/html)"
    )
    origin = serve(HTML)
    found = problems(browser, f"{origin}/{page}.html", origin, SCREENS / page.replace("/", "__"))
    assert not found, f"{page}.html:\n  " + "\n  ".join(found)


def test_math_is_served_by_the_build() -> None:
    assert (HTML / "_static" / "mathjax" / "tex-chtml.js").exists(), "MathJax is not in the HTML build"
    page = (HTML / pages()[1]).with_suffix(".html").read_text(encoding="utf-8") if len(pages()) > 1 else ""
    assert "_static/mathjax/tex-chtml.js" in page and "cdn.jsdelivr" not in page


def test_downloads_name_no_machine_path() -> None:
    sources = sorted((HTML / "_sources").rglob("*.*"))
    assert sources, f"no page sources under {HTML / '_sources'}"
    found = [
        f"{path.relative_to(HTML)}: {needle!r}"
        for path in sources
        for needle in MACHINE_PATHS
        if needle in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert not found, "machine paths in what the download button offers:\n  " + "\n  ".join(found)


# Synthetic pages: each check must fail on what it is there to catch.


def _page(folder: Path, name: str, body: str, head: str = "") -> str:
    (folder / name).write_text(
        f"<!doctype html><html><head><meta charset='utf-8'>{head}</head><body>{body}</body></html>",
        encoding="utf-8",
    )
    return name


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pages")
    install_mathjax(folder / "_static")
    shutil.copy(Path(__file__), folder / "unused.txt")  # a file that is not an image
    return folder


MATHJAX = "<script defer src='_static/mathjax/tex-chtml.js'></script>"
MATH = "<p>The LLC <span class='math notranslate nohighlight'>\\(\\hat\\lambda = d/2\\)</span>.</p>"


def _check(browser: object, serve: Serve, folder: Path, name: str) -> list[str]:
    origin = serve(folder)
    return problems(browser, f"{origin}/{name}", origin)


def test_checks_pass_a_clean_page(browser: object, serve: Serve, synthetic: Path) -> None:
    name = _page(synthetic, "clean.html", MATH + "<pre>for i in tqdm(range(3)): pass</pre>", MATHJAX)
    assert _check(browser, serve, synthetic, name) == []


def test_checks_catch_raw_tex(browser: object, serve: Serve, synthetic: Path) -> None:
    name = _page(synthetic, "raw.html", MATH + "<p>and $$x^2$$</p>")  # MathJax never loaded
    found = "\n".join(_check(browser, serve, synthetic, name))
    assert "MathJax did not load" in found and "raw TeX" in found


def test_checks_catch_a_cdn(browser: object, serve: Serve, synthetic: Path) -> None:
    cdn = "<script src='https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js'></script>"
    found = "\n".join(_check(browser, serve, synthetic, _page(synthetic, "cdn.html", MATH, cdn)))
    assert "raw TeX" in found and "MathJax did not load" in found


def test_checks_catch_tex_errors(browser: object, serve: Serve, synthetic: Path) -> None:
    body = "<p><span class='math'>\\(x^1^2\\)</span></p>"  # TeX: "Double exponent"
    found = "\n".join(_check(browser, serve, synthetic, _page(synthetic, "merror.html", body, MATHJAX)))
    assert "TeX error" in found


def test_checks_catch_a_broken_image(browser: object, serve: Serve, synthetic: Path) -> None:
    body = "<img src='missing.png'><img src='unused.txt'>"
    found = _check(browser, serve, synthetic, _page(synthetic, "image.html", body))
    assert sum("image not loaded" in f for f in found) == 2


def test_checks_catch_javascript_errors(browser: object, serve: Serve, synthetic: Path) -> None:
    body = "<script>throw new Error('boom')</script>"
    found = "\n".join(_check(browser, serve, synthetic, _page(synthetic, "js.html", body)))
    assert "JavaScript error" in found and "boom" in found


def test_checks_catch_progress_bars_and_paths(browser: object, serve: Serve, synthetic: Path) -> None:
    body = (
        "<pre>SGLD:  40%|████      | 4/10 [00:01<00:02,  3.1it/s]</pre>"
        "<div class='cell_output'><pre>/work/main/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: "
        "TqdmWarning: IProgress not found. Please update jupyter and ipywidgets.</pre></div>"
    )
    found = "\n".join(_check(browser, serve, synthetic, _page(synthetic, "noise.html", body)))
    for needle in (
        "'%|'",
        "'█'",
        "'1it/s'",
        "'/work/'",
        "'.venv/lib'",
        "'site-packages'",
        "'IProgress not found'",
    ):
        assert needle in found, f"{needle} not reported in:\n{found}"
