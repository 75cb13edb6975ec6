"""tl_course.methods.heterogeneous: HOG/pixel features, the CCA link, heterogeneous digits."""
from __future__ import annotations

import numpy as np
import pytest

from tl_course.methods import heterogeneous


def test_hog_and_pixel_features():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    H = heterogeneous.hog_features(imgs)
    assert H.shape == (3, 324)
    assert np.allclose(heterogeneous.hog_features(255 - imgs), H)  # unsigned gradients: inversion-invariant
    P = heterogeneous.pixel_features(imgs, size=16)
    assert P.shape == (3, 256) and 0 <= P.min() and P.max() <= 1
    with pytest.raises(ValueError):
        heterogeneous.pixel_features(imgs, size=10)


def test_cca_link_finds_the_shared_latent():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(300, 2))
    S = Z @ rng.normal(size=(2, 12)) + 0.1 * rng.normal(size=(300, 12))
    T = Z @ rng.normal(size=(2, 7)) + 0.1 * rng.normal(size=(300, 7))
    link = heterogeneous.CCALink(n_components=2, n_pca=6).fit(S[:100], T[:100], S, T)
    assert link.correlations_.min() > 0.95
    zs, zt = link.source_latent(S[100:]), link.target_latent(T[100:])
    assert zs.shape == zt.shape == (200, 2)
    for i in range(2):  # held-out objects land in the same place from both descriptions
        assert abs(np.corrcoef(zs[:, i], zt[:, i])[0, 1]) > 0.95
    with pytest.raises(ValueError, match="pairs"):
        heterogeneous.CCALink().fit(S[:10], T[:11])


def test_heterogeneous_digits_and_transfer(digits_cache):
    h = heterogeneous.heterogeneous_digits(n_source=700, seed=0)
    assert h.source_hog.shape == (700, 324) and h.target_pixels.shape[1] == 256
    assert len(h.target_pixels) == len(h.target_hog) == len(h.target_y) == 1347 - 700
    assert len(h.val_pixels) == len(h.val_y) == 450
    acc = heterogeneous.cca_transfer_accuracy(h, n_pairs=100)
    assert acc > 0.6  # chance is 0.1: the link carries the source labels over
