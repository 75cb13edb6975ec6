"""``hymenoptera``: the ants vs bees photos of the classic PyTorch transfer-learning tutorial
(245 train / 153 val images), looked for in ``TL_COURSE_DATA``, then ``TL_COURSE_MIRROR``, then
downloaded from the official address. Every copy is verified against the manifest shipped in
``tl_course/data/manifests`` before use (see :mod:`tl_course.data.manifest`).

Usage::

    from tl_course.data import load_dataset
    data = load_dataset("hymenoptera")
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import settings
from ..download import DownloadError, download, extract_archive
from .folder import load_image_folder
from .manifest import MANIFESTS, read_manifest, verify_tree
from .registry import register_dataset
from .types import DatasetError, DatasetSplits

HYMENOPTERA_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
MAX_BYTES = 100 * 1024 ** 2
"""What the archive may expand to: the official set is 47.4 MB."""


def _hymenoptera_candidates() -> list[tuple[Path, str]]:
    cands = [(settings.data_dir() / "hymenoptera_data", "TL_COURSE_DATA")]
    if settings.mirror_dir() is not None:
        cands.append((settings.mirror_dir() / "hymenoptera_data", "TL_COURSE_MIRROR"))
    return cands


def _hymenoptera_available() -> tuple[bool, str]:
    for path, label in _hymenoptera_candidates():
        if (path / "train").is_dir():
            return True, f"found under {label}"
    if settings.offline():
        return False, "not downloaded; TL_COURSE_OFFLINE=1 forbids the download; set TL_COURSE_MIRROR"
    return False, "will be downloaded (about 45 MB) on first use"


def _fetch_hymenoptera() -> tuple[Path, str]:
    manifest = read_manifest(MANIFESTS / "hymenoptera_data.sha256")
    for path, label in _hymenoptera_candidates():
        if path.is_dir():
            problems = verify_tree(path, manifest)
            if not problems:
                return path, f"{label} ({path})"
            raise DatasetError(f"The copy of hymenoptera_data at {path} ({label}) is not the "
                               f"official set: {len(problems)} problem(s), e.g. "
                               f"{', '.join(problems[:3])}. Delete it (if under TL_COURSE_DATA) "
                               "or fix the mirror.")
    hint = ("Offline alternatives: set TL_COURSE_MIRROR to a folder holding an extracted "
            "hymenoptera_data/, or use the bundled dataset 'digits_m'.")
    target = settings.data_dir() / "hymenoptera_data"
    archive = download(HYMENOPTERA_URL, settings.data_dir() / "downloads" / "hymenoptera_data.zip",
                       offline_hint=hint)
    # The archive's own sha256 is not published: every member is checked against the manifest
    # as it is extracted (and nothing beyond the manifest's files is written), so a truncated,
    # altered or oversized archive is refused, and deleted, before it can be used.
    staging = settings.data_dir() / ".hymenoptera_extract"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        extract_archive(archive, staging, expected=manifest, max_bytes=MAX_BYTES)
        problems = verify_tree(staging / "hymenoptera_data", manifest)
        if problems:
            raise DownloadError(f"{len(problems)} problem(s), e.g. {', '.join(problems[:3])}")
        os.replace(staging / "hymenoptera_data", target)
    except DownloadError as exc:
        archive.unlink(missing_ok=True)
        raise DatasetError(f"The downloaded archive is not the official hymenoptera set ({exc}); it "
                           f"was deleted. Run again to retry. {hint}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, f"download from {HYMENOPTERA_URL} (verified)"


@register_dataset("hymenoptera", "ants vs bees photos (PyTorch transfer-learning tutorial), "
                  "2 classes, 245 train / 153 val", "TL_COURSE_DATA, TL_COURSE_MIRROR or download",
                  available=_hymenoptera_available)
def _load_hymenoptera(**_) -> DatasetSplits:
    root, source = _fetch_hymenoptera()
    data = load_image_folder(root, check_images=False)
    data.name, data.source = "hymenoptera", source
    return data
