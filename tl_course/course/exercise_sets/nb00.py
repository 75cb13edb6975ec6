"""Exercises of notebook 00 (setup and tour)."""
from .. import asserts
from ..exercises import checker


@checker("00.feature_dim")
def _feature_dim(answer):
    from ...models.backbones import load_backbone

    expected = load_backbone("efficientnet_lite0").feature_dim
    answer = asserts.integer(answer)
    assert answer == expected, (f"{answer} is not the feature size. (1000 is the number of "
                                "ImageNet classes: that is the head's output, which we drop.)"
                                if answer == 1000 else f"{answer} is not the feature size.")


@checker("00.class_index")
def _class_index(answer):
    from ...models.backbones import imagenet_classes

    names = imagenet_classes()
    answer = asserts.integer(answer)
    assert 0 <= answer < len(names), f"{answer} is outside 0..{len(names) - 1}."
    assert names[answer] == "tabby", f"index {answer} is {names[answer]!r}, not 'tabby'."
