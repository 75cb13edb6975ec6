"""Everything the course writes to disk goes through here: atomic writes, one cache-key scheme,
and cached tensors that carry their own checksum.

- :func:`write_atomically` writes into a temporary file beside the target and renames it into
  place: an interrupted run never leaves a half-written file, and the temporary file is removed
  on any failure.
- :func:`cache_path` names a cache file from a kind (``features``, ``results``, ...), a readable
  name and the values it depends on, hashed with :data:`VERSION`: change any of them and the
  old file is simply never read again.
- :func:`save` / :func:`load` store PyTorch-serialisable plain data (tensors, numbers, strings,
  lists, tuples, dicts) with a sha256 of its contents. :func:`load` reads with
  ``weights_only=True`` (a file can never run code), recomputes the checksum, and returns None
  (deleting the file) when the file is unreadable, altered, or fails the caller's check: the
  caller then recomputes.

Usage::

    from tl_course import cache
    path = cache.cache_path("features", "efficientnet_lite0", backbone.cache_key(), dataset.fingerprint())
    blob = cache.load(path, check=lambda b: b["labels"].shape[0] == len(dataset))
    if blob is None:
        blob = {"features": X, "labels": y}
        cache.save(blob, path)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from . import settings

VERSION = "2"
"""Part of every cache key: bump it when the meaning of cached data changes."""

_MAGIC = "tl_course.cache/2"


class WriteError(OSError):
    """A file the course must write (a cache, a model, metrics) that cannot be written: an
    unwritable or blocked folder, a full disk. The message names the file and what to do."""


def key(*parts: Any) -> str:
    """A sha256 hex digest of :data:`VERSION` and ``parts`` (each turned into text with ``repr``
    unless it already is text).

    Usage: ``cache.key(backbone.cache_key(), dataset.fingerprint(), "stage=3")``
    """
    text = "|".join([VERSION] + [p if isinstance(p, str) else repr(p) for p in parts])
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(kind: str, name: str, *parts: Any, suffix: str = ".pt") -> Path:
    """``TL_COURSE_DATA/<kind>/<name>-<key>.pt``: where a cached result that depends on ``parts``
    lives. ``name`` is only for people reading the folder (unsafe characters are replaced).

    Usage: ``cache_path("features", bb.name, bb.cache_key(), data.train.fingerprint())``
    """
    safe = re.sub(r"[^\w.\-\[\]:]+", "_", name).replace(":", "_").strip("_") or "cache"
    return settings.data_dir() / kind / f"{safe}-{key(*parts)[:24]}{suffix}"


def write_atomically(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` (same folder, same suffix), then
    rename it onto ``path``. On any failure (including Ctrl-C) the temporary file is removed and
    ``path`` is left as it was.

    Usage: ``write_atomically(out / "model.pt", lambda tmp: torch.save(payload, tmp))``
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(path)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{path.suffix}",
                                    dir=path.parent)
    except OSError as exc:
        raise WriteError(f"Cannot write {path} ({exc.strerror or exc}): its folder cannot be created or "
                         "written to. Caches live under TL_COURSE_DATA: point it at a folder you can "
                         "write to.") from None
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteError(f"Cannot write {path} ({exc.strerror or exc}); nothing was changed there. "
                         "Check the free disk space and that the folder is writable.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _remove_orphans(path: Path) -> None:
    """Delete temporary files of ``path`` left by a process that was killed while writing it
    (their name carries the writer's process id), so they never pile up."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp{path.suffix}"):
        try:
            pid = int(tmp.name[len(path.name) + 2:].split(".", 1)[0])
            os.kill(pid, 0)  # still running: its file is in use
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, OSError):
            pass


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically.

    Usage: ``write_text(out / "metrics.json", json.dumps(metrics))``
    """
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (non-JSON values as text).

    Usage: ``write_json(out / "metrics.json", {"val_accuracy": 0.94})``
    """
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def checksum(obj: Any) -> str:
    """A sha256 of plain data: every tensor's dtype, shape and bytes, every other value's
    ``repr``, in order, with the structure (dict keys, list lengths) included.

    Usage: ``checksum({"features": X, "labels": y})``
    """
    digest = hashlib.sha256()

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, dict):
            digest.update(f"D{len(value)}".encode())
            for k in value:
                digest.update(repr(k).encode())
                walk(value[k])
        elif isinstance(value, (list, tuple)):
            digest.update(f"{type(value).__name__[0]}{len(value)}".encode())
            for v in value:
                walk(v)
        else:
            digest.update(f"V{value!r}".encode())

    walk(obj)
    return digest.hexdigest()


def save(obj: Any, path: str | Path) -> Path:
    """Store plain data (tensors, numbers, strings, lists, tuples, dicts) at ``path`` atomically,
    with its :func:`checksum`.

    Usage: ``cache.save({"features": X, "labels": y}, path)``
    """
    payload = {"format": _MAGIC, "sha256": checksum(obj), "data": obj}
    return write_atomically(path, lambda tmp: torch.save(payload, tmp))


def load(path: str | Path, check: Callable[[Any], bool] | None = None) -> Any | None:
    """The data :func:`save` stored at ``path``, or None when there is none usable: missing,
    unreadable, not written by :func:`save`, changed since (checksum), or rejected by
    ``check(data)`` (e.g. the wrong number of rows). Anything but a missing file is deleted, so
    the caller recomputes and the next run does not trip over it again.

    Usage: ``blob = cache.load(path, check=lambda b: len(b["labels"]) == len(dataset))``
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        ok = (isinstance(payload, dict) and payload.get("format") == _MAGIC
              and payload.get("sha256") == checksum(payload.get("data")))
        data = payload["data"] if ok else None
        ok = ok and (check is None or bool(check(data)))
    except Exception:  # truncated file, foreign pickle, a check that raised: never trust it
        ok, data = False, None
    if not ok:
        path.unlink(missing_ok=True)
        return None
    return data
