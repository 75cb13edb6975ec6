"""The book in a real browser: build it (`make book`, both languages) into build/book/, serve it on
127.0.0.1 and open the landing page, a concept notebook, the flagship notebook 08 and its Chinese
page in headless Chromium (Debian's `chromium`, driven by Playwright; .ci/run installs it). A page
fails when it is blank, shows a figure that did not load (an <img> with naturalWidth 0), has an
internal link or anchor that leads nowhere, raises a JavaScript error, or is missing from the
book's navigation. Screenshots go to build/book/screenshots/ for review.

Skipped, with the reason, where Chromium or Playwright is absent.
"""
from __future__ import annotations

import functools
import http.server
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from helpers import browser_marks
from tl_course import settings

ROOT = settings.project_root() or Path.cwd()
BOOK = ROOT / "build" / "book"
CHROMIUM, pytestmark = browser_marks("the book's browser test", timeout=900)

PAGES = {  # screenshot name: (path in the book, a heading the page must show)
    "landing": ("index.html", "tl-course"),
    "concept_01": ("01_why_transfer.html", "01 ·"),
    "flagship_08": ("08_fine_tuning.html", "08 ·"),
    "flagship_08_zh": ("zh/08_fine_tuning.html", "08 ·"),
}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def book_url():
    from tl_course.course.book import build_book

    seconds = build_book(BOOK, warn=print)
    print("book built in " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(BOOK)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


def _fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read()
            kind = response.headers.get("Content-Type", "")
            return response.status, body.decode("utf-8", "replace") if "html" in kind else ""
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _nav_links(page) -> set[str]:
    return set(page.eval_on_selector_all(
        "nav.bd-docs-nav a[href], .bd-sidebar-primary nav a[href]", "els => els.map(e => e.href.split('#')[0])"))


@pytest.mark.parametrize("name", list(PAGES))
def test_book_page_in_browser(book_url, browser, name):
    path, heading = PAGES[name]
    url = urllib.parse.urljoin(book_url, path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    response = page.goto(url, wait_until="load")
    assert response is not None and response.status == 200, f"{path}: HTTP {response and response.status}"
    page.wait_for_timeout(500)  # let the theme's scripts settle
    shots = BOOK / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{name}.png"), full_page=False)

    # not blank: a title heading and real text
    text = page.inner_text("main")
    assert len(text.strip()) > 500, f"{path}: the page is (nearly) blank: {text[:200]!r}"
    h1 = page.inner_text("main h1")
    assert heading in h1, f"{path}: expected a heading with {heading!r}, got {h1!r}"

    # every figure loaded; notebook pages have figures
    images = page.eval_on_selector_all("main img", "els => els.map(e => [e.getAttribute('src'), e.complete, e.naturalWidth])")
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert not broken, f"{path}: {len(broken)} image(s) did not load: {broken[:5]}"
    if path != "index.html":
        assert len(images) >= 1, f"{path}: a notebook page without a single figure"

    # every internal link leads to a page that exists, and every anchor to an element
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    pages: dict[str, str] = {}
    bad = []
    for href in sorted(set(hrefs)):
        if not href.startswith(book_url):
            continue  # external links are not checked offline
        target, _, anchor = href.partition("#")
        if target not in pages:
            status, html = _fetch(target)
            pages[target] = html if status == 200 else None
            if status != 200:
                bad.append(f"{href} (HTTP {status})")
                continue
        html = pages[target]
        if anchor and html is not None and target.endswith((".html", "/")):
            anchor = urllib.parse.unquote(anchor)
            if not re.search(r'id="' + re.escape(anchor) + '"', html):
                bad.append(f"{href} (no element with id {anchor!r})")
    assert not bad, f"{path}: broken internal link(s): {bad[:10]}"

    # the page is in the book's navigation (the sidebar of its own language's landing page)
    nav = _nav_links(page)
    landing = urllib.parse.urljoin(url, "index.html")
    assert url in nav or url == landing, f"{path} is not in the navigation sidebar: {sorted(nav)[:20]}"
    if path == "index.html":  # the landing page's navigation lists every notebook, the guide and the glossary
        from tl_course.course.notebooks import course_notebooks

        expected = {urllib.parse.urljoin(url, nb.stem + ".html") for nb in course_notebooks()}
        expected |= {urllib.parse.urljoin(url, "guide.html"), urllib.parse.urljoin(url, "glossary.html")}
        assert not expected - nav, f"not in the navigation: {sorted(expected - nav)}"
    assert not errors, f"{path}: JavaScript error(s): {errors[:3]}"
    page.close()


def test_chinese_page_is_chinese(book_url, browser):
    page = browser.new_page()
    page.goto(urllib.parse.urljoin(book_url, "zh/08_fine_tuning.html"))
    text = page.inner_text("main")
    cjk = sum("\u4e00" <= ch <= "\u9fff" for ch in text)
    assert cjk > 300, f"zh/08_fine_tuning.html has only {cjk} Chinese characters: is it translated?"
    assert page.get_attribute("html", "lang").startswith("zh")
    page.close()
