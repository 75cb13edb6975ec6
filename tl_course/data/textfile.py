"""``tsv:<path>``: labelled texts of your own, one ``text<TAB>label`` per line (the label is a class
name), split into train / val / test by the same rule as the sentiment data (stratified 60/20/20,
duplicates kept in one split; see :func:`tl_course.data.sentiment.split_groups`).

The file is read as UTF-8, split on newlines only and each line on its **last** tab, so texts may
hold quotes, commas and tabs. Blank lines are skipped. A line without a label column, an empty
text or label, a file that is not UTF-8, fewer than two classes, or a class with fewer than three
texts (one per split) raise :class:`~tl_course.data.types.DatasetError` naming the file and line.

Usage::

    from tl_course.data import load_dataset
    data = load_dataset("tsv:~/reviews.tsv")        # or: tl-course train tsv:reviews.tsv --out runs/mine
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .registry import register_dataset
from .sentiment import split_groups
from .types import DatasetError, DatasetSplits, TextDataset


def read_labelled_texts(path: str | Path) -> tuple[list[str], list[str]]:
    """``(texts, labels)`` of a ``text<TAB>label`` file, or :class:`DatasetError` saying which line
    is wrong and how.

    Usage: ``texts, labels = read_labelled_texts("reviews.tsv")``
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"Text file not found: {path}. Give a UTF-8 file with one 'text<TAB>label' per line.")
    try:
        content = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not UTF-8 text: save it as UTF-8, one 'text<TAB>label' per line.") from None
    texts, labels = [], []
    for number, line in enumerate(content.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        text, tab, label = line.rpartition("\t")
        if not tab:
            raise DatasetError(f"{path}, line {number}: no label column (expected 'text<TAB>label'): {line[:80]!r}")
        if not text.strip() or not label.strip():
            raise DatasetError(f"{path}, line {number}: empty {'text' if not text.strip() else 'label'}: {line[:80]!r}")
        texts.append(text.strip())
        labels.append(label.strip())
    return texts, labels


@register_dataset("tsv:", "labelled texts of your own, one 'text<TAB>label' per line", "your disk")
def load_text_file(path: str | Path, seed: int = 0, **_) -> DatasetSplits:
    """Load a ``text<TAB>label`` file as stratified, deduplicated train / val / test splits.

    Usage: ``data = load_text_file("reviews.tsv")`` or ``load_dataset("tsv:reviews.tsv")``
    """
    texts, names = read_labelled_texts(path)
    classes = sorted(set(names))
    counts = {c: names.count(c) for c in classes}
    if len(classes) < 2:
        raise DatasetError(f"{path} has a single label ({classes[0] if classes else 'none'}); a classifier "
                           "needs at least two.")
    few = [c for c, n in counts.items() if n < 3]
    if few:
        raise DatasetError(f"{path}: label(s) {few} have fewer than 3 texts; each needs one for training, "
                           "validation and test.")
    targets = np.asarray([classes.index(n) for n in names], dtype=np.int64)
    full = TextDataset(texts, targets, classes)
    train, val, test = (full.subset(idx) for idx in split_groups(texts, targets, seed=seed))
    return DatasetSplits(f"tsv:{Path(path).name}", train, val, classes, f"file {Path(path).expanduser()}",
                         [f"{len(texts)} texts, labels {counts}; stratified 60/20/20 split (seed {seed})"], test=test)
