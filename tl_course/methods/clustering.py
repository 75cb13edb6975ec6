"""Clustering an unlabelled target and scoring it against labels the method never saw
(notebook 04): k-means, adjusted Rand index and normalised mutual information.

Usage::

    from tl_course.methods.clustering import kmeans_clusters, cluster_scores
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

    from .. import settings

    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if l2:
        X = normalize(X)
    with settings.threads(1):  # one thread: many times faster when the cores are shared
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
