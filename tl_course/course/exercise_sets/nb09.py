"""Exercises of notebook 09 (evaluate and use the classifier)."""
import numpy as np

from .. import asserts
from ..exercises import checker


@checker("09.missed_first_class")
def _missed(answer, probs=None, y=None):
    expected = int(((np.asarray(y) == 0) & (np.asarray(probs).argmax(1) != 0)).sum())
    answer = asserts.integer(answer)
    total = int((np.asarray(y) == 0).sum())
    assert answer != total - expected or expected * 2 == total, \
        "that is the number of first-class images predicted *correctly*; count the others."
    assert answer == expected, f"{answer} is not the number of first-class images predicted as another class."


@checker("09.ece_bins")
def _ece(answer, probs=None, y=None):
    from ...evaluation import reliability

    expected = reliability(np.asarray(probs), np.asarray(y), bins=5)["ece"]
    answer = asserts.number(answer, "a float")
    if abs(answer - reliability(np.asarray(probs), np.asarray(y), bins=10)["ece"]) < 1e-12 and abs(answer - expected) > 1e-12:
        raise AssertionError("that is the ECE with 10 bins.")
    assert abs(answer - expected) < 1e-9, f"{answer:.4f} is not the ECE with 5 bins."
