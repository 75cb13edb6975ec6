"""Exercises of notebook 04 (unsupervised transfer: clustering with borrowed features)."""
import numpy as np

from .. import asserts
from ..exercises import checker, trivial_answers


def _pair(answer) -> tuple[float, float]:
    assert isinstance(answer, (tuple, list)) and len(answer) == 2, \
        "expected a pair (ARI, NMI), e.g. (0.01, 0.02)."
    return asserts.number(answer[0], "a number (the ARI)"), asserts.number(answer[1], "a number (the NMI)")


def _chance_scores() -> dict:
    from ...methods.clustering import cluster_scores
    from ...data import load_dataset

    y = load_dataset("digits_m").val.targets
    return cluster_scores(y, np.random.default_rng(0).integers(0, 10, size=len(y)))


@checker("04.chance")
def _chance(answer):
    expected = _chance_scores()
    ari, nmi = _pair(answer)
    if abs(ari - expected["NMI"]) < 1e-6 and abs(nmi - expected["ARI"]) < 1e-6:
        raise AssertionError("the two numbers are swapped: the pair is (ARI, NMI).")
    assert abs(ari - expected["ARI"]) < 1e-6, (f"ARI {ari:.4f} is not the ARI of those random ids "
                                               "(score them, do not guess: it is close to 0 but not 0).")
    assert abs(nmi - expected["NMI"]) < 1e-6, f"NMI {nmi:.4f} is not the NMI of those random ids."


@trivial_answers("04.chance")
def _():
    from ...methods.clustering import cluster_scores, kmeans_clusters
    from ...data import load_dataset

    images = load_dataset("digits_m").val.samples
    y = load_dataset("digits_m").val.targets
    raw = cluster_scores(y, kmeans_clusters(images.reshape(len(images), -1) / 255.0, 10, seed=0))
    chance = _chance_scores()
    return [((0, 0), {}), ((0.0, 0.0), {}), ((1.0, 1.0), {}), ((0.0, 0.1), {}),
            ((raw["ARI"], raw["NMI"]), {}),                 # the raw-pixel scores of section 3
            ((chance["NMI"], chance["ARI"]), {}), (0.0, {})]


def _background_nmi(k: int) -> float:
    from ...data.digits import digits_m_backgrounds
    from ...methods.clustering import cluster_scores, kmeans_clusters
    from ...data import load_dataset

    images = load_dataset("digits_m").val.samples
    raw = images.reshape(len(images), -1) / 255.0
    return cluster_scores(digits_m_backgrounds("val"), kmeans_clusters(raw, k, seed=0))["NMI"]


@checker("04.backgrounds")
def _backgrounds(answer):
    value = asserts.number(answer, "a float")
    assert 0.0 < value < 1.0, f"{value} is not an NMI of a real clustering: it lies strictly between 0 and 1 here."
    expected = _background_nmi(8)
    if abs(value - _background_nmi(10)) < 0.005 and abs(value - expected) >= 0.005:
        raise AssertionError("that is the NMI of 10 clusters; the question asks for 8 (one per photo).")
    assert abs(value - expected) < 0.005, (
        f"{value:.3f} is not the NMI of 8 raw-pixel clusters against the backgrounds. "
        "Use 8 clusters, seed 0, all 450 images, and score against the backgrounds, not the digits.")


@trivial_answers("04.backgrounds")
def _():
    from ...methods.clustering import cluster_scores, kmeans_clusters
    from ...data import load_dataset

    images = load_dataset("digits_m").val.samples
    y = load_dataset("digits_m").val.targets
    on_digits = cluster_scores(y, kmeans_clusters(images.reshape(len(images), -1) / 255.0, 8, seed=0))["NMI"]
    return [(0.0, {}), (1.0, {}), (0, {}), (_background_nmi(10), {}), (on_digits, {})]
