"""tl_course.probe: logistic-regression probes on frozen features, and the logistic head."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.pipeline import Pipeline

from torch import nn

from tl_course.probe import as_matrix, as_numpy, fit_logistic_head, fit_probe, probe_accuracy, probe_stages
from tl_course.train import evaluate

from helpers import blobs


def test_linear_probe_and_weights():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(-3, 1, (40, 2)), rng.normal(3, 1, (40, 2))]
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    assert probe_accuracy(X, y, X, y) == 1.0
    w = np.r_[np.ones(40), np.full(40, 1e-6)]  # class 1 almost ignored -> still fits, no crash
    assert 0.5 <= probe_accuracy(X, y, X, y, sample_weight=w) <= 1.0
    accs = probe_stages([X, X[:, :1]], y, [X, X[:, :1]], y)
    assert len(accs) == 2 and accs[0] == 1.0
    with pytest.raises(ValueError):
        probe_stages([X], y, [X, X], y)


def test_fit_probe_returns_a_fitted_pipeline():
    rng = np.random.default_rng(1)
    X = torch.tensor(np.r_[rng.normal(-2, 1, (30, 3)), rng.normal(2, 1, (30, 3))], dtype=torch.float32)
    y = torch.tensor(np.r_[np.zeros(30, int), np.ones(30, int)])
    clf = fit_probe(X, y, C=0.5)
    assert isinstance(clf, Pipeline) and clf.score(X.numpy(), y.numpy()) >= 0.95
    assert clf[-1].C == 0.5
    images = torch.randn(4, 3, 2, 2)  # anything with a first dimension is flattened per example
    assert fit_probe(images, torch.tensor([0, 1, 0, 1])).predict(images.reshape(4, -1).numpy()).shape == (4,)


def test_as_numpy_and_as_matrix():
    t = torch.arange(6.0, requires_grad=True).reshape(2, 3)
    a = as_numpy(t)
    assert isinstance(a, np.ndarray) and a.shape == (2, 3)
    assert as_numpy([1, 2]).tolist() == [1, 2]
    assert as_matrix(np.arange(4.0)).shape == (4, 1)  # 1-D data: one feature per point
    assert as_matrix(t).shape == (2, 3)



def test_fit_logistic_head_binary_and_multiclass():
    for classes in (2, 3):
        X, y = blobs(90, d=6, classes=classes, seed=4)
        head = nn.Sequential(nn.Dropout(0.2), nn.Linear(6, classes))
        info = fit_logistic_head(head, X, y, Cs=(0.1, 1.0), cv=3)
        assert info["train_accuracy"] >= 0.95 and info["C"] in (0.1, 1.0)
        assert evaluate(head, (X, y))["accuracy"] >= 0.95
