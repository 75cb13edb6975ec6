"""tl_course.shift: selection bias, importance weights, effective sample size, HOG/pixels, CCA."""
from __future__ import annotations

import numpy as np
import pytest

from tl_course import shift


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
    assert w.mean() == pytest.approx(1.0)
    assert np.corrcoef(np.log(w), np.log(true))[0, 1] > 0.99
    grid = shift.importance_weights(xs, xt, X=np.array([-1.0, 0.0, 1.0]))
    assert grid[0] < grid[1] < grid[2]
    clipped = shift.importance_weights(xs, xt, clip=3.0)
    assert clipped.max() < w.max() and clipped.mean() == pytest.approx(1.0)


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


def test_hog_and_pixel_features():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    H = shift.hog_features(imgs)
    assert H.shape == (3, 324)
    assert np.allclose(shift.hog_features(255 - imgs), H)  # unsigned gradients: inversion-invariant
    P = shift.pixel_features(imgs, size=16)
    assert P.shape == (3, 256) and 0 <= P.min() and P.max() <= 1
    with pytest.raises(ValueError):
        shift.pixel_features(imgs, size=10)


def test_cca_link_finds_the_shared_latent():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(300, 2))
    S = Z @ rng.normal(size=(2, 12)) + 0.1 * rng.normal(size=(300, 12))
    T = Z @ rng.normal(size=(2, 7)) + 0.1 * rng.normal(size=(300, 7))
    link = shift.CCALink(n_components=2, n_pca=6).fit(S[:100], T[:100], S, T)
    assert link.correlations_.min() > 0.95
    zs, zt = link.source_latent(S[100:]), link.target_latent(T[100:])
    assert zs.shape == zt.shape == (200, 2)
    for i in range(2):  # held-out objects land in the same place from both descriptions
        assert abs(np.corrcoef(zs[:, i], zt[:, i])[0, 1]) > 0.95
    with pytest.raises(ValueError, match="pairs"):
        shift.CCALink().fit(S[:10], T[:11])


def test_heterogeneous_digits_and_transfer(digits_cache):
    h = shift.heterogeneous_digits(n_source=700, seed=0)
    assert h.source_hog.shape == (700, 324) and h.target_pixels.shape[1] == 256
    assert len(h.target_pixels) == len(h.target_hog) == len(h.target_y) == 1347 - 700
    assert len(h.val_pixels) == len(h.val_y) == 450
    acc = shift.cca_transfer_accuracy(h, n_pairs=100)
    assert acc > 0.6  # chance is 0.1: the link carries the source labels over
