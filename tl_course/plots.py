"""Small plotting helpers shared by the notebooks (matplotlib).

Usage::

    from tl_course import plots
    plots.show_images(images, titles)
    plots.plot_history({"frozen": h1, "fine-tuned": h2})
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np


def show_images(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 6,
                size: float = 2.0, suptitle: str | None = None):
    """A grid of images (PIL, HxWx3 arrays, or CHW tensors) with optional titles.

    Usage: ``show_images([data.train.image(i) for i in range(12)], ncols=6)``
    """
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        arr = np.asarray(img)
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = arr.transpose(1, 2, 0)
        ax = axes.flat[i]
        ax.imshow(arr.squeeze(), cmap="gray" if arr.ndim == 2 or arr.shape[-1] == 1 else None)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_history(histories: dict, metric: str = "val_accuracy", ax=None, title: str | None = None):
    """One line per run: ``metric`` per epoch, from :class:`~tl_course.training.History` objects.

    Usage: ``plot_history({"scratch": h1, "pretrained": h2})``
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for label, hist in histories.items():
        ax.plot([r["epoch"] for r in hist.rows], hist.column(metric), marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def plot_curves(x: Sequence, curves: dict, xlabel: str, ylabel: str, logx: bool = False,
                ax=None, title: str | None = None):
    """Several named y-series over the same x values (e.g. accuracy vs labels per class).

    Usage: ``plot_curves([1, 5, 20], {"scratch": a, "transfer": b}, "labels/class", "accuracy")``
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for label, ys in curves.items():
        ax.plot(x, ys, marker="o", label=label)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def plot_embedding_2d(points: np.ndarray, groups: np.ndarray, labels: dict | None = None, ax=None,
                      title: str | None = None, s: float = 6):
    """Scatter of 2-D points coloured by group (e.g. source vs target domain).

    Usage: ``plot_embedding_2d(pca_xy, domain, {0: "source", 1: "target"})``
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    for g in np.unique(groups):
        m = groups == g
        ax.scatter(points[m, 0], points[m, 1], s=s, alpha=0.6,
                   label=(labels or {}).get(int(g), str(g)))
    ax.legend(markerscale=3)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax
