"""Homogeneous and heterogeneous transfer in small pieces (notebook 05).

*Homogeneous*: source and target share one feature space but their input distributions differ
(covariate shift, e.g. from sample-selection bias); importance weights
``w(x) = p_target(x) / p_source(x)``, estimated by a classifier that tells the two samples apart,
make the source loss an unbiased estimate of the target loss.

*Heterogeneous*: source and target are described by different features (e.g. HOG descriptors vs
raw pixels); a shared latent space learned by CCA from a few paired examples links them.

Usage::

    from tl_course.shift import importance_weights, CCALink, hog_features, pixel_features
    w = importance_weights(X_source, X_target)
    link = CCALink(n_components=10).fit(hog_pairs, pixel_pairs)
    Z_source, Z_target = link.source_latent(hog_source), link.target_latent(pixels_target)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# --------------------------------------------------------------------------- covariate shift, 1-D
def true_function(x: np.ndarray) -> np.ndarray:
    """The regression function of the 1-D example: ``f(x) = -x + x**3`` (Shimodaira, 2000).

    Usage: ``y = true_function(x) + noise``
    """
    x = np.asarray(x, dtype=float)
    return -x + x ** 3


def selection_probability(x: np.ndarray, center: float = 0.5, slope: float = 6.0) -> np.ndarray:
    """Probability that a point at ``x`` is selected into the (biased) training sample:
    ``sigmoid(slope * (x - center))``, so points to the right are over-represented.

    Usage: ``p = selection_probability(x_population)``
    """
    return 1.0 / (1.0 + np.exp(-slope * (np.asarray(x, dtype=float) - center)))


@dataclass
class ShiftSample:
    """A biased training sample and an unbiased test sample from one population.

    ``x_train, y_train``: the points that survived the selection; ``x_test, y_test``: a fresh
    sample of the population (the distribution we care about); ``true_weights``: the exact
    importance weights ``p_test(x) / p_train(x)`` of the training points; ``p_select``: the
    fraction of the population that gets selected, ``P(s=1)``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    true_weights: np.ndarray
    p_select: float
    center: float
    slope: float

    def true_weight(self, x) -> np.ndarray:
        """The exact importance weight ``P(s=1) / P(s=1 | x)`` at any ``x``.

        Usage: ``s.true_weight(np.linspace(-1, 1, 5))``
        """
        return self.p_select / selection_probability(x, self.center, self.slope)


def make_selection_bias_1d(n_population: int = 2000, n_test: int = 1000, noise: float = 0.1,
                           center: float = 0.5, slope: float = 6.0, spread: float = 0.5,
                           seed: int = 0) -> ShiftSample:
    """Sample-selection bias in 1-D: the population has ``x ~ N(0, spread**2)`` and
    ``y = f(x) + noise``; a point enters the training sample with probability
    :func:`selection_probability` (depending on ``x`` only, so ``p(y | x)`` is unchanged: covariate
    shift). The test sample is drawn from the population itself.

    Usage: ``s = make_selection_bias_1d(seed=0); s.x_train.shape``
    """
    rng = np.random.default_rng(seed)
    x_pop = rng.normal(0.0, spread, n_population)
    keep = rng.random(n_population) < selection_probability(x_pop, center, slope)
    x_train = x_pop[keep]
    y_train = true_function(x_train) + rng.normal(0.0, noise, x_train.shape)
    x_test = rng.normal(0.0, spread, n_test)
    y_test = true_function(x_test) + rng.normal(0.0, noise, n_test)
    # p_train(x) = p(x) P(s=1|x) / P(s=1)  =>  w(x) = P(s=1) / P(s=1|x); P(s=1) by quadrature
    grid = np.linspace(-8 * spread, 8 * spread, 4001)
    p_select = float(np.sum(np.exp(-(grid / spread) ** 2 / 2) / (spread * np.sqrt(2 * np.pi))
                            * selection_probability(grid, center, slope)) * (grid[1] - grid[0]))
    weights = p_select / selection_probability(x_train, center, slope)
    return ShiftSample(x_train, y_train, x_test, y_test, weights, p_select, center, slope)


