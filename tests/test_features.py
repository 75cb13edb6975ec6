"""tl_course.features: cached backbone features, keyed on weights + preprocessing + data content."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from torch import nn

from tl_course import cache, features
from tl_course.data import load_dataset
from tl_course.data.folder import load_image_folder
from tl_course.data.images import ImageError
from tl_course.features import cached_views, extract_features, feature_cache_path, stage_features
from tl_course.models.backbones import load_backbone


@pytest.fixture(scope="module")
def bb():
    return load_backbone("efficientnet_lite0", image_size=64)


@pytest.fixture
def small(image_folder):
    root = image_folder({"a": 3, "b": 3}, size=(20, 16))
    return root, load_image_folder(root, check_images=False, val_fraction=0.34)


@pytest.fixture
def tiny(digits_cache):
    return load_dataset("digits").val.subset(range(6))


def _cache_files(isolated_env):
    folder = isolated_env / "features"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_features_shape_and_values(bb, small, isolated_env):
    _, data = small
    X, y = extract_features(bb, data.train, batch_size=2, progress=False)
    assert X.shape == (len(data.train), 1280) and X.dtype == torch.float32
    assert y.tolist() == data.train.targets.tolist()
    with torch.no_grad():
        direct = bb.model(bb.transform(data.train.image(1)).unsqueeze(0))[0]
    torch.testing.assert_close(X[1], direct, rtol=1e-4, atol=1e-4)
    assert _cache_files(isolated_env) == [feature_cache_path(bb, data.train).name]
    assert not bb.model.training  # left as it was


def test_second_call_hits_the_cache(bb, small, monkeypatch):
    _, data = small
    X1, y1 = extract_features(bb, data.train, progress=False)

    def boom(*args, **kwargs):
        raise AssertionError("the backbone ran although the features are cached")

    monkeypatch.setattr(features._Forward, "__call__", boom)  # every forward path goes through it
    X2, y2 = extract_features(bb, data.train, progress=False)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    with pytest.raises(AssertionError, match="the backbone ran"):  # the patch bites when the cache is bypassed
        extract_features(bb, data.train, cache=False, progress=False)
    reloaded = load_image_folder(small[0], check_images=False, val_fraction=0.34)
    X3, _ = extract_features(bb, reloaded.train, progress=False)  # same content, new object
    assert torch.equal(X1, X3)


def test_cache_false_writes_nothing(bb, small, isolated_env):
    _, data = small
    X, _ = extract_features(bb, data.val, cache=False, progress=False)
    assert X.shape[0] == len(data.val)
    assert _cache_files(isolated_env) == []


def test_changed_image_uses_another_cache_file(bb, small, make_img):
    root, data = small
    before = feature_cache_path(bb, data.train)
    X1, _ = extract_features(bb, data.train, progress=False)
    make_img(data.train.paths[0], colour=(0, 0, 255), size=(20, 16), seed=999)
    changed = load_image_folder(root, check_images=False, val_fraction=0.34)
    after = feature_cache_path(bb, changed.train)
    assert after != before
    X2, _ = extract_features(bb, changed.train, progress=False)
    assert not torch.allclose(X1[0], X2[0])
    torch.testing.assert_close(X1[1:], X2[1:])  # the other images are unchanged


def test_changed_preprocessing_uses_another_cache_file(bb, small, isolated_env):
    _, data = small
    bigger = dataclasses.replace(bb, image_size=96)
    assert feature_cache_path(bb, data.train) != feature_cache_path(bigger, data.train)
    X64, _ = extract_features(bb, data.train, progress=False)
    X96, _ = extract_features(bigger, data.train, progress=False)
    assert X64.shape == X96.shape and not torch.allclose(X64, X96)
    assert len(_cache_files(isolated_env)) == 2


def test_corrupt_cache_file_is_recomputed(bb, small):
    _, data = small
    X1, _ = extract_features(bb, data.train, progress=False)
    path = feature_cache_path(bb, data.train)
    path.write_bytes(b"not a torch file")
    X2, y2 = extract_features(bb, data.train, progress=False)
    torch.testing.assert_close(X1, X2)
    blob = cache.load(path)  # rewritten, valid (checksummed)
    assert torch.equal(blob["features"], X2) and torch.equal(blob["labels"], y2)
    assert torch.load(path, weights_only=True)["format"].startswith("tl_course.cache/")


def test_altered_cache_file_is_recomputed(bb, small):
    _, data = small
    X1, _ = extract_features(bb, data.train, progress=False)
    path = feature_cache_path(bb, data.train)
    blob = torch.load(path, weights_only=True)
    blob["data"]["features"] = torch.zeros_like(blob["data"]["features"])  # checksum no longer matches
    torch.save(blob, path)
    X2, _ = extract_features(bb, data.train, progress=False)
    torch.testing.assert_close(X1, X2)


def test_inconsistent_cache_file_is_recomputed(bb, small):
    _, data = small
    path = feature_cache_path(bb, data.train)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features": torch.zeros(1, 1280), "labels": torch.zeros(1, dtype=torch.long)}, path)
    X, y = extract_features(bb, data.train, progress=False)  # a foreign file
    assert X.shape[0] == len(data.train) and X.abs().sum() > 0
    cache.save({"features": torch.zeros(1, 1280), "labels": torch.zeros(1, dtype=torch.long)}, path)
    X, y = extract_features(bb, data.train, progress=False)  # well-formed, but the wrong number of rows
    assert X.shape[0] == len(data.train) and X.abs().sum() > 0


def _flip(blob):
    blob["labels"] = 1 - blob["labels"]


def _nan(blob):
    blob["features"][0, 0] = float("nan")


def _narrow(blob):
    blob["features"] = blob["features"][:, :100]


@pytest.mark.parametrize("tamper", [_flip, _nan, _narrow], ids=["flipped labels", "NaN", "wrong width"])
def test_a_well_checksummed_but_wrong_cache_is_recomputed(bb, small, tamper):
    """A cache rewritten with a valid checksum (by another version, a bug or on purpose) is still
    checked against the dataset: its labels, the backbone's width, finite values."""
    _, data = small
    X1, y1 = extract_features(bb, data.train, progress=False)
    path = feature_cache_path(bb, data.train)
    blob = cache.load(path)
    tamper(blob)
    cache.save(blob, path)
    X2, y2 = extract_features(bb, data.train, progress=False)
    torch.testing.assert_close(X1, X2)
    assert y2.tolist() == data.train.targets.tolist()


