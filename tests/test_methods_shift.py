"""tl_course.methods.shift: selection bias, importance weights, effective sample size, class mix."""
from __future__ import annotations

import numpy as np
import pytest

from tl_course.methods import shift


def test_selection_probability():
    p = shift.selection_probability(np.array([-1.0, 0.5, 2.0]), center=0.5, slope=6.0)
    assert p[1] == pytest.approx(0.5) and p[0] < 0.01 and p[2] > 0.99


def test_selection_bias_sample():
    a, b = shift.make_selection_bias_1d(seed=3), shift.make_selection_bias_1d(seed=3)
    assert np.array_equal(a.x_train, b.x_train)
    assert a.x_train.mean() > a.x_test.mean() + 0.3  # selection favours large x
    assert a.true_weights.mean() == pytest.approx(1.0, abs=0.15)  # E_train[w] = 1
    assert np.allclose(a.true_weight(a.x_train), a.true_weights)
    assert 0 < a.p_select < 1


def test_importance_weights_recover_a_known_ratio():
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(0, 1, 3000), rng.normal(1, 1, 3000)
    w = shift.importance_weights(xs, xt)
    true = np.exp(xs - 0.5)  # N(1,1) / N(0,1)
    assert w.shape == xs.shape and w.mean() == pytest.approx(1.0)  # normalised to mean 1
    assert np.corrcoef(np.log(w), np.log(true))[0, 1] > 0.95
    grid = shift.importance_weights(xs, xt, X=np.array([-1.0, 0.0, 1.0]))
    assert grid[0] < grid[1] < grid[2]
    assert np.array_equal(w, shift.importance_weights(xs, xt))  # seeded folds: deterministic


def test_importance_weights_recover_the_selection_bias_example():
    s = shift.make_selection_bias_1d(seed=0)
    w = shift.importance_weights(s.x_train, s.x_test, degree=2)
    assert w.mean() == pytest.approx(1.0)
    assert np.corrcoef(w, s.true_weights)[0, 1] > 0.8


def test_clip_caps_weights_at_a_multiple_of_the_median():
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(0, 1, 3000), rng.normal(1, 1, 3000)
    w = shift.importance_weights(xs, xt)
    clipped = shift.importance_weights(xs, xt, clip=3.0)
    assert clipped.mean() == pytest.approx(1.0)
    assert clipped.max() < w.max()
    assert clipped.max() <= 3.0 * np.median(clipped) * (1 + 1e-9)
    assert np.isclose(clipped.max(), 3.0 * np.median(clipped))  # the cap binds here
    small = w < 3.0 * np.median(w)  # unclipped points keep their relative weights
    assert np.allclose(clipped[small] / w[small], (clipped[small] / w[small])[0])


def test_domain_classifier_is_unfitted_and_domain_accuracy():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    clf = shift.domain_classifier(C=0.1, degree=2, seed=0)
    with pytest.raises(NotFittedError):
        clf.predict(np.zeros((1, 1)))
    clone(clf)  # a plain scikit-learn estimator
    rng = np.random.default_rng(0)
    same = rng.normal(size=(400, 2))
    assert shift.domain_accuracy(same[:200], same[200:]) < 0.65
    assert shift.domain_accuracy(rng.normal(0, 1, (200, 2)), rng.normal(4, 1, (200, 2))) > 0.95


def test_importance_weights_without_shift_are_flat():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 3))
    w = shift.importance_weights(X[:1000], X[1000:])
    assert w.std() < 0.2


def test_effective_sample_size():
    assert shift.effective_sample_size(np.ones(50)) == pytest.approx(50)
    assert shift.effective_sample_size(np.r_[1.0, np.zeros(9)]) == pytest.approx(1)


def test_select_biased_and_class_mix():
    scores = np.arange(1000, dtype=float)
    idx = shift.select_biased(scores, center=0.0, slope=3.0, seed=0)
    assert np.array_equal(idx, shift.select_biased(scores, center=0.0, slope=3.0, seed=0))
    assert scores[idx].mean() > scores.mean() + 100
    y = np.r_[np.zeros(10, int), np.ones(30, int)]
    assert shift.class_mix_distance(y, y) == pytest.approx(0)
    assert shift.class_mix_distance(np.zeros(5, int), np.ones(5, int)) == pytest.approx(1)
    y_t = np.r_[np.zeros(20, int), np.ones(20, int)]
    w = np.where(y == 0, 3.0, 1.0)  # re-weighting fixes the mix
    assert shift.class_mix_distance(y, y_t, w) == pytest.approx(0)
