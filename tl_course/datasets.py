"""Named datasets in one registry, and one call to load any of them as train/val splits.

=================  =============================================================  ===========
name               what                                                           offline
=================  =============================================================  ===========
``digits``         scikit-learn's 1,797 real handwritten digits, 32x32 RGB         generated
``digits_m``       the same digits blended onto natural-photo patches (MNIST-M)    generated
``hymenoptera``    ants vs bees photos of the classic PyTorch tutorial             mirror/download
``folder:<path>``  any ImageFolder of yours (``class_name/image.jpg``)             yes
=================  =============================================================  ===========

``hymenoptera`` is looked for in ``TL_COURSE_DATA``, then in ``TL_COURSE_MIRROR``, then downloaded
from the official address (sha256 of every file checked against the manifest shipped in
``tl_course/manifests``).

Usage::

    from tl_course.datasets import load_dataset
    data = load_dataset("hymenoptera")
    data.train, data.val, data.classes
"""
from __future__ import annotations

import copy
import hashlib
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from . import settings
from .download import DownloadError, download, extract_archive, sha256_file
from .images import ImageError, is_image_file, load_image

HYMENOPTERA_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
HYMENOPTERA_MANIFEST = Path(__file__).with_name("manifests") / "hymenoptera_data.sha256"


class DatasetError(ValueError):
    """A dataset that cannot be loaded, with the reason and what to do about it."""


# --------------------------------------------------------------------------- the dataset class
_CONTENT_HASHES: dict[tuple[str, int, int], str] = {}


