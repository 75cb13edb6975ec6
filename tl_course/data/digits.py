"""The two generated datasets of the concept notebooks, offline everywhere: ``digits``
(scikit-learn's handwritten digits, upsampled to 32x32 RGB) and ``digits_m`` (the same digits
blended onto patches of natural photos, the MNIST-M construction: a shifted target domain), plus
the tools built on their alignment (image ``i`` of both shows the same digit).

Usage::

    from tl_course.data import load_dataset
    from tl_course.data.digits import interpolate_domains, digits_m_backgrounds
    half = interpolate_domains(load_dataset("digits").val, load_dataset("digits_m").val, 0.5)
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

from .. import cache, settings
from .registry import register_dataset
from .types import DatasetSplits, ImageDataset

DIGITS_SIZE = 32
_SPLIT_SEEDS = {"train": 1, "val": 2}  # the seeds _build_digits_m blends each split with
PHOTO_SOURCES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                 "hubble_deep_field", "sklearn:china.jpg", "sklearn:flower.jpg")


def _cached_arrays(name: str, build: Callable[[], dict]) -> dict:
    path = settings.data_dir() / "generated" / f"{name}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception:  # corrupt cache (truncated zip, bad header, ...): rebuild
            path.unlink(missing_ok=True)
    arrays = build()
    cache.write_atomically(path, lambda tmp: np.savez_compressed(tmp, **arrays))
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
    return {"x_train": blend_onto_photos(base["x_train"], seed=_SPLIT_SEEDS["train"]), "y_train": base["y_train"],
            "x_val": blend_onto_photos(base["x_val"], seed=_SPLIT_SEEDS["val"]), "y_val": base["y_val"]}


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


def interpolate_domains(source: ImageDataset, target: ImageDataset, strength: float) -> ImageDataset:
    """An ``ImageDataset`` between two aligned array datasets (image ``i`` of both shows the same
    example, as with ``digits`` and ``digits_m``): each pixel is ``(1 - strength) * source +
    strength * target``. ``strength=0`` gives the source images, ``1`` the target ones; the
    domain-shift explorer of notebook 03 turns this knob.

    Usage: ``half_shifted = interpolate_domains(load_dataset("digits").val, load_dataset("digits_m").val, 0.5)``
    """
    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}.")
    a, b = source.samples, target.samples
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        raise TypeError("interpolate_domains needs datasets held in memory as arrays (e.g. digits, digits_m), "
                        "not image files.")
    if a.shape != b.shape or not np.array_equal(source.targets, target.targets):
        raise ValueError(f"the two datasets are not aligned: shapes {a.shape} vs {b.shape}, or different labels.")
    mixed = np.rint((1.0 - strength) * a.astype(np.float32) + strength * b.astype(np.float32))
    return ImageDataset(mixed.clip(0, 255).astype(np.uint8), source.targets, source.classes)


def digits_m_backgrounds(split: str = "val") -> np.ndarray:
    """Which natural photo (index into :data:`PHOTO_SOURCES`) lies behind every ``digits_m``
    image of ``split``, recovered by replaying the dataset's seeded construction and checked
    against the stored images (raises if the dataset was built differently).

    Usage: ``photo = digits_m_backgrounds("val"); PHOTO_SOURCES[photo[0]]``
    """
    from .registry import load_dataset

    if split not in _SPLIT_SEEDS:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}.")
    clean = getattr(load_dataset("digits"), split).samples
    target = getattr(load_dataset("digits_m"), split).samples
    photos = natural_photos()
    rng = np.random.default_rng(_SPLIT_SEEDS[split])
    n, h, w, _ = clean.shape
    ids = np.empty(n, dtype=np.int64)
    for i in range(n):  # the same draws, in the same order, as blend_onto_photos
        ids[i] = rng.integers(len(photos))
        rng.integers(photos[ids[i]].shape[0] - h)
        rng.integers(photos[ids[i]].shape[1] - w)
    if not np.array_equal(blend_onto_photos(clean, seed=_SPLIT_SEEDS[split]), target):
        raise RuntimeError("digits_m was not built by blend_onto_photos with the expected seed: "
                           "cannot recover its backgrounds.")
    return ids