# --------------------------------------------------------------------------- importance weights
def domain_classifier(X_source, X_target, C: float = 1.0, degree: int = 1, seed: int = 0):
    """A logistic regression telling source (0) from target (1) points, on standardised (and,
    for ``degree > 1``, polynomial) features.

    Usage: ``clf = domain_classifier(Xs, Xt); clf.predict_proba(Xs)[:, 1]``
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    Xs, Xt = _2d(X_source), _2d(X_target)
    X = np.vstack([Xs, Xt])
    d = np.r_[np.zeros(len(Xs)), np.ones(len(Xt))]
    steps = [StandardScaler()]
    if degree > 1:
        steps += [PolynomialFeatures(degree, include_bias=False), StandardScaler()]
    steps.append(LogisticRegression(C=C, max_iter=5000, random_state=seed))
    with _one_thread():
        return make_pipeline(*steps).fit(X, d)


def importance_weights(X_source, X_target, C: float = 1.0, degree: int = 1,
                       clip: float | None = None, X=None) -> np.ndarray:
    """Estimated importance weights ``p_target(x) / p_source(x)`` of the points ``X`` (default:
    the source points), from a domain classifier:
    ``w(x) = (n_source / n_target) * P(target | x) / P(source | x)``, normalised to mean 1 over the
    source sample, optionally clipped at ``clip`` (then renormalised) to tame the variance.

    Usage: ``w = importance_weights(X_train, X_test); model.fit(X_train, y, sample_weight=w)``
    """
    Xs, Xt = _2d(X_source), _2d(X_target)
    clf = domain_classifier(Xs, Xt, C=C, degree=degree)
    ratio = len(Xs) / len(Xt)

    def raw(points):
        p = np.clip(clf.predict_proba(points)[:, 1], 1e-12, 1 - 1e-12)
        return ratio * p / (1 - p)

    scale = raw(Xs).mean()
    w = raw(Xs if X is None else _2d(X)) / scale
    if clip is not None:
        w = np.minimum(w, clip)
        w = w / (np.minimum(raw(Xs) / scale, clip).mean())
    return w


def effective_sample_size(weights) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2``: how many unweighted points a weighted
    sample is worth. Equal weights give ``n``; a few huge weights give almost 1.

    Usage: ``effective_sample_size(w) / len(w)``
    """
    w = np.asarray(weights, dtype=float)
    return float(w.sum() ** 2 / np.sum(w ** 2))


def select_biased(scores, center: float = 0.0, slope: float = 3.0, seed: int = 0) -> np.ndarray:
    """Sample-selection bias on real data: keep item ``i`` with probability
    ``sigmoid(slope * (z_i - center))``, where ``z`` is the standardised score (as
    :func:`selection_probability` does in 1-D). Returns the sorted indices kept.

    Usage: ``idx = select_biased(first_principal_component, center=0.0, slope=3.0)``
    """
    s = np.asarray(scores, dtype=float)
    z = (s - s.mean()) / (s.std() + 1e-12)
    keep = np.random.default_rng(seed).random(len(s)) < selection_probability(z, center, slope)
    return np.flatnonzero(keep)


