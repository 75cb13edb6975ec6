"""``folder:<path>``: any ImageFolder of yours, ``path/class/*.jpg`` (split here, stratified) or
``path/train/class/*`` + ``path/val/class/*``. Hidden files and folders (``.DS_Store``,
AppleDouble ``._x.jpg``, ``.thumbnails/``) are ignored; non-image files and unreadable images are
skipped, every one named with its reason in a warning, in ``notes`` and in ``skipped``; a
missing or empty folder, a class without images or a single class raise
:class:`~tl_course.data.types.DatasetError`.

Usage::

    from tl_course.data import load_dataset
    data = load_dataset("folder:~/photos")
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .images import ImageError, is_image_file, load_image, visible_files
from .registry import register_dataset
from .types import DatasetError, DatasetSplits, ImageDataset


def _scan_classes(root: Path) -> tuple[list[Path], list[int], list[str], list[dict]]:
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
        files = visible_files(d)
        images = [p for p in files if is_image_file(p)]
        skipped += [{"path": str(p), "kind": "not an image",
                     "reason": f"not an image file ({p.suffix or 'no extension'})"}
                    for p in files if not is_image_file(p)]
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


def skip_line(skip: dict) -> str:
    """One line for a skipped file: its path and the reason (the path once, when the reason
    already names it).

    Usage: ``for s in data.skipped: print("skipped", skip_line(s))``
    """
    return skip["reason"] if skip["path"] in skip["reason"] else f"{skip['path']}: {skip['reason']}"


def _drop_unreadable(samples: list[Path], targets: list[int]) -> tuple[list[Path], list[int], list[dict]]:
    keep_s, keep_t, bad = [], [], []
    for path, label in zip(samples, targets):
        try:
            load_image(path, max_side=64)
            keep_s.append(path)
            keep_t.append(label)
        except ImageError as exc:
            bad.append({"path": str(path), "kind": "unreadable", "reason": str(exc)})
    return keep_s, keep_t, bad


def _image_folder(root: Path, check_images: bool) -> tuple[ImageDataset, list[str], list[dict]]:
    samples, targets, classes, skipped = _scan_classes(root)
    if check_images:
        samples, targets, bad = _drop_unreadable(samples, targets)
        skipped += bad
    if skipped:
        warnings.warn(f"{len(skipped)} file(s) skipped under {root}:\n"
                      + "\n".join(f"  {skip_line(s)}" for s in skipped), stacklevel=3)
    notes = [f"skipped {skip_line(s)}" for s in skipped]
    if check_images:
        missing = set(range(len(classes))) - set(targets)
        if missing:
            raise DatasetError(f"No readable image left in class folder(s) "
                               f"{', '.join(classes[i] for i in sorted(missing))} under {root}.")
    return ImageDataset(samples, targets, classes, root=root), notes, skipped


@register_dataset("folder:", "any ImageFolder of yours (class_name/image.jpg)", "your disk")
def load_image_folder(path: str | Path, val_fraction: float = 0.25, seed: int = 0,
                      check_images: bool = True, **_) -> DatasetSplits:
    """Load an ImageFolder: ``path/class/*.jpg``, or ``path/train/class/*`` + ``path/val/class/*``.

    Without ``train/`` and ``val/`` subfolders, a deterministic stratified split keeps
    ``val_fraction`` of each class for validation. Non-image files are ignored and unreadable
    images skipped, each named with its reason in ``notes`` and ``skipped``; a missing or empty folder, a class without
    images or a single class raise :class:`DatasetError`.

    Usage: ``data = load_image_folder("~/photos")`` or ``load_dataset("folder:~/photos")``
    """
    root = Path(path).expanduser().resolve()
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, n1, s1 = _image_folder(root / "train", check_images)
        val, n2, s2 = _image_folder(root / "val", check_images)
        if train.classes != val.classes:
            raise DatasetError(f"train/ and val/ under {root} have different class folders: "
                               f"{train.classes} vs {val.classes}.")
        return DatasetSplits(f"folder:{root}", train, val, train.classes,
                             f"folder {root} (train/ and val/)", n1 + n2, skipped=s1 + s2)
    full, notes, skipped = _image_folder(root, check_images)
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
                         full.classes, f"folder {root}", notes, skipped=skipped)
