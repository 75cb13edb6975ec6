"""Exercises of notebook 01 (why transfer? scratch vs pretrained)."""
from .. import asserts
from ..exercises import checker
from ...probe import few_shot_accuracy
from ...models.transfer import truncate_backbone



@checker("01.whole_backbone")
def _whole_backbone(answer):
    from ...data import load_dataset
    from ...features import extract_features
    from ...models.backbones import load_backbone

    value = asserts.accuracy_value(answer)
    data = load_dataset("digits_m")
    whole = load_backbone("efficientnet_lite0", image_size=64)
    W_train, y_train = extract_features(whole, data.train, progress=False)
    W_val, y_val = extract_features(whole, data.val, progress=False)
    expected = few_shot_accuracy(W_train, y_train, W_val, y_val, per_class=5, seed=0)
    asserts.close(value, expected, 0.01, (
        f"{value:.3f} is not what the whole network gives with these 5 examples per class; "
        "check the image size (64), the seed of few_shot_indices (0) and that you used all stages."))


@checker("01.one_shot_nearest")
def _one_shot_nearest(answer):
    import torch

    from ...models.backbones import load_backbone
    from ...data import load_dataset
    from ...features import extract_features
    from ...data import few_shot_indices

    value = asserts.accuracy_value(answer)
    data = load_dataset("digits_m")
    backbone = truncate_backbone(load_backbone("efficientnet_lite0", image_size=64), 6)
    F_train, y_train = extract_features(backbone, data.train, progress=False)
    F_val, y_val = extract_features(backbone, data.val, progress=False)
    idx = few_shot_indices(y_train, 1, seed=0)
    nearest = torch.cdist(F_val.double(), F_train[idx].double()).argmin(1)
    expected = float((y_train[idx][nearest] == y_val).float().mean())
    asserts.close(value, expected, 0.005, (
        f"{value:.3f} is not the 1-NN accuracy on these features; use the 6-stage features at image "
        "size 64, one example per class drawn with seed 0, and Euclidean distance."))