def class_mix_distance(labels, target_labels, weights=None) -> float:
    """Total-variation distance between the class proportions of a (weighted) sample and those
    of a target sample: 0 = same mix, 1 = disjoint classes.

    Usage: ``class_mix_distance(y_train, y_test, weights=w)``
    """
    labels, target_labels = np.asarray(labels), np.asarray(target_labels)
    k = int(max(labels.max(), target_labels.max())) + 1
    p = np.bincount(labels, weights=weights, minlength=k)
    q = np.bincount(target_labels, minlength=k)
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def _one_thread():
    """One BLAS/OpenMP thread: small scikit-learn solves are much faster when cores are shared."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _2d(X) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    return X[:, None] if X.ndim == 1 else X


# --------------------------------------------------------------------------- heterogeneous features
def _gray(images) -> np.ndarray:
    arr = np.asarray(images, dtype=np.float64)
    return (arr.mean(-1) if arr.ndim == 4 else arr) / 255.0


def hog_features(images, pixels_per_cell: int = 8, orientations: int = 9) -> np.ndarray:
    """HOG descriptors (scikit-image) of ``(N, H, W[, 3])`` uint8 images: histograms of edge
    orientations per cell, normalised per block of 2x2 cells.

    Usage: ``H = hog_features(data.train.samples)  # (N, 324) for 32x32 images``
    """
    from skimage.feature import hog

    return np.stack([hog(im, orientations=orientations, pixels_per_cell=(pixels_per_cell,) * 2,
                         cells_per_block=(2, 2)) for im in _gray(images)])


def pixel_features(images, size: int = 16) -> np.ndarray:
    """Raw grey-level pixels of ``(N, H, W[, 3])`` uint8 images, average-pooled to ``size x size``
    and flattened, in 0..1.

    Usage: ``P = pixel_features(data.train.samples)  # (N, 256)``
    """
    g = _gray(images)
    n, h, w = g.shape
    if h % size or w % size:
        raise ValueError(f"size {size} must divide the image size {h}x{w}.")
    return g.reshape(n, size, h // size, size, w // size).mean(axis=(2, 4)).reshape(n, -1)


class CCALink:
    """A shared latent space for two feature spaces, learned from paired examples (the same
    objects described both ways): each side is reduced by PCA (fitted on all the unlabelled data
    of that side given to :meth:`fit`), then canonical correlation analysis (scikit-learn ``CCA``)
    finds directions in which the two descriptions of a pair agree most.

    Usage::

        link = CCALink(n_components=10).fit(S_pairs, T_pairs, S_all, T_all)
        clf.fit(link.source_latent(S_labelled), y)          # train on source
        clf.predict(link.target_latent(T_new))              # predict on target
    """

    def __init__(self, n_components: int = 10, n_pca: int = 30):
        self.n_components = n_components
        self.n_pca = n_pca

    def fit(self, source_pairs, target_pairs, source_unlabelled=None, target_unlabelled=None):
        from sklearn.cross_decomposition import CCA
        from sklearn.decomposition import PCA

        S, T = _2d(source_pairs), _2d(target_pairs)
        if len(S) != len(T):
            raise ValueError(f"{len(S)} source but {len(T)} target pairs: pairs must match row by row.")
        Su = S if source_unlabelled is None else _2d(source_unlabelled)
        Tu = T if target_unlabelled is None else _2d(target_unlabelled)
        with _one_thread():
            self.source_pca_ = PCA(min(self.n_pca, *Su.shape), random_state=0).fit(Su)
            self.target_pca_ = PCA(min(self.n_pca, *Tu.shape), random_state=0).fit(Tu)
            k = min(self.n_components, self.source_pca_.n_components_,
                    self.target_pca_.n_components_, len(S) - 1)
            self.cca_ = CCA(n_components=k, max_iter=2000).fit(self.source_pca_.transform(S),
                                                               self.target_pca_.transform(T))
        zs, zt = self.cca_.transform(self.source_pca_.transform(S), self.target_pca_.transform(T))
        self.correlations_ = np.array([np.corrcoef(zs[:, i], zt[:, i])[0, 1] for i in range(k)])
        return self

    def source_latent(self, X) -> np.ndarray:
        """Source features -> shared latent space."""
        return self.cca_.transform(self.source_pca_.transform(_2d(X)))

    def target_latent(self, X) -> np.ndarray:
        """Target features -> shared latent space."""
        Z = self.target_pca_.transform(_2d(X))
        dummy = np.zeros((len(Z), self.cca_.n_features_in_))
        return self.cca_.transform(dummy, Z)[1]


# --------------------------------------------------------------------------- the digits HOG/pixels setting
@dataclass
class HeterogeneousSplit:
    """Digits seen by two "sensors": a labelled *source* described only by HOG, a *target* pool
    described only by raw pixels (labels held back, a few may be revealed), ``pairs``: indices
    into the target pool of images we may describe both ways (unlabelled), and a target
    validation set (pixels).
    """

    source_hog: np.ndarray
    source_y: np.ndarray
    target_pixels: np.ndarray
    target_hog: np.ndarray
    target_y: np.ndarray
    val_pixels: np.ndarray
    val_y: np.ndarray


def heterogeneous_digits(n_source: int = 700, seed: int = 0) -> HeterogeneousSplit:
    """Split ``digits``' training images at random into a source part (HOG features + labels)
    and a target pool (pixels; its HOG only for paired examples); the validation images are the
    target test set.

    Usage: ``h = heterogeneous_digits(); h.source_hog.shape, h.target_pixels.shape``
    """
    from .datasets import load_dataset

    data = load_dataset("digits")
    x, y = data.train.samples, data.train.targets
    perm = np.random.default_rng(seed).permutation(len(y))
    src, tgt = perm[:n_source], perm[n_source:]
    return HeterogeneousSplit(hog_features(x[src]), y[src], pixel_features(x[tgt]),
                              hog_features(x[tgt]), y[tgt], pixel_features(data.val.samples),
                              data.val.targets)


def cca_transfer_accuracy(h: HeterogeneousSplit, n_pairs: int, labelled=None,
                          n_components: int = 10, n_pca: int = 20) -> float:
    """Target validation accuracy of a classifier trained in a CCA latent space learned from the
    first ``n_pairs`` images of the target pool: on all source labels (HOG side) plus, if given,
    the target-pool images ``labelled`` (pixel side).

    Usage: ``cca_transfer_accuracy(heterogeneous_digits(), n_pairs=100)``
    """
    from .layers import linear_probe

    pairs = np.arange(n_pairs)
    link = CCALink(n_components, n_pca).fit(h.target_hog[pairs], h.target_pixels[pairs],
                                            h.source_hog, h.target_pixels)
    Z, y = link.source_latent(h.source_hog), h.source_y
    if labelled is not None and len(labelled):
        idx = np.asarray(labelled)
        Z = np.vstack([Z, link.target_latent(h.target_pixels[idx])])
        y = np.r_[y, h.target_y[idx]]
    return linear_probe(Z, y, link.target_latent(h.val_pixels), h.val_y)
