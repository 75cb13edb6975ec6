"""Data: the datasets of the course and the types that hold them.

One module per idea: :mod:`~tl_course.data.types` (labelled images, splits, subsets),
:mod:`~tl_course.data.registry` (``@register_dataset``, :func:`load_dataset`),
:mod:`~tl_course.data.images` (safe image decoding), :mod:`~tl_course.data.manifest` (verified
copies), and one module per source: :mod:`~tl_course.data.digits`,
:mod:`~tl_course.data.hymenoptera`, :mod:`~tl_course.data.folder`, :mod:`~tl_course.data.medmnist`
(chest X-rays and the other MedMNIST sets), :mod:`~tl_course.data.sentiment` (review sentences). Importing this package
registers every source.

Usage::

    from tl_course.data import load_dataset, few_shot_indices
    data = load_dataset("hymenoptera")
"""
from . import digits, folder, hymenoptera, medmnist, sentiment, textfile  # noqa: F401  (each registers its datasets)
from .registry import DATASETS, dataset_table, load_dataset, load_dataset_or_fallback, register_dataset
from .types import (DatasetError, DatasetSplits, ImageDataset, TextDataset, few_shot_indices, image_tensors,
                    split_indices)

__all__ = ["DATASETS", "DatasetError", "DatasetSplits", "ImageDataset", "TextDataset", "dataset_table",
           "few_shot_indices", "image_tensors", "load_dataset", "load_dataset_or_fallback",
           "register_dataset", "split_indices"]
