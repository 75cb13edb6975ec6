"""Heterogeneous transfer: source and target are described by different features (e.g. HOG
descriptors vs raw pixels); a shared latent space learned by CCA from a few paired examples links
them (notebook 05).

Usage::

    from tl_course.methods.heterogeneous import CCALink, hog_features, pixel_features
    link = CCALink(n_components=10).fit(hog_pairs, pixel_pairs)
    Z_source, Z_target = link.source_latent(hog_source), link.target_latent(pixels_target)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import settings
from ..data import load_dataset
from ..probe import as_matrix, probe_accuracy



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

        S, T = as_matrix(source_pairs), as_matrix(target_pairs)
        if len(S) != len(T):
            raise ValueError(f"{len(S)} source but {len(T)} target pairs: pairs must match row by row.")
        Su = S if source_unlabelled is None else as_matrix(source_unlabelled)
        Tu = T if target_unlabelled is None else as_matrix(target_unlabelled)
        with settings.threads(1):
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
        return self.cca_.transform(self.source_pca_.transform(as_matrix(X)))

    def target_latent(self, X) -> np.ndarray:
        """Target features -> shared latent space."""
        Z = self.target_pca_.transform(as_matrix(X))
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
    pairs = np.arange(n_pairs)
    link = CCALink(n_components, n_pca).fit(h.target_hog[pairs], h.target_pixels[pairs],
                                            h.source_hog, h.target_pixels)
    Z, y = link.source_latent(h.source_hog), h.source_y
    if labelled is not None and len(labelled):
        idx = np.asarray(labelled)
        Z = np.vstack([Z, link.target_latent(h.target_pixels[idx])])
        y = np.r_[y, h.target_y[idx]]
    return probe_accuracy(Z, y, link.target_latent(h.val_pixels), h.val_y)
