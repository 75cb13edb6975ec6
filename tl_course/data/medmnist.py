"""``medmnist:<flag>``: the official MedMNIST v2 2-D datasets (e.g. ``medmnist:pneumoniamnist``,
``medmnist:pneumoniamnist_64``), checksum-verified, as uint8 RGB train/val/test splits.

Where the file comes from, in order: ``TL_COURSE_DATA/medmnist/<file>.npz``, then
``TL_COURSE_MIRROR/medmnist/<file>.npz``, then the official download (progress bar, md5/sha256
check, atomic rename); for ``pneumoniamnist`` (28x28) only, finally a bundled stratified subset
shipped with the package (``source`` and ``notes`` say so). Classes, split sizes, URLs and md5s
come from ``manifests/medmnist.json``, generated from MedMNIST's own ``medmnist.info.INFO`` by
``benchmarks/make_medmnist_manifest.py``.

Why not the ``medmnist`` package at run time: its dataset class never verifies a file that is
already on disk (md5 is checked only right after its own download), has a single ``root`` (no
data-then-mirror lookup), raises ``RuntimeError``/``AssertionError`` rather than saying what to
do, downloads without an atomic rename, and pulls in pandas and fire. The npz format is simple:
we read it with ``np.load(..., allow_pickle=False)`` (a file holding Python objects is refused,
never unpickled) and check every array's shape, dtype and label range against the manifest.

Images are returned at the file's resolution (28x28 by default), grey repeated to 3 channels;
resizing to the backbone's input is the backbone transform's job.

Usage::

    from tl_course.data import load_dataset
    data = load_dataset("medmnist:pneumoniamnist")
    print(data.summary())            # classes, sizes, source, notes (imbalance, duplicates)
    x, y = data.train.samples, data.train.targets   # (4708, 28, 28, 3) uint8, (4708,) int64
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import settings
from ..download import DownloadError, download, file_digest, sha256_file
from .registry import register_dataset
from .types import DatasetError, DatasetSplits, ImageDataset

MANIFEST = Path(__file__).with_name("manifests") / "medmnist.json"
"""MedMNIST's metadata (classes, split sizes, URL and md5 per flag and size), shipped with the package."""

BUNDLED_DIR = Path(__file__).with_name("bundled")
"""Bundled stratified subsets (``<flag>_subset.npz``), listed under ``"bundled"`` in the manifest."""

SPLITS = ("train", "val", "test")


