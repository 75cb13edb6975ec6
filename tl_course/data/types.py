"""The course's data types: labelled images (:class:`ImageDataset`) and texts (:class:`TextDataset`), a loaded dataset's splits
(:class:`DatasetSplits`), reproducible subsets (:func:`few_shot_indices`, :func:`split_indices`)
and in-memory images as tensors (:func:`image_tensors`).

Usage::

    from tl_course.data import load_dataset, few_shot_indices, image_tensors
    data = load_dataset("digits")
    X, y = image_tensors(data.train)
    idx = few_shot_indices(y, 5)
"""
from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..download import sha256_file
from .images import load_image


class DatasetError(ValueError):
    """A dataset that cannot be loaded, with the reason and what to do about it."""


# --------------------------------------------------------------------------- the dataset class
_CONTENT_HASHES: dict[tuple, str] = {}


def content_hash(path: Path) -> str:
    """The sha256 of a file's bytes, remembered within this process while the file's size,
    modification and change times and inode stay the same (a file replaced or rewritten in place
    changes at least one of them).

    Usage: ``content_hash(Path("ants/1.jpg"))``
    """
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
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
        self.min_side: int | None = None
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> Image.Image:
        """The ``index``-th image as an RGB ``PIL.Image`` (no transform applied); JPEG files are
        decoded at reduced size when :attr:`min_side` is set (see :meth:`with_transform`)."""
        if isinstance(self.samples, np.ndarray):
            return Image.fromarray(self.samples[index])
        return load_image(self.samples[index], min_side=self.min_side)

    def __getitem__(self, index: int):
        img = self.image(index)
        return (self.transform(img) if self.transform else img), int(self.targets[index])

    @property
    def paths(self) -> list[Path] | None:
        """The image files, or None for an in-memory dataset."""
        return None if isinstance(self.samples, np.ndarray) else list(self.samples)

    def with_transform(self, transform: Callable | None, min_side: int | None = None) -> "ImageDataset":
        """A copy of this dataset sharing its images, with another transform. ``min_side``: the
        transform never needs more than this many pixels on the shorter side, so JPEGs may be
        decoded at reduced size (several times faster for large photos).

        Usage: ``train = data.train.with_transform(backbone.transform, min_side=256)``
        """
        new = copy.copy(self)
        new.transform = transform
        new.min_side = min_side
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
                    digest.update(content_hash(path).encode())
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


