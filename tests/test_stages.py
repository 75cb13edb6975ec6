"""tl_course.models.stages: stage names and outputs, feature maps, first-layer filters (and their plots)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from tl_course import plots  # noqa: E402
from tl_course.models import stages as layers  # noqa: E402
from tl_course.models.backbones import load_backbone  # noqa: E402


@pytest.fixture(scope="module")
def bb():
    return load_backbone("efficientnet_lite0", image_size=64)


def test_stage_names(bb):
    names = layers.stage_names(bb)
    assert len(names) == len(bb.stages) == 9
    assert names[0] == "stem" and names[-1] == "head_conv" and names[1] == "block0"


def test_stage_outputs_shapes_and_last_stage_is_the_feature_map(bb):
    x = torch.randn(2, 3, 64, 64)
    maps = layers.stage_outputs(bb, x)
    assert [m.shape[-1] for m in maps] == [32, 32, 16, 8, 4, 4, 2, 2, 2]
    assert maps[-1].shape[1] == bb.feature_dim
    with torch.no_grad():
        pooled = bb.model(x)
    assert torch.allclose(maps[-1].mean(dim=(2, 3)), pooled, atol=1e-5)
    assert not bb.model.training  # eval mode kept


def test_hooks_are_removed(bb):
    layers.stage_outputs(bb, torch.zeros(1, 3, 64, 64))
    assert all(not m._forward_hooks for m in bb.model.modules())
    with pytest.raises(RuntimeError):
        with layers.capture_stage_outputs(bb) as caught:
            bb.model(torch.zeros(1, 3, 64, 64))
            assert len(caught) == 9
            raise RuntimeError("interrupted")
    assert all(not m._forward_hooks for m in bb.model.modules())  # removed on errors too


def test_feature_maps_of_one_image(bb):
    img = Image.fromarray(np.full((40, 40, 3), 128, np.uint8))
    maps = layers.feature_maps(bb, img)
    assert len(maps) == 9 and maps[0].dim() == 3 and maps[0].shape[0] == 32


def test_first_layer_filters_is_a_copy(bb):
    w = layers.first_layer_filters(bb)
    assert tuple(w.shape) == (32, 3, 3, 3)
    w.zero_()
    assert layers.first_layer_filters(bb).abs().sum() > 0


def test_filters_as_images_range():
    w = torch.tensor([[[[1.0, -1.0], [0.0, 0.5]]] * 3])  # one 3-channel 2x2 filter
    imgs = layers.filters_as_images(w)
    assert imgs.shape == (1, 2, 2, 3)
    assert imgs.min() >= 0 and imgs.max() <= 1
    assert imgs[0, 1, 0, 0] == pytest.approx(0.5)  # zero weight -> grey
    with pytest.raises(ValueError):
        layers.filters_as_images(torch.zeros(4, 1, 3, 3))


def test_plots(bb):
    fig = plots.plot_filters(layers.first_layer_filters(bb), title="t")
    assert len(fig.axes) == 32
    maps = layers.stage_outputs(bb, torch.zeros(1, 3, 64, 64))
    fig = plots.plot_feature_maps([m[0] for m in maps], stages=[0, 4], per_stage=3)
    assert len(fig.axes) == 6


def test_middle_stages_is_one_definition_for_truncation_and_stage_features(bb):
    from tl_course.models.transfer import truncate_backbone

    assert 0 < layers.MIDDLE_STAGES < len(bb.stages)
    assert layers.stage_names(bb)[layers.MIDDLE_STAGES - 1] == "block4"
    x = torch.randn(1, 3, 64, 64)
    middle = truncate_backbone(bb, layers.MIDDLE_STAGES)
    with torch.no_grad():
        pooled = middle.model(x)
    maps = layers.stage_outputs(bb, x)[layers.MIDDLE_STAGES - 1]
    assert torch.allclose(pooled, maps.mean(dim=(2, 3)), atol=1e-5)
