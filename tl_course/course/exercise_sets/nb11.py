"""Exercises of notebook 11 (case study: pneumonia on chest X-rays)."""
import numpy as np

from .. import asserts
from ..exercises import checker, trivial_answers


@checker("11.balanced_accuracy")
def _balanced_accuracy(answer, probs=None, y=None):
    value = asserts.accuracy_value(answer)
    pred, y = np.asarray(probs).argmax(1), np.asarray(y)
    expected = float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))
    if abs(value - float(np.mean(pred == y))) < 1e-9 and abs(value - expected) > 1e-9:
        raise AssertionError("that is the plain accuracy: average the recall of each class instead.")
    asserts.close(value, expected, 1e-9, "compute the recall of each class (right / images of that class), "
                  "then their mean.")


@checker("11.freeze_top3")
def _freeze_top3(answer):
    from ...models import transfer
    from ...models.backbones import load_backbone

    bb = load_backbone("efficientnet_lite0", image_size=64)
    transfer.unfreeze_top(bb, 3)
    expected = transfer.count_parameters(bb.model)[0]
    total = transfer.count_parameters(bb.model)[1]
    asserts.exact(asserts.integer(answer), expected, "the number of parameters in the top 3 stages",
                  {total: "that is every parameter: freeze all of them first, then unfreeze only the top 3 stages.",
                   0: "nothing is trainable: after freezing, set requires_grad back to True in bb.stages[-3:]."})


@trivial_answers("11.balanced_accuracy")
def _():
    rng = np.random.default_rng(0)
    y = np.array([1] * 75 + [0] * 25)
    p1 = np.clip(0.35 + 0.4 * y + rng.normal(0, 0.25, len(y)), 0, 1)
    probs = np.stack([1 - p1, p1], 1)
    plain = float(np.mean(probs.argmax(1) == y))
    ctx = {"probs": probs, "y": y}
    return [(plain, ctx), (0.5, ctx), (1.0, ctx), (0.0, ctx), (float(y.mean()), ctx)]


@trivial_answers("11.freeze_top3")
def _():
    from ...models import transfer
    from ...models.backbones import load_backbone

    bb = load_backbone("efficientnet_lite0", image_size=64)
    total = transfer.count_parameters(bb.model)[1]
    transfer.unfreeze_top(bb, 1)
    top1 = transfer.count_parameters(bb.model)[0]
    return [(0, {}), (total, {}), (top1, {}), (3, {}), (-1, {})]
