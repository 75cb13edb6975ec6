"""Linear probes: how well a logistic regression reads the labels off frozen features. The same
convex fit trains the linear head of a frozen-backbone classifier.

- :func:`fit_probe` / :func:`probe_accuracy`: standardised features, L2-regularised logistic
  regression (scikit-learn), optional per-example weights: the probe of the concept notebooks;
- :func:`probe_stages`: the probe at every depth of a network;
- :func:`fit_logistic_head`: the regularisation chosen by cross-validation on the training set
  only, the solution copied into an ``nn.Linear`` head (which can then be fine-tuned).

Every solve runs on one BLAS thread: they are small, and much faster so when cores are shared.

Usage::

    from tl_course.probe import probe_accuracy, fit_logistic_head
    acc = probe_accuracy(F_train, y_train, F_val, y_val)
    info = fit_logistic_head(model.head, X_train, y_train)
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from torch import nn

from . import settings


def as_numpy(x) -> np.ndarray:
    """A tensor or array-like as a NumPy array (floating tensors as float64).

    Usage: ``as_numpy(features)``
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.double().numpy() if x.is_floating_point() else x.numpy()
    return np.asarray(x)


def as_matrix(X) -> np.ndarray:
    """Features as a float64 matrix, one row per example (a 1-D input is one feature per row).

    Usage: ``as_matrix(x_train)  # (n, 1) for a 1-D sample``
    """
    X = as_numpy(X).astype(np.float64)
    return X[:, None] if X.ndim == 1 else X


def fit_probe(X_train, y_train, C: float = 1.0, sample_weight=None, max_iter: int = 3000):
    """A standardised L2 logistic regression (a scikit-learn pipeline) fitted on features, with
    optional per-example ``sample_weight``.

    Usage: ``clf = fit_probe(F_train, y_train); clf.score(F_val, y_val)``
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    fit_kw = {} if sample_weight is None else {"logisticregression__sample_weight": as_numpy(sample_weight)}
    with settings.threads(1):
        return clf.fit(as_numpy(X_train).reshape(len(X_train), -1), as_numpy(y_train), **fit_kw)


def probe_accuracy(X_train, y_train, X_test, y_test, C: float = 1.0, sample_weight=None) -> float:
    """Accuracy on ``(X_test, y_test)`` of :func:`fit_probe` fitted on the training features.

    Usage: ``acc = probe_accuracy(F_train, y_train, F_val, y_val)``
    """
    clf = fit_probe(X_train, y_train, C, sample_weight)
    with settings.threads(1):
        return float(clf.score(as_numpy(X_test).reshape(len(X_test), -1), as_numpy(y_test)))


def few_shot_accuracy(X_train, y_train, X_test, y_test, per_class: int, seed: int = 0, pool=None) -> float:
    """:func:`probe_accuracy` trained on ``per_class`` examples of every class drawn with
    :func:`~tl_course.data.few_shot_indices` (from the indices ``pool`` when given).

    Usage: ``few_shot_accuracy(F_train, y_train, F_val, y_val, per_class=5)``
    """
    from .data.types import few_shot_indices

    labels = as_numpy(y_train)
    idx = (few_shot_indices(labels, per_class, seed=seed) if pool is None
           else np.asarray(pool)[few_shot_indices(labels[np.asarray(pool)], per_class, seed=seed)])
    return probe_accuracy(as_numpy(X_train)[idx], labels[idx], X_test, y_test)


def probe_stages(train_feats, y_train, val_feats, y_val, C: float = 1.0) -> list[float]:
    """:func:`probe_accuracy` at every depth: one validation accuracy per stage.

    Usage: ``accs = probe_stages(feats, y, val_feats, y_val)``
    """
    if len(train_feats) != len(val_feats):
        raise ValueError(f"{len(train_feats)} train stages but {len(val_feats)} val stages.")
    return [probe_accuracy(a, y_train, b, y_val, C=C) for a, b in zip(train_feats, val_feats)]


def fit_logistic_head(head: nn.Module, X: torch.Tensor, y: torch.Tensor, Cs=(0.01, 0.1, 1.0, 10.0),
                      cv: int = 5, seed: int = 0) -> dict:
    """Train a linear head as an L2-regularised logistic regression on cached features: a convex
    problem, solved exactly (scikit-learn), with the regularisation strength chosen by
    cross-validation on the training set only. The solution is copied into the head's last
    ``nn.Linear``, so the head can still be fine-tuned with the backbone afterwards.

    Usage: ``info = fit_logistic_head(model.head, X_train, y_train)``
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    start = time.perf_counter()
    Xn, yn = as_numpy(X).astype(np.float64), as_numpy(y)
    folds = min(cv, int(np.bincount(yn).min()))
    with settings.threads(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-learn 1.9 announces changed defaults
        if folds >= 2 and len(Cs) > 1:
            search = LogisticRegressionCV(Cs=list(Cs), cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                          scoring="accuracy", max_iter=3000).fit(Xn, yn)
            C = float(np.atleast_1d(search.C_)[0])
        else:
            C = float(Cs[len(Cs) // 2])
        clf = LogisticRegression(C=C, max_iter=3000).fit(Xn, yn)
    linear = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    n_classes = linear.out_features
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: one score s maps to logits (-s/2, s/2)
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((n_classes, coef.shape[1]))
    bias = np.full(n_classes, -1e4)  # classes absent from training are never predicted
    weight[clf.classes_] = coef
    bias[clf.classes_] = intercept
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight, dtype=linear.weight.dtype))
        linear.bias.copy_(torch.as_tensor(bias, dtype=linear.bias.dtype))
    return {"C": C, "seconds": time.perf_counter() - start,
            "train_accuracy": float(clf.score(Xn, yn))}
