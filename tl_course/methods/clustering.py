"""Clustering an unlabelled target and scoring it against labels the method never saw
(notebook 04): k-means, adjusted Rand index, normalised mutual information, a montage per
cluster, and the background photo behind every ``digits_m`` image (to see *what* clusters found).

Usage::

    from tl_course.clustering import kmeans_clusters, cluster_scores
    clusters = kmeans_clusters(X, k=10, seed=0)
    cluster_scores(y_held_back, clusters)      # {'ARI': ..., 'NMI': ...}
"""
from __future__ import annotations

import numpy as np


def kmeans_clusters(X, k: int = 10, seed: int = 0, n_init: int = 10, l2: bool = False) -> np.ndarray:
    """Cluster ids ``(N,)`` from scikit-learn's k-means (``n_init`` seeded restarts), optionally
    on L2-normalised rows (compares directions, not lengths: usual for network features).

    Usage: ``clusters = kmeans_clusters(features, k=10, l2=True)``
    """
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import normalize
    from threadpoolctl import threadpool_limits

    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if l2:
        X = normalize(X)
    with threadpool_limits(1):  # one thread: many times faster when the cores are shared
        return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(X)


def cluster_scores(labels, clusters) -> dict:
    """Agreement between a clustering and reference labels: adjusted Rand index (0 = chance,
    1 = identical partitions) and normalised mutual information (0 = independent, 1 = identical).
    Both ignore how clusters are numbered.

    Usage: ``cluster_scores(y, clusters)  # {'ARI': 0.19, 'NMI': 0.37}``
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {"ARI": float(adjusted_rand_score(labels, clusters)),
            "NMI": float(normalized_mutual_info_score(labels, clusters))}


def digits_m_backgrounds(split: str = "val") -> np.ndarray:
    """Which natural photo (index into ``tl_course.datasets.PHOTO_SOURCES``) lies behind every
    ``digits_m`` image of ``split``, recovered by replaying the dataset's seeded construction
    and checked against the stored images (raises if the dataset was built differently).

    Usage: ``photo = digits_m_backgrounds("val"); PHOTO_SOURCES[photo[0]]``
    """
    from .datasets import blend_onto_photos, load_dataset, natural_photos

    seeds = {"train": 1, "val": 2}  # the seeds _build_digits_m uses for each split
    if split not in seeds:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}.")
    clean = getattr(load_dataset("digits"), split).samples
    target = getattr(load_dataset("digits_m"), split).samples
    photos = natural_photos()
    rng = np.random.default_rng(seeds[split])
    n, h, w, _ = clean.shape
    ids = np.empty(n, dtype=np.int64)
    for i in range(n):  # the same draws, in the same order, as blend_onto_photos
        ids[i] = rng.integers(len(photos))
        rng.integers(photos[ids[i]].shape[0] - h)
        rng.integers(photos[ids[i]].shape[1] - w)
    if not np.array_equal(blend_onto_photos(clean, seed=seeds[split]), target):
        raise RuntimeError("digits_m was not built by blend_onto_photos with the expected seed: "
                           "cannot recover its backgrounds.")
    return ids


def show_clusters(images, clusters, per_cluster: int = 8, size: float = 0.9, order=None):
    """One row per cluster with its first ``per_cluster`` images: what did k-means group?

    Usage: ``show_clusters(data.val.samples, clusters)``
    """
    import matplotlib.pyplot as plt

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
