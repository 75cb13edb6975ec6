"""tl_course.layers: stage outputs, first-layer filters, cached per-stage features, probes, speed."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from tl_course import layers  # noqa: E402
from tl_course.backbones import load_backbone  # noqa: E402
from tl_course.datasets import load_dataset  # noqa: E402
from tl_course.features import extract_features  # noqa: E402


@pytest.fixture(scope="module")
def bb():
    return load_backbone("efficientnet_lite0", image_size=64)


@pytest.fixture
def tiny(digits_cache):
    return load_dataset("digits").val.subset(range(6))


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


@pytest.mark.parametrize("grid", [1, 4])
def test_stage_features_shapes(bb, tiny, grid):
    feats, y = layers.stage_features(bb, tiny, grid=grid, progress=False)
    sizes = [32, 32, 16, 8, 4, 4, 2, 2, 2]
    channels = [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert [f.shape for f in feats] == [(6, c * min(grid, s) ** 2) for c, s in zip(channels, sizes)]
    assert y.tolist() == tiny.targets.tolist()


def test_stage_features_last_stage_matches_extract_features(bb, tiny):
    feats, _ = layers.stage_features(bb, tiny, progress=False)
    X, _ = extract_features(bb, tiny, progress=False)
    assert torch.allclose(feats[-1], X, atol=1e-5)


def test_stage_features_cache_hit_and_corrupt_cache(bb, tiny, monkeypatch):
    first, _ = layers.stage_features(bb, tiny, progress=False)
    path = layers.stage_cache_path(bb, tiny)
    assert path.exists()

    def boom(*a, **k):
        raise AssertionError("the cache should have been used")

    with monkeypatch.context() as m:
        m.setattr(bb.model, "forward", boom)
        again, _ = layers.stage_features(bb, tiny, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    path.write_bytes(b"not a torch file")
    recomputed, _ = layers.stage_features(bb, tiny, progress=False)
    assert all(torch.allclose(a, b) for a, b in zip(first, recomputed))
    assert layers.stage_cache_path(bb, tiny, grid=2) != path


def test_stage_features_rejects_bad_grid(bb, tiny):
    with pytest.raises(ValueError, match="grid"):
        layers.stage_features(bb, tiny, grid=0, progress=False)


def test_linear_probe_and_weights():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(-3, 1, (40, 2)), rng.normal(3, 1, (40, 2))]
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    assert layers.linear_probe(X, y, X, y) == 1.0
    w = np.r_[np.ones(40), np.full(40, 1e-6)]  # class 1 almost ignored -> still fits, no crash
    assert 0.5 <= layers.linear_probe(X, y, X, y, sample_weight=w) <= 1.0
    accs = layers.probe_stages([X, X[:, :1]], y, [X, X[:, :1]], y)
    assert len(accs) == 2 and accs[0] == 1.0
    with pytest.raises(ValueError):
        layers.probe_stages([X], y, [X, X], y)


def test_images_per_second_positive(bb):
    assert layers.images_per_second(bb, image_size=32, batch_size=2, batches=1) > 0


def test_backbone_facts_without_weights():
    facts = layers.backbone_facts("resnet18", image_size=32, batch_size=2, batches=1)
    assert facts["weights available"] is False  # the test's TORCH_HOME is empty
    assert facts["parameters"] == 11_176_512 and facts["feature_dim"] == 512
    assert facts["images_per_second"] > 0 and "download" in facts["how"]


def test_plots(bb):
    fig = layers.plot_filters(layers.first_layer_filters(bb), title="t")
    assert len(fig.axes) == 32
    maps = layers.stage_outputs(bb, torch.zeros(1, 3, 64, 64))
    fig = layers.plot_feature_maps([m[0] for m in maps], stages=[0, 4], per_stage=3)
    assert len(fig.axes) == 6
