"""The live course in a real browser: start JupyterLab as `make lab` does (127.0.0.1, a token),
open notebook 08 in headless Chromium (Playwright with the system's `chromium`), run its explorer
cell, press Run, move a control, press Run again and see the result change; check that the slides
extension (jupyterlab-rise) is loaded, and that its preview renders notebook 08 as Reveal.js
slides, one per slide-marked cell.

The explorer runs in a copy of 08 reduced to its parameters cell, the explorer cell as it is, and
a stand-in for the function the explorer wraps that prints the values it receives: the real
function (minutes of fine-tuning) is what nbval runs headless; what no other test sees is the
widget itself, rendered by JupyterLab and driven by clicks and keys. Screenshots go to
build/book/screenshots/. Skipped, with the reason, where Chromium or Playwright is absent.
"""
from __future__ import annotations

import ast
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from helpers import browser_marks
from tl_course import settings

ROOT = settings.project_root() or Path.cwd()
SHOTS = ROOT / "build" / "book" / "screenshots"
CHROMIUM, pytestmark = browser_marks("the live-course browser test", timeout=1200)

NOTEBOOK = Path(os.environ.get("TL_COURSE_LAB_NOTEBOOK") or ROOT / "notebooks" / "08_fine_tuning.ipynb")


def _explorer_call(source: str) -> ast.Call | None:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "explorer":
            return node
    return None


def _quick_notebook(folder: Path) -> Path:
    """Notebook 08 reduced to its parameters cell, a stand-in for the function its explorer wraps
    (it prints the values it was called with: nbval runs the real one headless, this test is about
    the widget in a browser), and the explorer cell itself, unchanged."""
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell = next(c for c in nb.cells if c.cell_type == "code" and _explorer_call(c.source) is not None)
    name = _explorer_call(cell.source).args[0].id
    stand_in = (f"from tl_course.course.widgets import explorer\n\n\n"
                f"def {name}(**values):  # a stand-in added by tests/test_lab_browser.py\n"
                f"    print('ran with ' + ', '.join(f'{{k}}={{v}}' for k, v in values.items()))\n")
    nb.cells = [params, nbformat.v4.new_code_cell(stand_in), cell]
    for c in nb.cells:
        c.outputs, c.execution_count = [], None
    nb.metadata.pop("widgets", None)
    path = folder / NOTEBOOK.name
    nbformat.write(nb, str(path))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    _quick_notebook(folder)
    shutil.copy(NOTEBOOK, folder / f"full_{NOTEBOOK.name}")  # for the slides
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, TL_COURSE_OFFLINE="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("TL_COURSE_MIRROR", None)
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={folder}", "--LabApp.expose_app_in_browser=True",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", f"--LabApp.user_settings_dir={tmp_path / 'settings'}"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),  # CI runs as root
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
            time.sleep(1)
        yield base, token, folder
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _output_text(page) -> str:
    return page.inner_text(".widget-vbox .jp-OutputArea") if page.query_selector(".widget-vbox .jp-OutputArea") else ""


def _open_in_lab(p, base: str, token: str, name: str):
    """Headless Chromium on JupyterLab's page of notebook ``name``, once its cells are shown."""
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/lab/tree/{name}?token={token}")
    page.wait_for_function("window.jupyterapp && document.querySelector('.jp-NotebookPanel .jp-Cell')",
                           timeout=180_000)
    return browser, page


def test_notebook_08_explorer_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    base, token, folder = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser, page = _open_in_lab(p, base, token, NOTEBOOK.name)
        # the slides extension is loaded: jupyterlab-rise registers its commands
        rise = page.evaluate("window.jupyterapp.commands.listCommands().filter(c => /rise/i.test(c))")
        assert rise, "jupyterlab-rise is not enabled: no RISE command in JupyterLab"

        page.wait_for_function("window.jupyterapp.shell.currentWidget && "
                               "window.jupyterapp.shell.currentWidget.sessionContext && "
                               "window.jupyterapp.shell.currentWidget.sessionContext.session && "
                               "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel", timeout=180_000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        run_button = page.locator(".widget-vbox button", has_text="Run")
        run_button.wait_for(timeout=300_000)  # the explorer renders when its (last) cell has run
        page.screenshot(path=str(SHOTS / "lab_08_explorer.png"))
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                              has_text="Traceback")
        assert errors.count() == 0, errors.first.inner_text()

        run_button.click()  # the initial values
        page.wait_for_function("(() => { const o = document.querySelector('.widget-vbox .jp-OutputArea'); "
                               "return o && o.innerText.includes('ran with'); })()", timeout=120_000)
        first = _output_text(page)

        readout = page.locator(".widget-vbox .widget-readout").first
        before = readout.inner_text()
        handle = page.locator(".widget-vbox .noUi-handle").first
        handle.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"document.querySelector('.widget-vbox .widget-readout').innerText !== {before!r}",
                               timeout=30_000)
        after = readout.inner_text().strip()

        run_button.click()
        page.wait_for_function(f"(() => {{ const o = document.querySelector('.widget-vbox .jp-OutputArea'); "
                               f"return o && o.innerText.includes('ran with') && o.innerText !== {first!r}; }})()",
                               timeout=120_000)
        second = _output_text(page)
        page.screenshot(path=str(SHOTS / "lab_08_explorer_after_run.png"))
        assert f"={after}" in second and f"={before.strip()}" in first, (before, after, first, second)
        browser.close()


def test_notebook_08_renders_as_slides(lab):
    """jupyterlab-rise's preview (the Alt+R slideshow, in a side panel) renders notebook 08 as
    Reveal.js slides: its title slide, and more slides after it (one per `## ` section)."""
    from playwright.sync_api import sync_playwright

    base, token, folder = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser, page = _open_in_lab(p, base, token, f"full_{NOTEBOOK.name}")
        page.evaluate("window.jupyterapp.commands.execute('RISE:preview')")
        deadline = time.time() + 180
        slides = None
        while time.time() < deadline and slides is None:
            for frame in page.frames:
                try:
                    if frame.query_selector(".reveal .slides section"):
                        slides = frame
                        break
                except Exception:  # a frame still loading
                    pass
            time.sleep(1)
        assert slides is not None, "no Reveal.js slides rendered by jupyterlab-rise's preview"
        slides.wait_for_function("document.querySelector('.reveal .slides section.present') && "
                                 "document.querySelector('.reveal .slides section.present').innerText.includes('08')",
                                 timeout=120_000)
        count = slides.evaluate("document.querySelectorAll('.reveal .slides > section').length")
        page.screenshot(path=str(SHOTS / "lab_08_slides.png"))
        nb = nbformat.read(str(NOTEBOOK), as_version=4)
        expected = sum(c.metadata.get("slideshow", {}).get("slide_type") == "slide" for c in nb.cells)
        # one slide per slide-marked cell (tests/test_slides.py checks the marks; unmarked: one slide)
        assert count == max(expected, 1), f"{count} slides rendered, {expected} marked in the notebook"
        browser.close()
