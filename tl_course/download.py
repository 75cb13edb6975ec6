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


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file's contents.

    Usage: ``sha256_file("data/x.zip")``
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


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


def extract_archive(archive: str | Path, target: str | Path) -> Path:
    """Extract a .zip or .tar(.gz/.bz2/.xz) into ``target`` atomically and safely.

    Every member is checked first; entries escaping ``target`` (``../``, absolute paths) and
    links are refused with :class:`DownloadError`. Extraction goes to a temporary folder beside
    ``target`` that is renamed into place only when complete, so a failure leaves nothing behind.

    Usage: ``extract_archive("data/hymenoptera_data.zip", "data/hymenoptera_extract")``
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise DownloadError(f"{target} already exists; delete it to extract {archive.name} again.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member(info.filename, target)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise DownloadError(f"Refusing to extract symbolic link {info.filename!r}.")
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for member in members:
                    _check_member(member.name, target)
                    if not (member.isfile() or member.isdir()):
                        raise DownloadError(f"Refusing to extract {member.name!r}: only plain "
                                            "files and folders are allowed.")
                tf.extractall(tmp, members=members, filter="data")
        else:
            raise DownloadError(f"{archive} is not a zip or tar archive (corrupt or incomplete "
                                "download?). Delete it and run again.")
        os.replace(tmp, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DownloadError(f"{archive} could not be extracted ({exc}); it is probably corrupt. "
                            "Delete it and run again.") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