def _content_hash(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _CONTENT_HASHES:
        return _CONTENT_HASHES[key]
    digest = sha256_file(path)
    # Memoize only files modified more than 3 s ago: on filesystems with coarse timestamps
    # (1-2 s) a file edited again right away keeps its size and mtime ("racy git" problem).
    if time.time_ns() - stat.st_mtime_ns > 3_000_000_000:
        _CONTENT_HASHES[key] = digest
    return digest


class ImageDataset(torch.utils.data.Dataset):
    """Labelled images, held as files or as an in-memory ``uint8`` array of shape (N, H, W, 3).

    Indexing returns ``(image, label)``: the image as RGB ``PIL.Image``, or passed through
    ``transform`` when one is set.

    Usage: ``ds = ImageDataset(paths, labels, ["ants", "bees"]); img, y = ds[0]``
    """

    def __init__(self, samples: Sequence[Path] | np.ndarray, targets: Sequence[int],
                 classes: Sequence[str], transform: Callable | None = None,
                 root: Path | None = None):
        if len(samples) != len(targets):
            raise DatasetError(f"{len(samples)} samples but {len(targets)} labels.")
        self.samples = samples if isinstance(samples, np.ndarray) else [Path(p) for p in samples]
        self.targets = np.asarray(targets, dtype=np.int64)
        self.classes = list(classes)
        self.transform = transform
        self.root = root
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> Image.Image:
        """The ``index``-th image as an RGB ``PIL.Image`` (no transform applied)."""
        if isinstance(self.samples, np.ndarray):
            return Image.fromarray(self.samples[index])
        return load_image(self.samples[index])

    def __getitem__(self, index: int):
        img = self.image(index)
        return (self.transform(img) if self.transform else img), int(self.targets[index])

    @property
    def paths(self) -> list[Path] | None:
        """The image files, or None for an in-memory dataset."""
        return None if isinstance(self.samples, np.ndarray) else list(self.samples)

    def with_transform(self, transform: Callable | None) -> "ImageDataset":
        """A copy of this dataset sharing its images, with another transform.

        Usage: ``train = data.train.with_transform(backbone.transform)``
        """
        new = copy.copy(self)
        new.transform = transform
        return new

    def subset(self, indices: Sequence[int]) -> "ImageDataset":
        """A new dataset holding only the given indices (same classes, same transform).

        Usage: ``few = data.train.subset(range(10))``
        """
        idx = np.asarray(indices, dtype=np.int64)
        samples = self.samples[idx] if isinstance(self.samples, np.ndarray) else [self.samples[i] for i in idx]
        return ImageDataset(samples, self.targets[idx], self.classes, self.transform, self.root)

    def class_counts(self) -> dict[str, int]:
        """Number of images per class name.

        Usage: ``data.train.class_counts()  # {'ants': 124, 'bees': 121}``
        """
        counts = np.bincount(self.targets, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def fingerprint(self) -> str:
        """A sha256 of the dataset's contents (image bytes and labels): it changes when any
        image, label or the order changes. Used as part of the feature-cache key.

        Usage: ``key = data.train.fingerprint()``
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(repr(self.classes).encode())
            digest.update(self.targets.tobytes())
            if isinstance(self.samples, np.ndarray):
                digest.update(repr(self.samples.shape).encode())
                digest.update(np.ascontiguousarray(self.samples).tobytes())
            else:
                for path in self.samples:
                    digest.update(_content_hash(path).encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        kind = "in-memory" if isinstance(self.samples, np.ndarray) else "files"
        return f"ImageDataset({len(self)} images, {kind}, classes={self.classes})"


def few_shot_indices(labels, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` examples of every class, drawn reproducibly.

    Usage: ``idx = few_shot_indices(y_train, 5); X_few, y_few = X[idx], y[idx]``
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), size=min(per_class, int((labels == c).sum())),
                        replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


@dataclass
class DatasetSplits:
    """A loaded dataset: ``train`` and ``val`` splits, class names, and where the data came from."""

    name: str
    train: ImageDataset
    val: ImageDataset
    classes: list[str]
    source: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One short paragraph: name, source, sizes per split and class.

        Usage: ``print(data.summary())``
        """
        lines = [f"dataset {self.name!r} from {self.source}",
                 f"  classes ({len(self.classes)}): {', '.join(self.classes)}",
                 f"  train: {len(self.train)} images {self.train.class_counts()}",
                 f"  val:   {len(self.val)} images {self.val.class_counts()}"]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def per_class(self, train: int, val: int | None = None, seed: int = 0) -> "DatasetSplits":
        """A smaller copy: ``train`` images of every class from the training split and ``val`` from
        the validation split (all of it when None), drawn reproducibly with ``seed``. The draw is
        recorded in ``notes``; the name stays, and features are cached per contents, so a subset
        never reuses the full set's cache.

        Usage: ``small = load_dataset("digits_m").per_class(30, 15)``
        """
        if train < 1 or (val is not None and val < 1):
            raise ValueError(f"per_class needs at least 1 image per class, got train={train}, val={val}.")
        sub_train = self.train.subset(few_shot_indices(self.train.targets, train, seed=seed))
        sub_val = self.val if val is None else self.val.subset(few_shot_indices(self.val.targets, val, seed=seed))
        note = (f"subset: up to {train} training" + ("" if val is None else f" and {val} validation")
                + f" images per class (seed {seed}) of {len(self.train)} + {len(self.val)}")
        return DatasetSplits(self.name, sub_train, sub_val, list(self.classes), self.source, self.notes + [note])

    def __repr__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------- registry
@dataclass
class DatasetSpec:
    name: str
    description: str
    where: str
    loader: Callable[..., DatasetSplits]
    available: Callable[[], tuple[bool, str]]


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, description: str, where: str,
                     available: Callable[[], tuple[bool, str]] = lambda: (True, "generated locally")):
    """Decorator adding a loader to the dataset registry.

    Usage: ``@register_dataset("mine", "my photos", "local")\\ndef _load(**kw): ...``
    """
    def wrap(fn):
        DATASETS[name] = DatasetSpec(name, description, where, fn, available)
        return fn
    return wrap


def load_dataset(name: str, **kwargs) -> DatasetSplits:
    """Load a registered dataset, or ``folder:<path>`` for an ImageFolder of your own.

    Usage: ``data = load_dataset("digits")``; ``load_dataset("folder:~/photos", val_fraction=0.2)``
    """
    if name.startswith("folder:"):
        return load_image_folder(name[len("folder:"):], **kwargs)
    if name not in DATASETS:
        raise DatasetError(f"Unknown dataset {name!r}. Known: {', '.join(DATASETS)}, or "
                           "'folder:<path>' for a folder of your own images.")
    return DATASETS[name].loader(**kwargs)


def dataset_table() -> list[dict]:
    """One row per registered dataset: name, description, where it comes from, and whether it
    can be loaded right now without the network.

    Usage: ``pd.DataFrame(dataset_table())`` or ``for row in dataset_table(): print(row)``
    """
    rows = []
    for spec in DATASETS.values():
        ok, how = spec.available()
        rows.append({"name": spec.name, "description": spec.description, "where": spec.where,
                     "available offline now": ok, "how": how})
    return rows


def load_dataset_or_fallback(name: str, fallback: str = "digits_m",
                             fallback_per_class: tuple[int, int | None] | None = None,
                             **kwargs) -> DatasetSplits:
    """Load ``name``; if it cannot be had (offline, no mirror, no download), load ``fallback``
    instead and say so loudly. Notebooks use this so they run anywhere.

    ``fallback_per_class=(train, val)`` keeps only that many images per class of the fallback
    (see :meth:`DatasetSplits.per_class`), so a stand-in can match the size of the dataset it
    replaces and the notebook its running time. ``name`` itself is always loaded whole.

    Usage: ``data = load_dataset_or_fallback("hymenoptera", fallback_per_class=(30, 15))``
    """
    try:
        return load_dataset(name, **kwargs)
    except (DatasetError, DownloadError) as exc:
        data = load_dataset(fallback, **{k: v for k, v in kwargs.items() if k in ("seed",)})
        if fallback_per_class is not None:
            data = data.per_class(*fallback_per_class, seed=kwargs.get("seed", 0))
        banner = (f"*** DATASET FALLBACK: {name!r} is not available here ({exc}). Using the bundled "
                  f"{fallback!r} instead; results below are for {fallback!r}, not {name!r}. ***")
        print("=" * 100 + "\n" + banner + "\n" + "=" * 100)
        data.notes.append(f"fallback for {name!r}, which was not available")
        return data


# --------------------------------------------------------------------------- digits, digits_m
DIGITS_SIZE = 32
PHOTO_SOURCES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                 "hubble_deep_field", "sklearn:china.jpg", "sklearn:flower.jpg")


