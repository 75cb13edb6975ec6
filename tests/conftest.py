"""Shared fixtures of the unit tests.

- every test runs with its own ``TL_COURSE_DATA`` and ``TORCH_HOME`` (under ``tmp_path``), and
  without ``TL_COURSE_MIRROR`` / ``TL_COURSE_OFFLINE`` unless it sets them itself;
- ``image_folder`` builds small ImageFolders of PIL-generated images;
- ``http_server`` serves bytes on http://127.0.0.1:<free port>, and can cut a transfer short;
- ``digits_cache`` puts the (slow to generate) ``digits``/``digits_m`` arrays into the test's
  data folder, generated once per session.
"""
from __future__ import annotations

import os

# One thread per BLAS/OpenMP pool, set before NumPy/SciPy/scikit-learn load them (see below).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import http.server  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

# The unit tests use tiny models and problems: one thread is much faster than two on a shared
# 2-core machine (thread contention made a tiny fit() 20x and a small scikit-learn fit 10x
# slower), and no test result depends on it.
torch.set_num_threads(1)
try:
    from threadpoolctl import threadpool_limits

    _BLAS_LIMIT = threadpool_limits(limits=1)  # OpenBLAS/OpenMP used by NumPy and scikit-learn
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
    _BLAS_LIMIT = None

# The real mirror (read-only), resolved before the autouse fixture unsets TL_COURSE_MIRROR.
_ENV_MIRROR = os.environ.get("TL_COURSE_MIRROR")


def real_mirror() -> Path | None:
    """The local mirror holding an extracted ``hymenoptera_data/``, or None."""
    for cand in (Path(__file__).resolve().parents[2] / "shared" / "data",
                 Path(_ENV_MIRROR).expanduser() if _ENV_MIRROR else None):
        if cand is not None and (cand / "hymenoptera_data" / "train").is_dir():
            return cand
    return None


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Own data folder and torch cache per test; no mirror, network allowed, no PRESENT mode and
    results under the data folder (tests set these; ``make test`` runs the unit tests inside its
    offline, PRESENT-mode pass)."""
    data = tmp_path / "tl_data"
    monkeypatch.setenv("TL_COURSE_DATA", str(data))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for name in ("TL_COURSE_MIRROR", "TL_COURSE_OFFLINE", "TL_COURSE_DEVICE", "TL_COURSE_PRESENT",
                 "TL_COURSE_RESULTS"):
        monkeypatch.delenv(name, raising=False)
    return data


# --------------------------------------------------------------------------- images
CLASS_COLOURS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 200, 30), (160, 40, 200)]


def make_image(path: Path, colour=(128, 128, 128), size=(16, 16), seed: int = 0, fmt=None) -> Path:
    """A small RGB image: a base colour plus a little deterministic noise."""
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour, dtype=np.int16) + rng.integers(-20, 21, (size[1], size[0], 3)),
                  0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


@pytest.fixture
def image_folder(tmp_path):
    """``image_folder({"cats": 3, "dogs": 3}, name="photos", ext=".png")``: an ImageFolder
    ``tmp_path/name/class/i.ext`` of class-coloured images (images differ within a class)."""
    counter = iter(range(10_000))

    def build(classes: dict[str, int], name: str = "photos", ext: str = ".png", size=(16, 16),
              root: Path | None = None) -> Path:
        root = Path(root) if root is not None else tmp_path / name
        for k, (cls, n) in enumerate(classes.items()):
            (root / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                make_image(root / cls / f"{cls}_{i:03d}{ext}", CLASS_COLOURS[k % len(CLASS_COLOURS)],
                           size, seed=next(counter))
        return root

    return build


# --------------------------------------------------------------------------- HTTP server
class _Server:
    """Files served from memory. ``interrupted`` routes announce more bytes (Content-Length) than
    they send, then close; ``"chunked"`` ones send half the body in chunked encoding and close
    without the terminating chunk; ``"no-length"`` ones send half the body without any length
    (the end of the connection ends the body, so the client cannot tell it was cut)."""

    def __init__(self):
        self.routes: dict[str, tuple[bytes, bool]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10  # a stuck client never blocks the test for long

            def do_GET(self):  # noqa: N802 (http.server API)
                server.requests.append(self.path)
                if self.path not in server.routes:
                    self.send_error(404, "not found")
                    return
                body, interrupted = server.routes[self.path]
                if interrupted == "no-length":  # HTTP/1.0 style: the body ends when the connection does
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if interrupted == "chunked":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = body[: len(body) // 2]
                    self.wfile.write(f"{len(half):x}\r\n".encode() + half + b"\r\n")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body) + (1000 if interrupted else 0)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if interrupted else body)
                self.wfile.flush()
                if interrupted:
                    self.close_connection = True

            def log_message(self, *args):  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def add(self, path: str, body: bytes, interrupted: bool | str = False) -> str:
        """Serve ``body`` at ``/path`` (``interrupted``: False, True, ``"chunked"`` or ``"no-length"``); returns
        its URL."""
        self.routes["/" + path.lstrip("/")] = (body, interrupted)
        return self.url(path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def http_server():
    """A local HTTP server on 127.0.0.1 (free port), shut down after the test."""
    server = _Server()
    try:
        yield server
    finally:
        server.close()


# --------------------------------------------------------------------------- digits
@pytest.fixture(scope="session")
def _digits_session_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits_cache")
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("TL_COURSE_DATA", str(root))
        from tl_course.data import load_dataset

        load_dataset("digits")
        load_dataset("digits_m")
    finally:
        mp.undo()
    return root / "generated"


@pytest.fixture
def digits_cache(_digits_session_dir, isolated_env):
    """Copies the session's generated digits/digits_m arrays into this test's TL_COURSE_DATA."""
    dest = isolated_env / "generated"
    shutil.copytree(_digits_session_dir, dest, dirs_exist_ok=True)
    return dest


@pytest.fixture
def make_img():
    """``make_img(path, colour, size, seed)``: write one small RGB image (format from suffix)."""
    return make_image


@pytest.fixture
def mirror_root():
    """The real read-only mirror (parent of ``hymenoptera_data/``); skips the test without it."""
    root = real_mirror()
    if root is None:
        pytest.skip("no local mirror of hymenoptera_data (set TL_COURSE_MIRROR)")
    return root
