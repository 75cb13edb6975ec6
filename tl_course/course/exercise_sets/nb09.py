"""Exercises of notebook 09 (evaluate and use the classifier)."""
import numpy as np

from .. import asserts
from ..exercises import checker, trivial_answers


def _selective(probs, y, threshold: float = 0.95) -> tuple[float, float]:
    """Coverage and accuracy of the predictions made with confidence >= ``threshold``."""
    probs, y = np.asarray(probs), np.asarray(y)
    answered = probs.max(1) >= threshold
    right = probs.argmax(1) == y
    return float(answered.mean()), float(right[answered].mean()) if answered.any() else float("nan")


@checker("09.abstain")
def _abstain(answer, probs=None, y=None):
    coverage, accuracy = _selective(probs, y)
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise AssertionError("expected a tuple (coverage, accuracy) of two numbers.")
    got_coverage = asserts.accuracy_value(answer[0])
    got_accuracy = asserts.accuracy_value(answer[1])
    overall = float((np.asarray(probs).argmax(1) == np.asarray(y)).mean())
    if abs(got_coverage - 1.0) < 1e-9 and coverage < 1.0:
        raise AssertionError("a coverage of 1 answers every image: keep only those with max probability >= 0.95.")
    if abs(got_accuracy - overall) < 1e-9 and abs(accuracy - overall) > 1e-9:
        raise AssertionError("that is the accuracy on all images; compute it on the answered ones only.")
    if abs(got_coverage - (1 - coverage)) < 1e-9 and abs(coverage - 0.5) > 1e-9:
        raise AssertionError("that is the share of images sent to a person; the coverage is the share answered.")
    asserts.close(got_coverage, coverage, 1e-6, "the coverage is the share of images whose highest probability is >= 0.95.")
    asserts.close(got_accuracy, accuracy, 1e-6, "the accuracy counts only the answered images.")


@trivial_answers("09.abstain")
def _abstain_trivial():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (60, 2))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = (rng.random(60) < probs[:, 1]).astype(int)
    context = {"probs": probs, "y": y}
    coverage, accuracy = _selective(probs, y)
    overall = float((probs.argmax(1) == y).mean())
    return [(0, context), (None, context), ((0.0, 0.0), context), ((1.0, overall), context),
            ((coverage, overall), context), ((1 - coverage, accuracy), context), ((1.0, 1.0), context),
            (overall, context)]


@checker("09.ece_bins")
def _ece(answer, probs=None, y=None):
    from ...evaluation import reliability

    expected = reliability(np.asarray(probs), np.asarray(y), bins=5)["ece"]
    answer = asserts.number(answer, "a float")
    if abs(answer - reliability(np.asarray(probs), np.asarray(y), bins=10)["ece"]) < 1e-12 and abs(answer - expected) > 1e-12:
        raise AssertionError("that is the ECE with 10 bins.")
    assert abs(answer - expected) < 1e-9, f"{answer:.4f} is not the ECE with 5 bins."


@trivial_answers("09.ece_bins")
def _ece_trivial():
    from ...evaluation import reliability

    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (80, 3))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in probs])   # labels drawn from the probabilities
    context = {"probs": probs, "y": y}
    ten_bins = reliability(probs, y, bins=10)["ece"]
    error = float((probs.argmax(1) != y).mean())
    return [(0, context), (0.0, context), (ten_bins, context), (error, context), (1.0, context)]
