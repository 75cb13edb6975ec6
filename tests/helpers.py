"""Small data makers shared by several test files."""
from __future__ import annotations

import torch


def blobs(n=120, d=8, classes=3, seed=0, spread=0.3):
    """``(X, y)``: ``n`` points in ``d`` dimensions around one random centre per class."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g) * 3
    y = torch.arange(n) % classes
    X = centres[y] + spread * torch.randn(n, d, generator=g)
    return X, y


def browser_marks(what: str, timeout: int):
    """``(chromium path or None, pytest marks)`` for a test that drives headless Chromium through
    Playwright: skipped, with the reason, where Chromium or Playwright is missing."""
    import os
    import shutil

    import pytest

    chromium = os.environ.get("TL_COURSE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
        missing = None
    except ImportError as exc:  # pragma: no cover - in requirements.txt
        missing = str(exc)
    return chromium, [
        pytest.mark.skipif(chromium is None, reason="no Chromium here (Debian: apt-get install chromium; "
                           f".ci/run installs it); {what} needs it"),
        pytest.mark.skipif(missing is not None, reason=f"playwright is not installed ({missing})"),
        pytest.mark.timeout(timeout),
    ]
