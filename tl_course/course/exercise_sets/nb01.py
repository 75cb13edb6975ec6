"""Exercises of notebook 01 (why transfer? scratch vs pretrained)."""
from .. import asserts
from ..exercises import checker, trivial_answers
from ...probe import few_shot_accuracy
from ...models.transfer import truncate_backbone


def _features(stages: int | None):
    """digits_m features of Lite0 at image size 64: the first ``stages`` stages, or all of them."""
    from ...data import load_dataset
    from ...features import extract_features
    from ...models.backbones import load_backbone

    data = load_dataset("digits_m")
    backbone = load_backbone("efficientnet_lite0", image_size=64)
    if stages is not None:
        backbone = truncate_backbone(backbone, stages)
    F_train, y_train = extract_features(backbone, data.train, progress=False)
    F_val, y_val = extract_features(backbone, data.val, progress=False)
    return F_train, y_train, F_val, y_val


@checker("01.whole_backbone")
def _whole_backbone(answer):
    value = asserts.accuracy_value(answer)
    expected = few_shot_accuracy(*_features(None), per_class=5, seed=0)
    six = few_shot_accuracy(*_features(6), per_class=5, seed=0)
    if abs(value - six) <= 0.002 and abs(six - expected) > 0.01:
        raise AssertionError(f"{value:.3f} is what the first 6 stages give; keep all of the network's stages.")
    asserts.close(value, expected, 0.005, (
        "it is not what the whole network gives with these 5 examples per class; "
        "check the image size (64), the seed of few_shot_indices (0) and that you used all stages."))


@trivial_answers("01.whole_backbone")
def _whole_backbone_trivial():
    six = few_shot_accuracy(*_features(6), per_class=5, seed=0)
    return [(0, {}), (0.0, {}), (0.1, {}), (1.0, {}), (six, {}), (round(six, 3), {})]


def _one_shot(F_train, y_train, F_val, y_val):
    """The 1-NN accuracies with distances in float32 and in float64 (a near tie may differ), and the examples."""
    import torch

    from ...data import few_shot_indices

    idx = few_shot_indices(y_train, 1, seed=0)
    accs = {float((y_train[idx][torch.cdist(F_val.to(dtype), F_train[idx].to(dtype)).argmin(1)] == y_val).float().mean())
            for dtype in (torch.float32, torch.float64)}
    return sorted(accs), idx


@checker("01.one_shot_nearest")
def _one_shot_nearest(answer):
    value = asserts.accuracy_value(answer)
    F_train, y_train, F_val, y_val = _features(6)
    expected, _ = _one_shot(F_train, y_train, F_val, y_val)
    # one validation image is 1/450 of accuracy: the answer must count exactly the right images
    nearest = min(expected, key=lambda e: abs(e - value))
    asserts.close(value, nearest, 0.4 / len(y_val), (
        "it is not the 1-NN accuracy on these features; use the 6-stage features at image "
        "size 64, one example per class drawn with seed 0, and Euclidean distance."))


@trivial_answers("01.one_shot_nearest")
def _one_shot_nearest_trivial():
    from ...probe import probe_accuracy

    F_train, y_train, F_val, y_val = _features(6)
    _, idx = _one_shot(F_train, y_train, F_val, y_val)
    linear = probe_accuracy(F_train[idx], y_train[idx], F_val, y_val)  # the linear head on the same examples
    return [(0, {}), (0.0, {}), (0.1, {}), (1.0, {}), (linear, {}), (round(linear, 3), {})]