def _atomic_save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _cached_arrays(name: str, build: Callable[[], dict]) -> dict:
    path = settings.data_dir() / "generated" / f"{name}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception:  # corrupt cache (truncated zip, bad header, ...): rebuild
            path.unlink(missing_ok=True)
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save_npz(path, **arrays)
    return arrays


def _build_digits(size: int = DIGITS_SIZE) -> dict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    imgs = []
    for im in raw.images:  # 8x8 floats in 0..16
        small = Image.fromarray((im * (255.0 / 16.0)).astype(np.uint8))
        imgs.append(np.asarray(small.resize((size, size), Image.Resampling.BILINEAR)))
    gray = np.stack(imgs)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    idx = np.arange(len(rgb))
    tr, va = train_test_split(idx, test_size=0.25, stratify=raw.target, random_state=0)
    return {"x_train": rgb[tr], "y_train": raw.target[tr], "x_val": rgb[va], "y_val": raw.target[va]}


def natural_photos() -> list[np.ndarray]:
    """The colour photos shipped with scikit-image and scikit-learn (no download), as uint8 RGB.

    Usage: ``photos = natural_photos()``
    """
    import skimage.data
    from sklearn.datasets import load_sample_image

    photos = []
    for name in PHOTO_SOURCES:
        arr = load_sample_image(name.split(":", 1)[1]) if name.startswith("sklearn:") else getattr(skimage.data, name)()
        photos.append(np.ascontiguousarray(arr[..., :3]).astype(np.uint8))
    return photos