def split_indices(labels, fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split example indices into two disjoint, class-stratified pools: ``(1 - fraction)`` and
    ``fraction`` of the examples (scikit-learn's ``train_test_split``), e.g. the images labelled
    for task A and those available for task B.

    Usage: ``pool_a, pool_b = split_indices(y_train, 0.3)``
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    a, b = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(a), np.sort(b)


def image_tensors(dataset, grayscale: bool = False, size: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """An image dataset as a float tensor ``(N, C, H, W)`` scaled to about [-2, 2]
    (``(x / 255 - 0.5) / 0.25``), plus its labels. ``grayscale=True`` averages the colour channels
    into one; ``size`` resizes (area averaging).

    Usage: ``X_train, y_train = image_tensors(load_dataset("digits_m").train)``
    """
    arr = dataset.samples if isinstance(dataset.samples, np.ndarray) else np.stack(
        [np.asarray(dataset.image(i)) for i in range(len(dataset))])
    x = torch.as_tensor(arr).permute(0, 3, 1, 2).float() / 255.0
    if grayscale:
        x = x.mean(1, keepdim=True)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    return (x - 0.5) / 0.25, torch.as_tensor(dataset.targets, dtype=torch.long)


class TextDataset:
    """Labelled sentences: ``texts`` (list of str), ``targets`` (int64 array), ``classes``, and
    ``domains`` (one domain name per sentence) when the sentences come from several domains.

    Indexing returns ``(text, label)``.

    Usage: ``ds = TextDataset(["great", "awful"], [1, 0], ["negative", "positive"]); text, y = ds[0]``
    """

    def __init__(self, texts: Sequence[str], targets: Sequence[int], classes: Sequence[str],
                 domains: Sequence[str] | None = None):
        texts = list(texts)
        if len(texts) != len(targets):
            raise DatasetError(f"{len(texts)} texts but {len(targets)} labels.")
        if domains is not None and len(domains) != len(texts):
            raise DatasetError(f"{len(texts)} texts but {len(domains)} domain names.")
        if not all(isinstance(t, str) for t in texts):
            raise DatasetError("Every text must be a str.")
        self.texts = texts
        self.targets = np.asarray(targets, dtype=np.int64).reshape(-1)
        self.classes = list(classes)
        if len(self.targets) and (self.targets.min() < 0 or self.targets.max() >= len(self.classes)):
            raise DatasetError(f"Labels must be in 0..{len(self.classes) - 1} for classes {self.classes}.")
        self.domains = None if domains is None else list(domains)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> tuple[str, int]:
        return self.texts[index], int(self.targets[index])

    def subset(self, indices: Sequence[int]) -> "TextDataset":
        """A new dataset holding only the given indices, in that order (same classes).

        Usage: ``few = data.train.subset(few_shot_indices(data.train.targets, 5))``
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return TextDataset([self.texts[i] for i in idx], self.targets[idx], self.classes,
                           None if self.domains is None else [self.domains[i] for i in idx])

    def class_counts(self) -> dict[str, int]:
        """Number of sentences per class name.

        Usage: ``data.train.class_counts()  # {'negative': 300, 'positive': 300}``
        """
        counts = np.bincount(self.targets, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def domain_counts(self) -> dict[str, int] | None:
        """Number of sentences per domain, or None for a single-domain dataset.

        Usage: ``load_dataset("sentiment:all").test.domain_counts()``
        """
        if self.domains is None:
            return None
        names, counts = np.unique(np.asarray(self.domains), return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts)}

    def fingerprint(self) -> str:
        """A sha256 of the texts, labels and class names, in order: part of every feature-cache
        key, so a changed sentence, label or order never reuses a cache.

        Usage: ``key = data.train.fingerprint()``
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(repr(self.classes).encode())
            digest.update(self.targets.tobytes())
            for text in self.texts:
                raw = text.encode("utf-8")
                digest.update(len(raw).to_bytes(8, "little"))
                digest.update(raw)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        extra = f", domains={self.domain_counts()}" if self.domains is not None else ""
        return f"TextDataset({len(self)} sentences, classes={self.classes}{extra})"


@dataclass
class DatasetSplits:
    """A loaded dataset: ``train`` and ``val`` splits (and ``test``, when the dataset has an
    official one), class names, and where the data came from. Choose on ``val``, report on ``test``."""

    name: str
    train: ImageDataset
    val: ImageDataset
    classes: list[str]
    source: str
    notes: list[str] = field(default_factory=list)
    test: ImageDataset | None = None
    skipped: list[dict] = field(default_factory=list)
    """Files left out, each ``{"path", "kind", "reason"}`` (kind: ``"not an image"`` or ``"unreadable"``)."""

    def summary(self) -> str:
        """One short paragraph: name, source, sizes per split and class.

        Usage: ``print(data.summary())``
        """
        unit = "texts" if hasattr(self.train, "texts") else "images"
        lines = [f"dataset {self.name!r} from {self.source}",
                 f"  classes ({len(self.classes)}): {', '.join(self.classes)}",
                 f"  train: {len(self.train)} {unit} {self.train.class_counts()}",
                 f"  val:   {len(self.val)} {unit} {self.val.class_counts()}"]
        if self.test is not None:
            lines.append(f"  test:  {len(self.test)} {unit} {self.test.class_counts()}")
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
        return DatasetSplits(self.name, sub_train, sub_val, list(self.classes), self.source,
                             self.notes + [note], self.test, list(self.skipped))

    def holding_out_validation(self, fraction: float = 0.2, seed: int = 0) -> "DatasetSplits":
        """For a dataset without a test split: its validation split becomes the **test** split
        (looked at once, to report), and a stratified ``fraction`` of the training split, drawn
        with ``seed``, becomes the new validation split (for every choice). A dataset that has a
        test split already is returned unchanged.

        Usage: ``near = load_dataset("hymenoptera").holding_out_validation(0.2)``
        """
        if self.test is not None:
            return self
        rest, held = split_indices(self.train.targets, fraction, seed=seed)
        note = (f"validation: {len(held)} of the {len(self.train)} training images held out (seed {seed}); "
                f"the {len(self.val)} former validation images are the test split")
        return DatasetSplits(self.name, self.train.subset(rest), self.train.subset(held), list(self.classes),
                             self.source, self.notes + [note], self.val, list(self.skipped))

    def __repr__(self) -> str:
        return self.summary()


