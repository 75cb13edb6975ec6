"""The dataset registry: every named dataset is registered with ``@register_dataset`` and loaded
with one call, :func:`load_dataset`.

=========================  =======================================================  ===============
name                       what                                                     offline
=========================  =======================================================  ===============
``digits``                 scikit-learn's 1,797 handwritten digits, 32x32 RGB       generated
``digits_m``               the same digits blended onto natural photos (MNIST-M)    generated
``hymenoptera``            ants vs bees photos of the classic PyTorch tutorial      mirror/download
``folder:<path>``          any ImageFolder of yours (``class_name/image.jpg``)      yes
=========================  =======================================================  ===============

Each source lives in its own module of :mod:`tl_course.data` and registers itself on import.

Usage::

    from tl_course.data import load_dataset, dataset_table
    data = load_dataset("hymenoptera")
    data.train, data.val, data.classes
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..download import DownloadError
from .types import DatasetError, DatasetSplits


@dataclass
class DatasetSpec:
    """A registered dataset: its loader and how to tell whether it can be had right now."""

    name: str
    description: str
    where: str
    loader: Callable[..., DatasetSplits]
    available: Callable[[], tuple[bool, str]]


DATASETS: dict[str, DatasetSpec] = {}
PREFIXES: dict[str, Callable[..., DatasetSplits]] = {}
"""Loaders of parametrised names, by prefix: ``folder:<path>``, ..."""


def register_dataset(name: str, description: str, where: str,
                     available: Callable[[], tuple[bool, str]] = lambda: (True, "generated locally")):
    """Decorator adding a loader to the dataset registry. A ``name`` ending in ``:`` registers a
    prefix: ``load_dataset("folder:~/photos")`` calls its loader with ``"~/photos"``.

    Usage: ``@register_dataset("mine", "my photos", "local")\\ndef _load(**kw): ...``
    """
    def wrap(fn):
        if name.endswith(":"):
            PREFIXES[name] = fn
        else:
            DATASETS[name] = DatasetSpec(name, description, where, fn, available)
        return fn
    return wrap


def load_dataset(name: str, **kwargs) -> DatasetSplits:
    """Load a registered dataset, or ``folder:<path>`` for an ImageFolder of your own.

    Usage: ``data = load_dataset("digits")``; ``load_dataset("folder:~/photos", val_fraction=0.2)``
    """
    for prefix, loader in PREFIXES.items():
        if name.startswith(prefix):
            return loader(name[len(prefix):], **kwargs)
    if name not in DATASETS:
        raise DatasetError(f"Unknown dataset {name!r}. Known: {', '.join(DATASETS)}, or "
                           + ", ".join(f"'{p}<...>'" for p in PREFIXES) + ".")
    return DATASETS[name].loader(**kwargs)


def dataset_table() -> list[dict]:
    """One row per registered dataset: name, description, where it comes from, and whether it
    can be loaded right now without the network.

    Usage: ``for row in dataset_table(): print(row)``
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
