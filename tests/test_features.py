"""tl_course.features: cached backbone features, keyed on weights + preprocessing + data content."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from tl_course.backbones import load_backbone
from tl_course.datasets import load_dataset, load_image_folder
from tl_course.features import extract_features, feature_cache_path
from tl_course.images import ImageError


@pytest.fixture(scope="module")
def bb():
    return load_backbone("efficientnet_lite0", image_size=64)


@pytest.fixture
def small(image_folder):
    root = image_folder({"a": 3, "b": 3}, size=(20, 16))
    return root, load_image_folder(root, check_images=False, val_fraction=0.34)


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

    monkeypatch.setattr(bb.model, "forward", boom)
    X2, y2 = extract_features(bb, data.train, progress=False)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
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
    blob = torch.load(path, weights_only=True)  # rewritten, valid
    assert torch.equal(blob["features"], X2) and torch.equal(blob["labels"], y2)


def test_inconsistent_cache_file_is_recomputed(bb, small):
    _, data = small
    path = feature_cache_path(bb, data.train)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features": torch.zeros(1, 1280), "labels": torch.zeros(1, dtype=torch.long)}, path)
    X, y = extract_features(bb, data.train, progress=False)
    assert X.shape[0] == len(data.train) and X.abs().sum() > 0


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
    with pytest.raises(KeyboardInterrupt):
        extract_features(bb, data.train, batch_size=2, progress=False)
    assert calls == [2, 2]
    assert _cache_files(isolated_env) == []


def test_in_memory_dataset(bb, digits_cache):
    val = load_dataset("digits").val.subset(range(6))
    X, y = extract_features(bb, val, progress=False)
    assert X.shape == (6, 1280) and y.tolist() == val.targets.tolist()
