"""PRESENT mode: in front of a class, expensive cells reuse the results of an earlier run.

Every call to :func:`reuse` computes its result and stores it (under :func:`results_dir`),
keyed by a name and the parameters it depends on. With ``TL_COURSE_PRESENT=1`` in the environment
(set before starting JupyterLab, or ``%env TL_COURSE_PRESENT=1`` in a notebook's first cell), a
stored result with the same key and parameters is returned at once, with a line saying so; a
missing one is computed as usual. Run the course once before the lecture (``make course``) and every
notebook then replays in seconds. Without PRESENT mode nothing is ever reused: the notebooks
compute everything, which is what ``make test``'s first pass checks. Its offline pass (the
data-dependent notebooks on their fallback data) runs in PRESENT mode: a result keyed by the same
parameters and the same data contents as in the first pass is the same computation, so it is
replayed rather than repeated; everything that depends on the fallback data is computed.

Results are plain data only (numbers, strings, lists, tuples, dicts, tensors and numpy arrays), so
they are read back with ``torch.load(weights_only=True)``: a stored file can never run code.

Usage::

    from tl_course.course.present import reuse
    accuracies = reuse("01.budgets", lambda: run_all_budgets(), seed=SEED, budgets=LABELS_PER_CLASS)
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import cache, settings

__all__ = ["present_mode", "reuse", "results_dir"]

_NDARRAY = "__tl_course_ndarray__"


def present_mode() -> bool:
    """True when ``TL_COURSE_PRESENT`` asks expensive cells to reuse stored results.

    Usage: ``if present_mode(): print("demo mode")``
    """
    return os.environ.get("TL_COURSE_PRESENT", "").strip().lower() in {"1", "true", "yes", "on"}


def results_dir() -> Path:
    """Where :func:`reuse` keeps its results: ``TL_COURSE_RESULTS`` if set, else
    ``TL_COURSE_DATA/results``. ``make test`` points it at a folder of its own, emptied first, so
    its offline pass replays only results its first pass computed (never a lecture's).

    Usage: ``shutil.rmtree(results_dir())`` forgets every stored result.
    """
    env = os.environ.get("TL_COURSE_RESULTS", "").strip()
    path = Path(env).expanduser() if env else settings.data_dir() / "results"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise settings.SettingsError(f"Cannot create the results folder {path} ({exc.strerror or exc}); "
                                     "point TL_COURSE_RESULTS at a folder you can write to, or unset it.") from None
    return path


def _to_plain(value: Any, where: str = "result") -> Any:
    if isinstance(value, np.generic):  # before float: np.float64 is a float subclass
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{where}: numpy arrays of Python objects cannot be stored.")
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, (list, tuple)):
        items = [_to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: _to_plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(f"{where} is a {type(value).__name__}: reuse() stores plain data only (numbers, "
                    "strings, lists, tuples, dicts, tensors, numpy arrays). Return those from the "
                    "computation, e.g. history.rows instead of a History object.")


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_NDARRAY}:
            return value[_NDARRAY].numpy()
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_from_plain(v) for v in value)
    return value


def _identity(value: Any) -> Any:
    """A parameter as it enters the key: a dataset (anything with ``fingerprint()``, or loaded
    splits) by the sha256 of its contents, so two datasets that share a name and a size (the real
    set and its bundled subset, say) never replay each other's results; anything else as it is."""
    if callable(getattr(value, "fingerprint", None)):
        return f"data sha256 {value.fingerprint()}"
    splits = [getattr(value, s, None) for s in ("train", "val", "test")]
    if splits[0] is not None and callable(getattr(splits[0], "fingerprint", None)):
        return "splits sha256 " + " ".join(s.fingerprint() if s is not None else "-" for s in splits)
    return value


def _path(key: str, params: dict) -> Path:
    params = {name: _identity(value) for name, value in params.items()}
    return results_dir() / cache.cache_path("results", key, key, json.dumps(params, sort_keys=True, default=repr)).name


def reuse(key: str, compute: Callable[[], Any], **params) -> Any:
    """Return ``compute()``; store it under ``key`` and ``params``. In PRESENT mode, return the
    stored result of an earlier call with the same key and parameters instead, if there is one.

    ``params`` must name everything the result depends on (seed, budgets, epochs, dataset, ...),
    so a changed parameter never replays a stale result. Pass a dataset itself (``data=data``,
    loaded splits or one split) rather than its name: it is keyed by its contents.

    Usage: ``sweep = reuse("08.sweep", lambda: {n: run(n) for n in SWEEP}, sweep=SWEEP, epochs=EPOCHS)``
    """
    path = _path(key, params)
    if present_mode() and path.is_file():
        stored = cache.load(path, check=_well_formed)  # a damaged, altered or foreign file: None
        if stored is None:
            print(f"PRESENT mode: could not use {path.name}; recomputing '{key}'.")
        else:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(stored["created"]))
            print(f"PRESENT mode: reusing '{key}' stored {when} "
                  f"(computed in {stored['seconds']:.0f} s); unset TL_COURSE_PRESENT to recompute.")
            return _from_plain(stored["value"])
    start = time.perf_counter()
    value = compute()
    cache.save({"key": key, "params": json.dumps({n: _identity(v) for n, v in params.items()}, sort_keys=True, default=repr),
                "value": _to_plain(value), "created": float(time.time()),
                "seconds": float(time.perf_counter() - start)}, path)
    return value


def _well_formed(stored) -> bool:
    """A stored result has a value and finite numeric metadata, its creation time a date that
    can be printed (anything else is recomputed)."""
    if not (isinstance(stored, dict) and "value" in stored
            and all(isinstance(stored.get(k), (int, float)) and not isinstance(stored.get(k), bool)
                    and math.isfinite(stored[k]) for k in ("created", "seconds"))):
        return False
    try:
        time.localtime(stored["created"])
    except (OverflowError, OSError, ValueError):
        return False
    return stored["seconds"] >= 0
