"""tl_course.methods.clustering and the exercises of notebooks 04-06 (right and wrong answers)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tl_course import plots  # noqa: E402
from tl_course.data import digits  # noqa: E402
from tl_course.methods import clustering  # noqa: E402
from tl_course.course.exercises import get_exercise  # noqa: E402


def test_kmeans_on_separated_blobs():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 0.1, (20, 2)) for c in (0, 5, 10)])
    y = np.repeat([0, 1, 2], 20)
    clusters = clustering.kmeans_clusters(X, 3, seed=0)
    assert clustering.cluster_scores(y, clusters) == {"ARI": pytest.approx(1.0), "NMI": pytest.approx(1.0)}
    assert np.array_equal(clusters, clustering.kmeans_clusters(X, 3, seed=0))
    assert len(np.unique(clustering.kmeans_clusters(X, 3, l2=True))) == 3


def test_scores_ignore_cluster_names():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert clustering.cluster_scores(y, 2 - y)["ARI"] == pytest.approx(1.0)
    assert clustering.cluster_scores(y, np.zeros(6, int))["ARI"] == pytest.approx(0.0)


def test_digits_m_backgrounds(digits_cache):
    ids = digits.digits_m_backgrounds("val")
    assert ids.shape == (450,) and ids.min() >= 0 and ids.max() < 8
    assert len(np.unique(ids)) == 8
    with pytest.raises(ValueError):
        digits.digits_m_backgrounds("test")


def test_show_clusters():
    imgs = np.zeros((6, 4, 4, 3), np.uint8)
    fig = plots.show_clusters(imgs, np.array([0, 0, 1, 1, 1, 2]), per_cluster=2)
    assert len(fig.axes) == 6


def test_exercise_04_chance(digits_cache):
    from tl_course.data import load_dataset

    y = load_dataset("digits_m").val.targets
    s = clustering.cluster_scores(y, np.random.default_rng(0).integers(0, 10, size=len(y)))
    ex = get_exercise("04.chance")
    assert ex.verdict((s["ARI"], s["NMI"]))[0]
    assert not ex.verdict((s["NMI"], s["ARI"]))[0]
    assert "not solved yet" in ex.verdict(None)[1]


def test_exercise_05_true_ess():
    from tl_course.methods import shift

    s = shift.make_selection_bias_1d(seed=0)
    ex = get_exercise("05.true_ess")
    assert ex.verdict(shift.effective_sample_size(s.true_weights) / len(s.true_weights))[0]
    assert not ex.verdict(shift.effective_sample_size(s.true_weights))[0]


def test_exercise_06_answers():
    ex = get_exercise("06.stage_heights")
    assert ex.verdict([48, 48, 24, 12, 6, 6, 3, 3, 3])[0]
    assert not ex.verdict([48] * 9)[0]
