"""Exercises of notebook 00 (setup and tour)."""
from .. import asserts
from ..exercises import register


@register("00.feature_dim",
          "After dropping its ImageNet head, how many numbers does EfficientNet-Lite0 produce per image?",
          "an int: the length of the feature vector the base model outputs",
          "Load the base model with load_backbone('efficientnet_lite0') and look at .feature_dim, "
          "or at the in_features of the head it replaced.",
          "Every image becomes a vector of this length; a new head only needs to classify these vectors.")
def _feature_dim(answer):
    from ...models.backbones import load_backbone

    expected = load_backbone("efficientnet_lite0").feature_dim
    answer = asserts.integer(answer)
    assert answer == expected, (f"{answer} is not the feature size. (1000 is the number of "
                                "ImageNet classes: that is the head's output, which we drop.)"
                                if answer == 1000 else f"{answer} is not the feature size.")


@register("00.class_index",
          "What is the index of the ImageNet class 'tabby' in imagenet_classes()?",
          "an int between 0 and 999",
          "imagenet_classes() returns a list; Python lists have an .index() method.",
          "The model's 1000 outputs are scores in exactly this order.")
def _class_index(answer):
    from ...models.backbones import imagenet_classes

    names = imagenet_classes()
    answer = asserts.integer(answer)
    assert 0 <= answer < len(names), f"{answer} is outside 0..{len(names) - 1}."
    assert names[answer] == "tabby", f"index {answer} is {names[answer]!r}, not 'tabby'."
