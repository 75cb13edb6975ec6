"""Exercises of notebook 04 (unsupervised transfer: clustering with borrowed features)."""
import numpy as np

from .. import asserts
from ..exercises import checker


def _pair(answer) -> tuple[float, float]:
    assert isinstance(answer, (tuple, list)) and len(answer) == 2, \
        "expected a pair (ARI, NMI), e.g. (0.01, 0.02)."
    return float(answer[0]), float(answer[1])


@checker("04.chance")
def _chance(answer):
    from ...methods.clustering import cluster_scores
    from ...data import load_dataset

    y = load_dataset("digits_m").val.targets
    expected = cluster_scores(y, np.random.default_rng(0).integers(0, 10, size=len(y)))
    ari, nmi = _pair(answer)
    assert abs(ari - expected["ARI"]) < 1e-6, (f"ARI {ari:.4f} is not the ARI of those random ids "
                                               "(it should be very close to 0).")
    assert abs(nmi - expected["NMI"]) < 1e-6, (f"NMI {nmi:.4f} is not the NMI of those random ids; "
                                               "did you swap the two numbers?")


@checker("04.backgrounds")
def _backgrounds(answer):
    from ...data.digits import digits_m_backgrounds
    from ...methods.clustering import cluster_scores, kmeans_clusters
    from ...data import load_dataset

    images = load_dataset("digits_m").val.samples
    raw = images.reshape(len(images), -1) / 255.0
    expected = cluster_scores(digits_m_backgrounds("val"), kmeans_clusters(raw, 8, seed=0))["NMI"]
    answer = asserts.number(answer, "a float")
    assert abs(float(answer) - expected) < 0.005, (
        f"{float(answer):.3f} is not the NMI of 8 raw-pixel clusters against the backgrounds. "
        "Use 8 clusters, seed 0, and score against the backgrounds, not the digits.")