def test_unreadable_image_mid_extraction_leaves_no_cache(bb, small, isolated_env):
    _, data = small
    data.train.paths[-1].write_bytes(b"corrupted after the dataset was loaded")
    with pytest.raises(ImageError, match="not an image"):
        extract_features(bb, data.train, batch_size=2, progress=False)
    assert _cache_files(isolated_env) == []
    assert not bb.model.training


def test_interrupt_mid_extraction_leaves_no_cache(bb, small, isolated_env, monkeypatch):
    _, data = small
    calls = []
    original = bb.model.forward

    def flaky(x):
        calls.append(len(x))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(x)

    monkeypatch.setattr(bb.model, "forward", flaky)
    with pytest.raises(KeyboardInterrupt):  # the plain path runs bb.model.forward itself, batch by batch
        extract_features(bb, data.train, batch_size=2, progress=False, fast=False)
    assert calls == [2, 2]
    assert _cache_files(isolated_env) == []


def test_in_memory_dataset(bb, digits_cache):
    val = load_dataset("digits").val.subset(range(6))
    X, y = extract_features(bb, val, progress=False)
    assert X.shape == (6, 1280) and y.tolist() == val.targets.tolist()


# --------------------------------------------------------------------------- features after every stage
@pytest.mark.parametrize("grid", [1, 4])
def test_stage_features_shapes(bb, tiny, grid):
    feats, y = stage_features(bb, tiny, grid=grid, progress=False)
    sizes = [32, 32, 16, 8, 4, 4, 2, 2, 2]
    channels = [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert [f.shape for f in feats] == [(6, c * min(grid, s) ** 2) for c, s in zip(channels, sizes)]
    assert y.tolist() == tiny.targets.tolist()


def test_stage_features_last_stage_matches_extract_features(bb, tiny):
    feats, _ = stage_features(bb, tiny, progress=False)
    X, _ = extract_features(bb, tiny, progress=False)
    # two fast paths (OpenVINO for pooled features, the folded copy for stages), each within 1e-4 of plain
    assert torch.allclose(feats[-1], X, atol=1e-4)


def test_stage_features_cache_hit_and_corrupt_cache(bb, tiny, monkeypatch, isolated_env):
    first, _ = stage_features(bb, tiny, progress=False)
    (path,) = (p for p in (isolated_env / "features").glob("efficientnet_lite0-*.pt"))

    def boom(*a, **k):
        raise AssertionError("the cache should have been used")

    with monkeypatch.context() as m:
        m.setattr(features._StagedForward, "__call__", boom)  # every forward path goes through it
        again, _ = stage_features(bb, tiny, progress=False)
        with pytest.raises(AssertionError, match="cache should have been used"):
            stage_features(bb, tiny, cache=False, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    path.write_bytes(b"not a torch file")
    recomputed, _ = stage_features(bb, tiny, progress=False)
    assert all(torch.allclose(a, b) for a, b in zip(first, recomputed))
    stage_features(bb, tiny, grid=2, progress=False)  # another grid: another file
    assert len(list((isolated_env / "features").glob("efficientnet_lite0-*.pt"))) == 2
    stage_features(bb, tiny, grid=3, cache=False, progress=False)
    assert len(list((isolated_env / "features").glob("efficientnet_lite0-*.pt"))) == 2


def test_stage_features_rejects_bad_grid(bb, tiny):
    with pytest.raises(ValueError, match="grid"):
        stage_features(bb, tiny, grid=0, progress=False)


# --------------------------------------------------------------------------- cached views
def _tiny_backbone():
    from collections import OrderedDict

    from tl_course.models.backbones import Backbone, Preprocessing

    torch.manual_seed(7)
    stages = [("stem", nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU())),
              ("block", nn.Sequential(nn.Conv2d(4, 6, 1), nn.BatchNorm2d(6), nn.ReLU()))]
    model = nn.Sequential(OrderedDict(stages + [("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)))]))
    return Backbone("tiny", model.eval(), 6, Preprocessing(resize=36, crop=32, interpolation="bilinear"),
                    [model.stem, model.block], "random", "tiny-weights")


def _tiny_dataset(n=6):
    import numpy as np

    from tl_course.data import ImageDataset

    rng = np.random.default_rng(0)
    return ImageDataset(rng.integers(0, 255, (n, 40, 48, 3), dtype=np.uint8), np.arange(n) % 2, ["a", "b"])


def test_cached_views_shapes_view0_and_cache(isolated_env):
    bb, ds = _tiny_backbone(), _tiny_dataset()
    v = cached_views(bb, ds, 1, views=3, student_size=8, seed=0, progress=False)
    assert v.acts.shape == (3, 6, 4, 16, 16) and v.images.shape == (3, 6, 3, 8, 8)
    assert v.images.dtype == torch.uint8 and torch.equal(v.labels, torch.tensor([0, 1, 0, 1, 0, 1]))
    with torch.no_grad():   # view 0 is exactly the evaluation crop through the frozen bottom
        ref = bb.model[:1](torch.stack([bb.transform(ds.image(i)) for i in range(len(ds))]))
    assert torch.allclose(v.acts[0], ref, atol=1e-2)
    assert not torch.allclose(v.acts[1], v.acts[0])           # random crops differ from view 0
    assert v.student_inputs().shape == (18, 3, 8, 8) and v.all_labels().shape == (18,)
    assert v.activations().shape == (18, 4, 16, 16)
    files = list((isolated_env / "features").glob("tiny-acts1-*.pt"))
    assert len(files) == 1
    again = cached_views(bb, ds, 1, views=3, student_size=8, seed=0, progress=False)
    assert torch.equal(again.acts, v.acts) and torch.equal(again.images, v.images)
    fresh = cached_views(bb, ds, 1, views=3, student_size=8, seed=0, cache=False, progress=False)
    assert torch.allclose(fresh.acts, v.acts, atol=1e-2) and torch.equal(fresh.images, v.images)  # reproducible
    other = cached_views(bb, ds, 1, views=3, student_size=8, seed=1, progress=False)
    assert torch.allclose(other.acts[0], v.acts[0]) and not torch.allclose(other.acts[1], v.acts[1])
    assert len(list((isolated_env / "features").glob("tiny-acts1-*.pt"))) == 2


def test_cached_views_leaves_global_rng_alone(isolated_env):
    bb, ds = _tiny_backbone(), _tiny_dataset(2)
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    cached_views(bb, ds, 1, views=2, student_size=8, cache=False, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_cached_views_recomputes_a_corrupt_cache(isolated_env):
    bb, ds = _tiny_backbone(), _tiny_dataset(2)
    v = cached_views(bb, ds, 1, views=2, student_size=8, progress=False)
    (path,) = list((isolated_env / "features").glob("tiny-acts1-*.pt"))
    path.write_bytes(b"not a torch file")
    again = cached_views(bb, ds, 1, views=2, student_size=8, progress=False)
    assert torch.equal(again.acts, v.acts)


def test_cached_views_restores_every_module_mode(isolated_env):
    bb, ds = _tiny_backbone(), _tiny_dataset(2)
    bb.model.stem[1].train()                      # a mixed state, restored as it was
    before = [m.training for m in bb.model.modules()]
    cached_views(bb, ds, 2, views=1, student_size=8, cache=False, progress=False)
    assert [m.training for m in bb.model.modules()] == before
