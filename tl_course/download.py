"""Downloading and unpacking course assets: progress bar, sha256 check, atomic and safe extraction.

A download is written to ``<dest>.part`` and renamed only once complete and verified, so an
interrupted download never leaves a file that looks finished. Archives are extracted into a
temporary sibling folder and renamed into place; members that would escape the target (``../``,
absolute paths, links) are refused before anything is written.

Usage::

    from tl_course.download import download, extract_archive
    zip_path = download(url, data_dir() / "x.zip", sha256="...")
    extract_archive(zip_path, data_dir() / "x")
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from . import settings


class DownloadError(RuntimeError):
    """A download or extraction that failed, with the reason and what to do instead."""


def file_digest(path: str | Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """The hex digest of a file's contents with ``algorithm`` (any name ``hashlib`` knows).

    Usage: ``file_digest("data/x.npz", "md5")``
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's contents.

    Usage: ``sha256_file("data/x.zip")``
    """
    return file_digest(path, "sha256")


def download(url: str, dest: str | Path, sha256: str | None = None, *, progress: bool = True,
             timeout: float = 30.0, offline_hint: str = "") -> Path:
    """Download ``url`` to ``dest`` (skipped if ``dest`` exists with the right checksum).

    ``sha256`` may be a full digest or a prefix (as in torchvision's file names). Raises
    :class:`DownloadError` when offline, on network failure, on an interrupted transfer and on a
    checksum mismatch; in each case no partial file is left at ``dest``.

    Usage: ``download("https://.../data.zip", "data/data.zip", sha256="ab12...")``
    """
    dest = Path(dest)
    if dest.exists():
        if sha256 is None or sha256_file(dest).startswith(sha256.lower()):
            return dest
        dest.unlink()  # a stale or corrupt earlier download: fetch again
    hint = f" {offline_hint}" if offline_hint else ""
    if settings.offline():
        raise DownloadError(f"TL_COURSE_OFFLINE=1 forbids downloading {url}.{hint}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            with open(part, "wb") as fh, tqdm(total=total, unit="B", unit_scale=True,
                                                desc=f"download {dest.name}",
                                                disable=not progress) as bar:
                while block := response.read(1 << 16):
                    fh.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
        if total is not None and received != total:
            raise DownloadError(f"Download of {url} was interrupted: got {received:,} of "
                                f"{total:,} bytes. Run again to retry.{hint}")
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"Could not download {url}: {reason}. Check your internet connection "
                            f"or proxy, then run again.{hint}") from exc
    except BaseException:  # KeyboardInterrupt included: never leave a partial file
        part.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if sha256 is not None and not actual.startswith(sha256.lower()):
        part.unlink(missing_ok=True)
        raise DownloadError(f"Checksum mismatch for {url}: expected sha256 {sha256}, got {actual}. "
                            f"The file is corrupt or was changed upstream; it was deleted.{hint}")
    os.replace(part, dest)
    return dest


def _check_member(name: str, target: Path) -> None:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and pure.parts[0].endswith(":")):
        raise DownloadError(f"Refusing to extract unsafe archive entry {name!r}: it would be "
                            f"written outside {target}. The archive is corrupt or malicious.")


MAX_EXTRACTED_BYTES = 2 * 1024 ** 3
"""The default cap on what an archive may expand to (a zip bomb stops here, before anything is written)."""


def _remove_stale_extractions(target: Path) -> None:
    """Delete temporary extraction folders beside ``target`` left by a killed run: those whose
    owner process (recorded inside) is gone."""
    for tmp in target.parent.glob(f".{target.name}-*"):
        marker = tmp / ".tl-course-extracting"
        try:
            pid = int(marker.read_text())
            os.kill(pid, 0)  # the owner still runs: leave it alone
            continue
        except (OSError, ValueError):
            pass
        shutil.rmtree(tmp, ignore_errors=True)


def _members(archive: Path, target: Path, opened: list) -> list[tuple[str, int, object]]:
    """``(name, size, open)`` of every regular file in a zip or tar archive, after refusing
    unsafe entries (absolute paths, ``..``, links, devices); the archive handle goes to ``opened``."""
    if zipfile.is_zipfile(archive):
        zf = zipfile.ZipFile(archive)
        opened.append(zf)
        entries = [(i.filename, "other" if (i.external_attr >> 16) & 0o170000 == 0o120000 else
                    "dir" if i.is_dir() else "file", i.file_size, lambda i=i: zf.open(i)) for i in zf.infolist()]
    elif tarfile.is_tarfile(archive):
        tf = tarfile.open(archive)
        opened.append(tf)
        entries = [(m.name, "file" if m.isfile() else "dir" if m.isdir() else "other", m.size,
                    lambda m=m: tf.extractfile(m)) for m in tf.getmembers()]
    else:
        raise DownloadError(f"{archive} is not a zip or tar archive (corrupt or incomplete download?).")
    out = []
    for name, kind, size, open_member in entries:
        _check_member(name, target)
        if kind == "other":
            raise DownloadError(f"Refusing to extract {name!r}: only plain files and folders are allowed "
                                "(not symbolic links or devices).")
        if kind == "file":
            out.append((name, size, open_member))
    return out


def extract_archive(archive: str | Path, target: str | Path, *, expected: dict[str, str] | None = None,
                    max_bytes: int = MAX_EXTRACTED_BYTES) -> Path:
    """Extract a .zip or .tar(.gz/.bz2/.xz) into ``target`` atomically and safely.

    Before anything is written: entries escaping ``target`` (``../``, absolute paths) and links
    are refused, and so is an archive announcing more than ``max_bytes`` in total (a zip bomb).
    While writing, no member may grow beyond its announced size. With ``expected``
    (``{member path: sha256}``, e.g. a dataset's manifest), only the listed members are
    extracted, each checked against its digest as it streams; a member missing or different
    refuses the whole archive. Extraction goes to a temporary folder beside ``target`` renamed
    into place only when complete; temporary folders of killed earlier runs are removed first.
    On any refusal :class:`DownloadError` says why and nothing is left behind.

    Usage: ``extract_archive("data/x.zip", "data/x_extracted", expected=manifest, max_bytes=10**8)``
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise DownloadError(f"{target} already exists; delete it to extract {archive.name} again.")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_extractions(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    (tmp / ".tl-course-extracting").write_text(str(os.getpid()))
    opened: list = []
    try:
        members = _members(archive, target, opened)
        if expected is not None:
            names = {name for name, _, _ in members}
            missing = sorted(set(expected) - names)
            if missing:
                raise DownloadError(f"{archive.name} lacks {len(missing)} expected file(s), e.g. "
                                    f"{', '.join(missing[:3])}: it is not the official archive.")
            members = [m for m in members if m[0] in expected]
        total = sum(size for _, size, _ in members)
        if total > max_bytes:
            raise DownloadError(f"{archive.name} would expand to {total:,} bytes, more than the "
                                f"{max_bytes:,} allowed: refusing it (corrupt, or an archive bomb).")
        for name, size, open_member in members:
            dest = tmp / PurePosixPath(name.replace("\\", "/"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            digest, written = hashlib.sha256(), 0
            with open_member() as src, open(dest, "wb") as out:
                while block := src.read(1 << 20):
                    written += len(block)
                    if written > size:
                        raise DownloadError(f"{archive.name}: {name} is larger than its header says: "
                                            "refusing the archive.")
                    digest.update(block)
                    out.write(block)
            if expected is not None and digest.hexdigest() != expected[name]:
                raise DownloadError(f"{archive.name}: {name} differs from the official file "
                                    "(sha256 mismatch): the archive is corrupt or was changed.")
        (tmp / ".tl-course-extracting").unlink()
        os.replace(tmp, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DownloadError(f"{archive} could not be extracted ({exc}); it is probably corrupt. "
                            "Delete it and run again.") from exc
    finally:
        for handle in opened:
            handle.close()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
