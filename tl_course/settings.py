"""Where the course keeps its data, whether it may use the network, and how runs are seeded.

Environment variables (names are a fixed contract; tests and CI rely on them):

- ``TL_COURSE_DATA``: where generated/downloaded data and caches live (default: ``data/`` at the
  project root, or ``~/.cache/tl_course`` when the package is installed elsewhere).
- ``TL_COURSE_MIRROR``: a directory of already-extracted datasets, used before any download.
- ``TL_COURSE_OFFLINE=1``: never touch the network.
- ``TL_COURSE_DEVICE``: force ``cpu`` or ``cuda`` (default: CUDA when available).

Threads: PyTorch, OpenMP and BLAS each keep a pool of threads. :func:`threads` is the one place
that limits all of them at once; the course uses it around small computations (probes, small
models, k-means) that run faster on one thread when cores are shared, and whose results then do
not depend on the machine's number of cores.

Usage::

    from tl_course import settings
    settings.data_dir() / "features"
    with settings.threads(1): ...
"""
from __future__ import annotations

import os
import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np

_TRUE = {"1", "true", "yes", "on"}


class SettingsError(ValueError):
    """An environment variable of the course set to something unusable, with what to do instead."""


def project_root() -> Path | None:
    """The source checkout this package lives in, or None when installed as a plain package.

    Usage: ``root = project_root()``
    """
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def data_dir() -> Path:
    """Directory for generated data, downloads and caches (created on demand).

    Usage: ``cache = data_dir() / "features"``
    """
    env = os.environ.get("TL_COURSE_DATA")
    if env:
        path = Path(env).expanduser()
    elif project_root() is not None:
        path = project_root() / "data"
    else:
        path = Path.home() / ".cache" / "tl_course"
    if path.exists() and not path.is_dir():
        raise SettingsError(f"TL_COURSE_DATA={path} is a file; point it at a folder (it is created if missing).")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"Cannot create the data folder {path} ({exc.strerror or exc}); set "
                            "TL_COURSE_DATA to a folder you can write to.") from None
    if not os.access(path, os.W_OK):
        raise SettingsError(f"The data folder {path} is not writable; set TL_COURSE_DATA to a folder "
                            "you can write to.")
    return path.resolve()


def mirror_dir() -> Path | None:
    """The local mirror of extracted datasets named by ``TL_COURSE_MIRROR``, or None.

    Usage: ``mirror = mirror_dir()``
    """
    env = os.environ.get("TL_COURSE_MIRROR")
    if not env:
        return None
    return Path(env).expanduser().resolve()


def offline() -> bool:
    """True when ``TL_COURSE_OFFLINE`` forbids any network access.

    Usage: ``if offline(): ...``
    """
    return os.environ.get("TL_COURSE_OFFLINE", "").strip().lower() in _TRUE


def device() -> str:
    """``"cuda"`` when a GPU is usable (or forced by ``TL_COURSE_DEVICE``), else ``"cpu"``.

    Usage: ``model.to(device())``
    """
    import torch

    forced = os.environ.get("TL_COURSE_DEVICE", "").strip().lower()
    if forced:
        import re

        if not re.fullmatch(r"cpu|cuda(:\d+)?", forced):
            raise SettingsError(f"TL_COURSE_DEVICE={forced!r} is not a device: use 'cpu', 'cuda' or "
                                "'cuda:N', or unset it.")
        if forced.startswith("cuda") and not torch.cuda.is_available():
            raise SettingsError("TL_COURSE_DEVICE asks for CUDA but no CUDA device is available; "
                                "unset it or set TL_COURSE_DEVICE=cpu.")
        return forced
    return "cuda" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int = 0) -> int:
    """Seed Python, NumPy and PyTorch so a run can be repeated exactly on the same machine.

    Usage: ``seed_everything(0)``
    """
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed


@contextmanager
def threads(n: int | None = 1):
    """Run the enclosed code with ``n`` PyTorch intra-op threads and ``n`` BLAS/OpenMP threads
    (NumPy, SciPy, scikit-learn), then restore the previous numbers. ``None`` changes nothing.

    Usage: ``with threads(1): clf.fit(X, y)``
    """
    if n is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(previous)
