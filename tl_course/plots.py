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
import torch

from . import settings


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


def embed_2d(*feature_sets, method: str = "pca", seed: int = 0) -> list[np.ndarray]:
    """Project several feature sets into one shared 2-D space (fitted on all of them together):
    ``"pca"`` (scikit-learn PCA after standardising) or ``"tsne"``. Returns one ``(n_i, 2)`` array
    per input.

    Usage: ``src_xy, tgt_xy = embed_2d(F_source, F_target)``
    """
    from sklearn.decomposition import PCA

    from .probe import as_numpy
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    arrays = [as_numpy(f).astype(np.float64).reshape(len(f), -1) for f in feature_sets]
    if method not in ("pca", "tsne"):
        raise ValueError(f"Unknown method {method!r}: use 'pca' or 'tsne'.")
    with settings.threads(1):
        X = StandardScaler().fit_transform(np.concatenate(arrays))
        if method == "pca":
            Z = PCA(2, random_state=seed).fit_transform(X)
        else:
            Z = TSNE(2, init="pca", random_state=seed, perplexity=min(30, len(X) - 1)).fit_transform(X)
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    return [Z[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def plot_filters(weights: torch.Tensor, ncols: int = 16, size: float = 0.6, title: str | None = None):
    """Show RGB first-layer filters as small images (grey = 0; each filter scaled on its own).

    Usage: ``plot_filters(first_layer_filters(bb))``
    """
    from .models.stages import filters_as_images

    imgs = filters_as_images(weights)
    nrows = -(-len(imgs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img in zip(axes.flat, imgs):
        ax.imshow(img, interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.1)
    return fig


def plot_feature_maps(maps: list[torch.Tensor], stages: list[int], names: list[str] | None = None,
                      per_stage: int = 6, size: float = 1.3):
    """For each chosen stage, its ``per_stage`` most active channels (highest mean activation) as
    heat maps: one row per stage.

    Usage: ``plot_feature_maps(feature_maps(bb, img), stages=[0, 2, 4, 6])``
    """
    fig, axes = plt.subplots(len(stages), per_stage, figsize=(size * per_stage, size * len(stages)),
                             squeeze=False)
    for row, i in zip(axes, stages):
        m = maps[i]
        top = torch.argsort(m.mean(dim=(1, 2)), descending=True)[:per_stage]
        for j, (ax, c) in enumerate(zip(row, top)):
            ax.imshow(m[c].numpy(), cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                label = names[i] if names else f"stage {i}"
                ax.set_ylabel(f"{i}: {label}\n{tuple(m.shape[1:])}", fontsize=7)
    fig.tight_layout(pad=0.2)
    return fig


def show_clusters(images, clusters, per_cluster: int = 8, size: float = 0.9, order=None):
    """One row per cluster with its first ``per_cluster`` images: what did k-means group?

    Usage: ``show_clusters(data.val.samples, clusters)``
    """
    clusters = np.asarray(clusters)
    ids = list(order) if order is not None else sorted(np.unique(clusters))
    fig, axes = plt.subplots(len(ids), per_cluster, figsize=(size * per_cluster, size * len(ids)),
                             squeeze=False)
    for r, c in enumerate(ids):
        members = np.flatnonzero(clusters == c)[:per_cluster]
        for j, ax in enumerate(axes[r]):
            ax.axis("off")
            if j < len(members):
                ax.imshow(np.asarray(images[members[j]]))
        axes[r][0].set_title(f"cluster {c} ({int((clusters == c).sum())})", fontsize=7, loc="left")
    fig.tight_layout(pad=0.2)
    return fig
