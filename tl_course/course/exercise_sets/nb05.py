"""Exercises of notebook 05 (homogeneous vs heterogeneous transfer)."""
import numpy as np

from ..exercises import register


def _float(answer) -> float:
    assert isinstance(answer, (float, int, np.floating, np.integer)) and not isinstance(answer, bool), \
        f"expected a number, got {type(answer).__name__}."
    return float(answer)


@register("05.true_ess",
          "With the exact weights of make_selection_bias_1d(seed=0), what fraction of the training "
          "points is the weighted sample worth (effective sample size / number of points)?",
          "a float between 0 and 1",
          "shift.effective_sample_size(s.true_weights) / len(s.true_weights)",
          "Even the exact weights cost most of the sample: the few training points in the rare "
          "region carry huge weights. Correcting bias trades it for variance.")
def _true_ess(answer):
    from ...methods.shift import effective_sample_size, make_selection_bias_1d

    s = make_selection_bias_1d(seed=0)
    expected = effective_sample_size(s.true_weights) / len(s.true_weights)
    value = _float(answer)
    assert 0 < value <= 1, f"{value} is not a fraction: divide the effective sample size by the number of points."
    assert abs(value - expected) < 1e-3, (
        f"{value:.3f} is not the effective-sample-size fraction of the true weights (seed 0). Did "
        "you use the estimated weights, or forget to divide by the number of points?")


@register("05.few_pairs",
          "With only 30 paired examples (and no target label), what test accuracy does the CCA "
          "transfer of section 3 reach?",
          "a float: the target test accuracy",
          "shift.cca_transfer_accuracy(shift.heterogeneous_digits(seed=0), n_pairs=30)",
          "30 pairs for 20 + 20 PCA dimensions are too few: CCA finds directions that are "
          "correlated on these pairs by chance (several canonical correlations come out as 1.00), "
          "the link does not generalise, and the accuracy collapses. Check link.correlations_.")
def _few_pairs(answer):
    from ...methods.heterogeneous import cca_transfer_accuracy, heterogeneous_digits

    expected = cca_transfer_accuracy(heterogeneous_digits(seed=0), n_pairs=30)
    value = _float(answer)
    assert abs(value - expected) < 0.005, (
        f"{value:.3f} is not the accuracy with 30 pairs; use n_pairs=30, seed 0 and the default "
        "latent size (10), without target labels.")
