"""Exercises of notebook 05 (homogeneous vs heterogeneous transfer)."""
import numpy as np

from ..exercises import checker


def _float(answer) -> float:
    assert isinstance(answer, (float, int, np.floating, np.integer)) and not isinstance(answer, bool), \
        f"expected a number, got {type(answer).__name__}."
    return float(answer)


@checker("05.true_ess")
def _true_ess(answer):
    from ...methods.shift import effective_sample_size, make_selection_bias_1d

    s = make_selection_bias_1d(seed=0)
    expected = effective_sample_size(s.true_weights) / len(s.true_weights)
    value = _float(answer)
    assert 0 < value <= 1, f"{value} is not a fraction: divide the effective sample size by the number of points."
    assert abs(value - expected) < 1e-3, (
        f"{value:.3f} is not the effective-sample-size fraction of the true weights (seed 0). Did "
        "you use the estimated weights, or forget to divide by the number of points?")


@checker("05.few_pairs")
def _few_pairs(answer):
    from ...methods.heterogeneous import cca_transfer_accuracy, heterogeneous_digits

    expected = cca_transfer_accuracy(heterogeneous_digits(seed=0), n_pairs=30)
    value = _float(answer)
    assert abs(value - expected) < 0.005, (
        f"{value:.3f} is not the accuracy with 30 pairs; use n_pairs=30, seed 0 and the default "
        "latent size (10), without target labels.")
