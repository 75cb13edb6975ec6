"""Exercises of notebook 00 (setup and tour)."""
from .. import asserts
from ..exercises import checker, trivial_answers


@checker("00.feature_dim")
def _feature_dim(answer):
    from ...models.backbones import load_backbone

    expected = load_backbone("efficientnet_lite0").feature_dim
    answer = asserts.integer(answer)
    asserts.exact(answer, expected, "the length of the base model's feature vector", {
        1000: "1000 is the number of ImageNet classes: that is the head's output, which we dropped.",
        1: "1 is the batch size (the first dimension of the output); the feature length is the second.",
    })


@trivial_answers("00.feature_dim")
def _feature_dim_trivial():
    from ...models.backbones import load_imagenet_classifier

    model = load_imagenet_classifier("efficientnet_lite0")[0]
    n_params = sum(p.numel() for p in model.parameters())
    n_head = sum(p.numel() for p in model.get_classifier().parameters())
    return [(0, {}), (1, {}), (1000, {}), (n_params, {}), (n_head, {}), (224, {}), (3, {}), (1280.0, {})]


@checker("00.class_index")
def _class_index(answer):
    from ...models.backbones import imagenet_classes

    names = imagenet_classes()
    answer = asserts.integer(answer)
    assert 0 <= answer < len(names), f"{answer} is outside 0..{len(names) - 1}."
    assert names[answer] == "tabby", f"index {answer} is {names[answer]!r}, not 'tabby'."


@trivial_answers("00.class_index")
def _class_index_trivial():
    from ...models.backbones import imagenet_classes

    names = imagenet_classes()
    return [(0, {}), (-1, {}), (1000, {}), ("tabby", {}), (names.index("tiger cat"), {}),
            (names.index("tabby") + 1, {}), (float(names.index("tabby")), {})]