def blend_onto_photos(digits_rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """The MNIST-M construction: ``|photo_patch - digit|`` per pixel and channel, with a random
    patch of a random natural photo for every digit.

    Usage: ``digits_m = blend_onto_photos(digits_rgb, seed=0)``
    """
    rng = np.random.default_rng(seed)
    photos = natural_photos()
    n, h, w, _ = digits_rgb.shape
    out = np.empty_like(digits_rgb)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        y = rng.integers(photo.shape[0] - h)
        x = rng.integers(photo.shape[1] - w)
        patch = photo[y:y + h, x:x + w].astype(np.int16)
        out[i] = np.abs(patch - digits_rgb[i].astype(np.int16)).astype(np.uint8)
    return out


def _build_digits_m() -> dict:
    base = _cached_arrays(f"digits-v1-{DIGITS_SIZE}", _build_digits)
    return {"x_train": blend_onto_photos(base["x_train"], seed=1), "y_train": base["y_train"],
            "x_val": blend_onto_photos(base["x_val"], seed=2), "y_val": base["y_val"]}


def _splits_from_arrays(name: str, arrays: dict, source: str) -> DatasetSplits:
    classes = [str(i) for i in range(10)]
    return DatasetSplits(name, ImageDataset(arrays["x_train"], arrays["y_train"], classes),
                         ImageDataset(arrays["x_val"], arrays["y_val"], classes), classes, source)


@register_dataset("digits", "scikit-learn's handwritten digits (8x8 scans upsampled to 32x32 RGB), "
                  "10 classes, 1347 train / 450 val", "generated offline from scikit-learn")
def _load_digits(**_) -> DatasetSplits:
    arrays = _cached_arrays(f"digits-v1-{DIGITS_SIZE}", _build_digits)
    return _splits_from_arrays("digits", arrays, "scikit-learn's load_digits (generated offline)")


@register_dataset("digits_m", "the same digits blended onto patches of natural photos (MNIST-M "
                  "construction): a shifted target domain", "generated offline from scikit-learn "
                  "+ scikit-image photos")
def _load_digits_m(**_) -> DatasetSplits:
    arrays = _cached_arrays(f"digits_m-v1-{DIGITS_SIZE}", _build_digits_m)
    return _splits_from_arrays("digits_m", arrays,
                               "digits blended onto scikit-image/scikit-learn photos (generated offline)")


# --------------------------------------------------------------------------- hymenoptera
def _read_manifest(path: Path | None = None) -> dict[str, str]:
    entries = {}
    for line in Path(path or HYMENOPTERA_MANIFEST).read_text().splitlines():
        if line.strip():
            digest, rel = line.split(None, 1)
            entries[rel.strip().lstrip("*")] = digest
    return entries


def verify_tree(root: Path, manifest: dict[str, str]) -> list[str]:
    """Compare the files under ``root.parent`` against a ``{relative path: sha256}`` manifest;
    returns a list of problems (empty when every file is present and intact).

    Usage: ``problems = verify_tree(Path("data/hymenoptera_data"), manifest)``
    """
    problems = []
    for rel, digest in manifest.items():
        path = root.parent / rel
        if not path.is_file():
            problems.append(f"missing {rel}")
        elif _content_hash(path) != digest:
            problems.append(f"changed {rel}")
    return problems


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
    manifest = _read_manifest()
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
    staging = settings.data_dir() / ".hymenoptera_extract"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        extract_archive(archive, staging)
        problems = verify_tree(staging / "hymenoptera_data", manifest)
        if problems:
            archive.unlink(missing_ok=True)
            raise DatasetError(f"The downloaded archive does not match the official hymenoptera "
                               f"set ({len(problems)} problem(s), e.g. {', '.join(problems[:3])}); "
                               f"it was deleted. Run again to retry. {hint}")
        os.replace(staging / "hymenoptera_data", target)
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


# --------------------------------------------------------------------------- folder:<path>
def _scan_classes(root: Path) -> tuple[list[Path], list[int], list[str], list[Path]]:
    if not root.exists():
        raise DatasetError(f"Folder not found: {root}. Check the path (relative paths start at "
                           f"{Path.cwd()}).")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file; give the folder that holds one subfolder per class.")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    loose = [p for p in root.iterdir() if p.is_file() and is_image_file(p)]
    if not class_dirs:
        extra = f" It holds {len(loose)} loose image(s): move them into class subfolders." if loose else ""
        raise DatasetError(f"{root} has no class subfolders. Expected one folder per class, "
                           f"e.g. {root}/cats/1.jpg and {root}/dogs/2.jpg.{extra}")
    samples, targets, skipped = [], [], []
    for label, d in enumerate(class_dirs):
        files = sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if is_image_file(p)]
        skipped += [p for p in files if not is_image_file(p)]
        if not images:
            raise DatasetError(f"Class folder {d} contains no images ({', '.join(e for e in sorted({p.suffix for p in files}) if e) or 'it is empty'}). "
                               "Add images or remove the folder.")
        samples += images
        targets += [label] * len(images)
    classes = [d.name for d in class_dirs]
    if len(classes) < 2:
        raise DatasetError(f"{root} has only one class ({classes[0]!r}); a classifier needs at "
                           "least two class subfolders.")
    return samples, targets, classes, skipped