@lru_cache(maxsize=4)
def _read_manifest(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def medmnist_manifest() -> dict:
    """The MedMNIST manifest (``{"source", "flags": {flag: {...}}, "bundled": {...}}``).

    Usage: ``medmnist_manifest()["flags"]["pneumoniamnist"]["classes"]  # ['normal', 'pneumonia']``
    """
    return _read_manifest(str(MANIFEST))


def medmnist_flags() -> list[str]:
    """Every name ``medmnist:<name>`` accepts: each 2-D flag, and ``<flag>_<size>`` for the
    larger MedMNIST+ sizes (64, 128, 224).

    Usage: ``"pneumoniamnist_64" in medmnist_flags()``
    """
    names = []
    for flag, info in medmnist_manifest()["flags"].items():
        names += [flag if size == "28" else f"{flag}_{size}" for size in info["sizes"]]
    return names


def _parse(name: str) -> tuple[str, str, dict, dict]:
    """``"pneumoniamnist_64"`` -> (flag, size, flag info, size entry), or a DatasetError."""
    flags = medmnist_manifest()["flags"]
    key = name.strip().lower()
    flag, _, size = key.partition("_")
    size = size or "28"
    if flag not in flags or size not in flags[flag]["sizes"]:
        if flag in flags:
            raise DatasetError(f"MedMNIST {flag!r} has no size {size}: choose one of "
                               + ", ".join(f"'medmnist:{flag}" + ("" if s == "28" else f"_{s}") + "'"
                                           for s in flags[flag]["sizes"]) + ".")
        hint = (" 3-D volumes (…mnist3d) are not images; this course loads the 2-D flags only."
                if key.endswith("3d") else "")
        raise DatasetError(f"Unknown MedMNIST dataset {name!r}.{hint} Known 2-D flags: "
                           f"{', '.join(flags)} (e.g. 'medmnist:pneumoniamnist', or "
                           f"'medmnist:pneumoniamnist_64' for 64x64 images).")
    info = flags[flag]
    if info["task"].startswith("multi-label"):
        raise DatasetError(f"MedMNIST {flag!r} is a multi-label task ({len(info['classes'])} labels "
                           "per image); the course's ImageDataset holds one class per image. Choose "
                           "a single-label flag, e.g. 'medmnist:pneumoniamnist'.")
    return flag, size, info, info["sizes"][size]


def verify_file(path: Path, entry: dict) -> str | None:
    """None when ``path`` matches the manifest ``entry`` (sha256 where known, and md5), else
    the reason it does not.

    Usage: ``problem = verify_file(Path("pneumoniamnist.npz"), entry)``
    """
    if entry.get("sha256"):
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            return f"sha256 {actual}, expected {entry['sha256']}"
    actual = file_digest(path, "md5")
    if actual != entry["md5"]:
        return f"md5 {actual}, expected {entry['md5']}"
    return None


def _candidates(fname: str) -> list[tuple[Path, str]]:
    cands = [(settings.data_dir() / "medmnist" / fname, "TL_COURSE_DATA")]
    if settings.mirror_dir() is not None:
        cands.append((settings.mirror_dir() / "medmnist" / fname, "TL_COURSE_MIRROR"))
    return cands


def _bundled(flag: str, size: str) -> tuple[Path, dict] | None:
    entry = medmnist_manifest().get("bundled", {}).get(flag)
    if entry is None or size != "28":
        return None
    return BUNDLED_DIR / entry["file"], entry


def medmnist_available(name: str = "pneumoniamnist") -> tuple[bool, str]:
    """Whether ``medmnist:<name>`` can be loaded without the network, and how.

    Usage: ``ok, how = medmnist_available("pneumoniamnist")``
    """
    flag, size, _, entry = _parse(name)
    for path, label in _candidates(entry["file"]):
        if path.is_file():
            return True, f"found under {label} (verified on load)"
    if _bundled(flag, size) is not None:
        return True, "bundled stratified subset (the full file is downloaded when online)"
    if settings.offline():
        return False, "not downloaded; TL_COURSE_OFFLINE=1 forbids the download; set TL_COURSE_MIRROR"
    return False, f"will be downloaded from {entry['url']}"


def _fetch(name: str, flag: str, entry: dict) -> tuple[Path, str]:
    """The verified npz (local, mirror or download) and where it came from; raises
    DatasetError for a wrong local file and DownloadError when it cannot be had."""
    for path, label in _candidates(entry["file"]):
        if path.is_file():
            problem = verify_file(path, entry)
            if problem is None:
                return path, f"{label} ({path}, verified)"
            action = "Delete it to download it again" if label == "TL_COURSE_DATA" else "Fix the mirror"
            raise DatasetError(f"{path} ({label}) is not the official {entry['file']}: {problem}. "
                               f"{action}, or unset {label}.")
    hint = (f"Offline alternatives: put the official {entry['file']} (from {entry['url']}) into "
            f"{settings.data_dir() / 'medmnist'} or into $TL_COURSE_MIRROR/medmnist/"
            + (", or use the bundled subset: load_dataset('medmnist:pneumoniamnist', bundled=True)."
               if _bundled(flag, "28") is not None else "."))
    dest = settings.data_dir() / "medmnist" / entry["file"]
    path = download(entry["url"], dest, sha256=entry.get("sha256"), offline_hint=hint)
    problem = verify_file(path, entry)
    if problem is not None:
        path.unlink(missing_ok=True)
        raise DownloadError(f"The download of {entry['url']} is not the official {entry['file']} "
                            f"({problem}); it was deleted. Run again to retry. {hint}")
    return path, f"download from {entry['url']} (verified)"


def read_npz(path: Path, info: dict, expect_sizes: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (images uint8 (N, H, W, 3), labels int64 (N,))}`` from a MedMNIST npz, read
    with ``allow_pickle=False`` and checked against the manifest ``info`` (keys, dtypes, shapes,
    label range, and the official split sizes unless ``expect_sizes=False``).

    Usage: ``splits = read_npz(Path("pneumoniamnist.npz"), medmnist_manifest()["flags"]["pneumoniamnist"])``
    """
    n_classes = len(info["classes"])
    out = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for split in SPLITS:
                for key in (f"{split}_images", f"{split}_labels"):
                    if key not in z.files:
                        raise DatasetError(f"{path} has no array {key!r} (found {', '.join(z.files)}): "
                                           "not a MedMNIST file.")
                x, y = z[f"{split}_images"], z[f"{split}_labels"]
                if x.dtype != np.uint8 or x.ndim not in (3, 4) or x.shape[1] != x.shape[2]:
                    raise DatasetError(f"{path}: {split}_images is {x.dtype} {x.shape}; expected uint8 "
                                       "(N, H, H) or (N, H, H, 3).")
                y = y.reshape(len(y), -1)
                if y.shape != (len(x), 1) or not np.issubdtype(y.dtype, np.integer):
                    raise DatasetError(f"{path}: {split}_labels has shape {y.shape} ({y.dtype}); "
                                       f"expected one integer label per image ({len(x)}).")
                y = y[:, 0].astype(np.int64)
                if len(y) and (y.min() < 0 or y.max() >= n_classes):
                    raise DatasetError(f"{path}: {split} labels span {y.min()}..{y.max()}, but the "
                                       f"dataset has {n_classes} classes.")
                if expect_sizes and len(y) != info["n_samples"][split]:
                    raise DatasetError(f"{path}: {len(y)} {split} images, the official file has "
                                       f"{info['n_samples'][split]}.")
                rgb = np.repeat(x[..., None], 3, axis=-1) if x.ndim == 3 else x
                out[split] = (np.ascontiguousarray(rgb), y)
    except ValueError as exc:  # object arrays refused by allow_pickle=False, or a corrupt file
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path} cannot be read safely ({exc}). MedMNIST files hold plain "
                           "arrays; a file needing pickle is refused.") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path} is not a readable .npz file ({exc}).") from exc
    return out


def _duplicates(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[int, dict[str, int]]:
    """(images in train identical to an earlier train image, {split: images of it identical to a
    train image}) by hashing raw pixels."""
    def digests(x):
        return [hashlib.sha1(img.tobytes()).digest() for img in x]

    train = digests(splits["train"][0])
    within = len(train) - len(set(train))
    seen = set(train)
    shared = {s: sum(d in seen for d in digests(splits[s][0])) for s in ("val", "test")}
    return within, shared


def _notes(splits, classes: list[str]) -> list[str]:
    notes = []
    counts = np.bincount(splits["train"][1], minlength=len(classes))
    share = counts / max(counts.sum(), 1)
    if counts.max() >= 1.5 * max(counts.min(), 1):  # the largest class 1.5x the smallest or more
        major = int(share.argmax())
        notes.append(f"class imbalance: {share[major]:.0%} of the training images are "
                     f"{classes[major]!r} ({', '.join(f'{c}: {n}' for c, n in zip(classes, counts))}); "
                     "report balanced accuracy and AUC, not only accuracy")
    within, shared = _duplicates(splits)
    notes.append(f"pixel-identical duplicates: {within} extra copies inside train, "
                 f"{shared['val']} val and {shared['test']} test images identical to a train image")
    return notes


@register_dataset("medmnist:", "MedMNIST v2 2-D datasets, e.g. medmnist:pneumoniamnist",
                  "TL_COURSE_DATA, TL_COURSE_MIRROR, download; pneumoniamnist also bundled (subset)")
def load_medmnist(name: str, *, bundled: bool = False, fallback: bool = True, **_) -> DatasetSplits:
    """Load the MedMNIST 2-D dataset ``name`` (``<flag>`` or ``<flag>_<size>``) with its official
    train/val/test splits. ``bundled=True`` loads the bundled subset directly; ``fallback=False``
    raises instead of serving the bundled subset when the full file cannot be had.

    Usage: ``load_dataset("medmnist:pneumoniamnist")`` or ``load_medmnist("pneumoniamnist_64")``
    """
    flag, size, info, entry = _parse(name)
    label = flag if size == "28" else f"{flag}_{size}"
    notes: list[str] = []
    sub = _bundled(flag, size)
    if bundled and sub is None:
        raise DatasetError(f"There is no bundled subset of {label!r}; only of 'pneumoniamnist' (28x28).")
    if not bundled:
        try:
            path, source = _fetch(name, flag, entry)
            splits = read_npz(path, info)
        except DownloadError as exc:
            if sub is None or not fallback:
                raise
            print(f"*** medmnist:{label}: the full dataset is not available ({exc}) -> using the "
                  "bundled stratified subset; results are NOT comparable with the full set. ***")
            notes.append(f"full set unavailable ({exc})")
            bundled = True
    if bundled:
        path, sub_entry = sub
        digest = sha256_file(path) if path.is_file() else "missing"
        if digest != sub_entry["sha256"]:
            raise DatasetError(f"The bundled subset {path} is {digest}, expected "
                               f"{sub_entry['sha256']}: the installation is damaged; reinstall tl-course.")
        splits = read_npz(path, info, expect_sizes=False)
        sizes = " / ".join(f"{len(splits[s][1])} {s}" for s in SPLITS)
        source = (f"bundled stratified subset ({sizes}) of the official {entry['file']} "
                  f"(seed {sub_entry['seed']}, {path.name})")
        notes.append(f"SUBSET: {sizes} images drawn per split and class from the official "
                     f"{info['n_samples']['train']} / {info['n_samples']['val']} / "
                     f"{info['n_samples']['test']}; download the full file for real results")
    classes = list(info["classes"])
    datasets = {s: ImageDataset(x, y, classes) for s, (x, y) in splits.items()}
    notes += _notes(splits, classes)
    return DatasetSplits(f"medmnist:{label}", datasets["train"], datasets["val"], classes, source,
                         notes, test=datasets["test"])


def _pneumonia_full_available() -> tuple[bool, str]:
    """The full official file (not the bundled subset), which notebooks' committed outputs use."""
    ok, how = medmnist_available("pneumoniamnist")
    if ok and how.startswith("bundled"):
        return False, "only the bundled subset here (set TL_COURSE_MIRROR or go online for the full set)"
    return ok, how


register_dataset("medmnist:pneumoniamnist", "paediatric chest X-rays (MedMNIST v2, 28x28 grey): normal vs "
                 "pneumonia, 4708 train / 524 val / 624 test", "TL_COURSE_DATA, TL_COURSE_MIRROR or download; "
                 "a bundled subset offline", available=_pneumonia_full_available
                 )(lambda **kw: load_medmnist("pneumoniamnist", **kw))
