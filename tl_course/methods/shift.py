"""Covariate shift and instance reweighting: source and target share one feature space but their
input distributions differ (e.g. from sample-selection bias); importance weights
``w(x) = p_target(x) / p_source(x)``, estimated by a classifier that tells the two samples apart,
make the source loss an unbiased estimate of the target loss. The one estimator of the course
(notebooks 03 and 05): :func:`importance_weights`.

Usage::

    from tl_course.methods.shift import importance_weights, effective_sample_size
    w = importance_weights(X_source, X_target)
    effective_sample_size(w) / len(w)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import settings
from ..probe import as_matrix


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
def domain_classifier(C: float = 1.0, degree: int = 1, seed: int = 0):
    """A logistic regression telling source (0) from target (1) points, on standardised (and,
    for ``degree > 1``, polynomial) features: an unfitted scikit-learn pipeline.

    Usage: ``clf = domain_classifier(C=0.1).fit(X, d)``
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    steps = [StandardScaler()]
    if degree > 1:
        steps += [PolynomialFeatures(degree, include_bias=False), StandardScaler()]
    steps.append(LogisticRegression(C=C, max_iter=5000, random_state=seed))
    return make_pipeline(*steps)


def _domains(X_source, X_target) -> tuple[np.ndarray, np.ndarray]:
    Xs, Xt = as_matrix(X_source), as_matrix(X_target)
    return np.vstack([Xs, Xt]), np.r_[np.zeros(len(Xs)), np.ones(len(Xt))]


def importance_weights(X_source, X_target, C: float = 1.0, degree: int = 1, clip: float | None = None,
                       folds: int = 5, X=None, seed: int = 0) -> np.ndarray:
    """Estimated importance weights ``w(x) = p_target(x) / p_source(x)``, from a domain classifier
    used as a density-ratio estimator: ``w(x) = (n_source / n_target) * P(target | x) / P(source | x)``.

    The weights of the source points are *out-of-fold* (``folds``-fold cross-fitting: each
    point's weight comes from a classifier that never saw it, so it does not overfit its own
    point); those of other points ``X`` (e.g. a grid for a plot) from the classifier fitted on
    everything. All are scaled so the source weights average 1; ``clip`` caps them at ``clip``
    times the median source weight (then rescales) to tame the variance.

    Usage: ``w = importance_weights(X_train, X_test); model.fit(X_train, y, sample_weight=w)``
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    Xall, d = _domains(X_source, X_target)
    n_s, n_t = int((d == 0).sum()), int((d == 1).sum())
    clf = domain_classifier(C=C, degree=degree, seed=seed)

    def ratio(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return (n_s / n_t) * p / (1 - p)

    with settings.threads(1):
        p_source = cross_val_predict(clf, Xall, d, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                     method="predict_proba")[:n_s, 1]
        w_source = ratio(p_source)
        scale = w_source.mean()
        w = w_source / scale if X is None else ratio(clf.fit(Xall, d).predict_proba(as_matrix(X))[:, 1]) / scale
    if clip is not None:
        cap = clip * np.median(w_source / scale)
        w = np.minimum(w, cap) / np.minimum(w_source / scale, cap).mean()
    return w


def domain_accuracy(X_source, X_target, C: float = 1.0, seed: int = 0) -> float:
    """How well a linear domain classifier tells source from target points (5-fold
    cross-validated accuracy): 0.5 means the domains are indistinguishable, 1.0 perfectly
    separable. A proxy for the domain distance (the proxy A-distance is ``2 * (2 * acc - 1)``).

    Usage: ``domain_accuracy(F_source, F_target)``
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    Xall, d = _domains(X_source, X_target)
    with settings.threads(1):
        return float(cross_val_score(domain_classifier(C=C, seed=seed), Xall, d,
                                     cv=StratifiedKFold(5, shuffle=True, random_state=seed)).mean())


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

