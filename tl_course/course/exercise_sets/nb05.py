"""Exercises of notebook 05 (homogeneous vs heterogeneous transfer)."""
import numpy as np

from .. import asserts
from ..exercises import checker, trivial_answers


def _true_ess_fraction() -> float:
    from ...methods.shift import effective_sample_size, make_selection_bias_1d

    s = make_selection_bias_1d(seed=0)
    return effective_sample_size(s.true_weights) / len(s.true_weights)


def _estimated_ess_fraction() -> float:
    from ...methods.shift import effective_sample_size, importance_weights, make_selection_bias_1d

    s = make_selection_bias_1d(seed=0)
    return effective_sample_size(importance_weights(s.x_train, s.x_test)) / len(s.x_train)


@checker("05.true_ess")
def _true_ess(answer):
    value = asserts.number(answer)
    assert 0 < value <= 1, f"{value} is not a fraction: divide the effective sample size by the number of points."
    if abs(value - _estimated_ess_fraction()) < 1e-3:
        raise AssertionError("that is the fraction of the *estimated* weights, printed in section 1; "
                             "the question asks about the exact ones, s.true_weights.")
    assert abs(value - _true_ess_fraction()) < 1e-3, (
        f"{value:.3f} is not the effective-sample-size fraction of the true weights (seed 0): "
        "(sum w)^2 / sum w^2, divided by the number of training points.")


@trivial_answers("05.true_ess")
def _():
    from ...methods.shift import effective_sample_size, make_selection_bias_1d

    s = make_selection_bias_1d(seed=0)
    return [(0, {}), (1.0, {}), (0.5, {}), (_estimated_ess_fraction(), {}),   # the fraction printed in section 1
            (effective_sample_size(s.true_weights), {}), (1 / len(s.true_weights), {})]


def _few_pairs_expected(n_pairs: int) -> float:
    from ...methods.heterogeneous import cca_transfer_accuracy, heterogeneous_digits

    return cca_transfer_accuracy(heterogeneous_digits(seed=0), n_pairs=n_pairs)


@checker("05.few_pairs")
def _few_pairs(answer):
    value = asserts.accuracy_value(answer)
    if abs(value - _few_pairs_expected(100)) < 0.005:
        raise AssertionError("that is the accuracy with 100 pairs (section 3); use n_pairs=30.")
    assert abs(value - _few_pairs_expected(30)) < 0.005, (
        f"{value:.3f} is not the accuracy with 30 pairs; use n_pairs=30, seed 0 and the default "
        "latent size (10), without target labels.")


@trivial_answers("05.few_pairs")
def _():
    return [(0, {}), (0.0, {}), (0.1, {}), (1.0, {}), (_few_pairs_expected(100), {}), (30, {})]