def _drop_unreadable(samples: list[Path], targets: list[int]) -> tuple[list[Path], list[int], list[str]]:
    keep_s, keep_t, bad = [], [], []
    for path, label in zip(samples, targets):
        try:
            load_image(path, max_side=64)
            keep_s.append(path)
            keep_t.append(label)
        except ImageError as exc:
            bad.append(str(exc))
    return keep_s, keep_t, bad


def _image_folder(root: Path, check_images: bool) -> tuple[ImageDataset, list[str]]:
    samples, targets, classes, skipped = _scan_classes(root)
    notes = []
    if skipped:
        notes.append(f"{len(skipped)} non-image file(s) ignored in {root}, e.g. {skipped[0].name}")
    if check_images:
        samples, targets, bad = _drop_unreadable(samples, targets)
        if bad:
            notes.append(f"{len(bad)} unreadable image(s) skipped: " + "; ".join(bad[:3]))
            warnings.warn(notes[-1], stacklevel=3)
        missing = set(range(len(classes))) - set(targets)
        if missing:
            raise DatasetError(f"No readable image left in class folder(s) "
                               f"{', '.join(classes[i] for i in sorted(missing))} under {root}.")
    return ImageDataset(samples, targets, classes, root=root), notes


def load_image_folder(path: str | Path, val_fraction: float = 0.25, seed: int = 0,
                      check_images: bool = True, **_) -> DatasetSplits:
    """Load an ImageFolder: ``path/class/*.jpg``, or ``path/train/class/*`` + ``path/val/class/*``.

    Without ``train/`` and ``val/`` subfolders, a deterministic stratified split keeps
    ``val_fraction`` of each class for validation. Non-image files are ignored and unreadable
    images skipped, both reported in ``notes``; a missing or empty folder, a class without
    images or a single class raise :class:`DatasetError`.

    Usage: ``data = load_image_folder("~/photos")`` or ``load_dataset("folder:~/photos")``
    """
    root = Path(path).expanduser().resolve()
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, n1 = _image_folder(root / "train", check_images)
        val, n2 = _image_folder(root / "val", check_images)
        if train.classes != val.classes:
            raise DatasetError(f"train/ and val/ under {root} have different class folders: "
                               f"{train.classes} vs {val.classes}.")
        return DatasetSplits(f"folder:{root}", train, val, train.classes,
                             f"folder {root} (train/ and val/)", n1 + n2)
    full, notes = _image_folder(root, check_images)
    counts = np.bincount(full.targets)
    if counts.min() < 2:
        small = [c for c, n in zip(full.classes, counts) if n < 2]
        raise DatasetError(f"Class(es) {small} under {root} have fewer than 2 images; each class "
                           "needs at least one training and one validation image.")
    from sklearn.model_selection import train_test_split

    n_val = max(int(round(val_fraction * len(full))), len(full.classes))
    idx = np.arange(len(full))
    tr, va = train_test_split(idx, test_size=n_val, stratify=full.targets, random_state=seed)
    notes.append(f"no train/ and val/ subfolders: stratified split, {len(va)} of {len(full)} "
                 f"images held out for validation (seed {seed})")
    return DatasetSplits(f"folder:{root}", full.subset(sorted(tr)), full.subset(sorted(va)),
                         full.classes, f"folder {root}", notes)
