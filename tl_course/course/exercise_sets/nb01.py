"""Exercises of notebook 01 (why transfer? scratch vs pretrained)."""
from .. import asserts
from ..exercises import register
from ...probe import probe_accuracy
from ...models.transfer import truncate_backbone



@register("01.whole_backbone",
          "Validation accuracy on digits_m of a linear probe on the features of the whole "
          "EfficientNet-Lite0 (all 9 stages, image size 64), with 5 labelled examples per class?",
          "a float: probe_accuracy(W_train[idx], y_train[idx], W_val, y_val) with "
          "idx = few_shot_indices(y_train, 5, seed=0)",
          "load_backbone('efficientnet_lite0', image_size=64), then extract_features on data.train "
          "and data.val; draw the examples with few_shot_indices(y_train, 5, seed=0).",
          "The last stages of an ImageNet network are the most ImageNet-specific: on 32-pixel digits "
          "the middle stages transfer better. Notebook 06 maps this layer by layer.")
def _whole_backbone(answer):
    from ...models.backbones import load_backbone
    from ...data import load_dataset
    from ...features import extract_features
    from ...data import few_shot_indices

    value = asserts.accuracy(answer)
    data = load_dataset("digits_m")
    whole = load_backbone("efficientnet_lite0", image_size=64)
    W_train, y_train = extract_features(whole, data.train, progress=False)
    W_val, y_val = extract_features(whole, data.val, progress=False)
    idx = few_shot_indices(y_train, 5, seed=0)
    expected = probe_accuracy(W_train[idx], y_train[idx], W_val, y_val)
    asserts.close(value, expected, 0.01, (
        f"{value:.3f} is not what the whole network gives with these 5 examples per class; "
        "check the image size (64), the seed of few_shot_indices (0) and that you used all stages."))


@register("01.one_shot_nearest",
          "With one labelled image per class, what validation accuracy does the 1-nearest-neighbour "
          "rule (Euclidean distance) reach on the frozen 6-stage Lite0 features of digits_m?",
          "a float: the fraction of validation images whose nearest labelled example (among "
          "few_shot_indices(y_train, 1, seed=0)) has the right class",
          "torch.cdist(F_val, F_train[idx]) gives all distances; .argmin(1) the nearest example; "
          "compare its label with y_val and average.",
          "Nearest-neighbour needs no training at all: with one example per class it does about as "
          "well as the linear head, and it only works to the extent that the pretrained features put "
          "images of the same digit close together.")
def _one_shot_nearest(answer):
    import torch

    from ...models.backbones import load_backbone
    from ...data import load_dataset
    from ...features import extract_features
    from ...data import few_shot_indices

    value = asserts.accuracy(answer)
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
