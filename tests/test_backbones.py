"""tl_course.models.backbones: the registry, the offline EfficientNet-Lite0, checkpoints of the wrong architecture, and
torchvision weights fetched (hash-checked) from a local HTTP server."""
from __future__ import annotations

import hashlib
import io

import pytest
import torch
from torchvision import models

from tl_course.models import backbones
from tl_course.models.backbones import (BACKBONES, BackboneSpec, BackboneUnavailable, CheckpointMismatch,
                                        Preprocessing, backbone_from, backbone_table, imagenet_classes, imagenet_top_k, load_backbone, load_checkpoint,
                                        load_imagenet_classifier, map_state_dict, register_backbone,
                                        torchvision_checkpoint)


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0", image_size=64)


@pytest.fixture(scope="module")
def resnet18_bytes():
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(models.resnet18(weights=None).state_dict(), buf)
    return buf.getvalue()


@pytest.fixture
def resnet18_file(tmp_path, resnet18_bytes):
    path = tmp_path / "resnet18_random.pth"
    path.write_bytes(resnet18_bytes)
    return path


def test_lite0_loads_offline(lite0, monkeypatch):
    assert lite0.name == "efficientnet_lite0"
    assert lite0.feature_dim == 1280
    assert not lite0.model.training
    assert lite0.weights_sha256 == backbones.LITE0_SHA256
    assert len(lite0.stages) >= 3
    stage_params = sum(p.numel() for s in lite0.stages for p in s.parameters())
    assert stage_params == lite0.num_parameters()  # the stages cover the whole base model
    assert "1280-d features" in repr(lite0)


def test_lite0_features_shape(lite0):
    torch.manual_seed(0)
    with torch.no_grad():
        out = lite0.model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1280)
    assert torch.isfinite(out).all()


def test_transforms_follow_image_size(lite0):
    from PIL import Image

    img = Image.new("RGB", (100, 50), (10, 20, 30))
    assert lite0.transform(img).shape == (3, 64, 64)
    assert lite0.train_transform(img).shape == (3, 64, 64)
    assert lite0.preprocessing.transform()(img).shape == (3, 224, 224)
    assert lite0.preprocessing.key(64) != lite0.preprocessing.key(96)


def test_cache_key_changes_with_image_size(lite0):
    other = backbones.Backbone(lite0.name, lite0.model, lite0.feature_dim, lite0.preprocessing,
                               lite0.stages, lite0.weights, lite0.weights_sha256, image_size=96)
    assert other.cache_key() != lite0.cache_key()
    assert lite0.weights_sha256 in lite0.cache_key()


def test_imagenet_classes():
    names = imagenet_classes()
    assert len(names) == 1000 and len(set(names)) >= 998
    assert names[281] == "tabby"


def test_imagenet_classifier_recognises_a_cat():
    import skimage.data
    from PIL import Image

    model, transform, names = load_imagenet_classifier()
    assert len(names) == 1000
    top = imagenet_top_k(model, transform, Image.fromarray(skimage.data.chelsea()), k=3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    assert {"tabby", "tiger cat", "Egyptian cat"} & {name for name, _ in top}, top


def test_unknown_backbone():
    with pytest.raises(KeyError, match="Known: efficientnet_lite0"):
        load_backbone("vgg99")


# --------------------------------------------------------------------------- bad checkpoints
def test_checkpoint_of_another_architecture_is_refused(resnet18_file):
    import timm

    lite = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    with pytest.raises(CheckpointMismatch, match="another architecture"):
        map_state_dict(load_checkpoint(resnet18_file), lite)
    with pytest.raises(CheckpointMismatch, match="another architecture"):
        backbones.efficientnet_lite0(checkpoint=resnet18_file)


def test_checkpoint_with_same_count_but_wrong_shapes_is_refused():
    import timm

    lite = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    state = dict(lite.state_dict())
    first = next(iter(state))
    state[first] = torch.zeros(7, 7)
    with pytest.raises(CheckpointMismatch, match=rf"{first}.*shape \(7, 7\)"):
        map_state_dict(state, lite)
    head = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=10)
    with pytest.raises(CheckpointMismatch, match="wrong architecture"):
        map_state_dict(lite.state_dict(), head)


def test_map_state_dict_renames_keys_in_order():
    src = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    dst = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 4), "b": torch.nn.Linear(4, 2)})
    mapped = map_state_dict(src.state_dict(), dst)
    assert list(mapped) == list(dst.state_dict())
    dst.load_state_dict(mapped)
    assert torch.equal(dst["b"].weight, src[1].weight)


def test_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(CheckpointMismatch, match="not a loadable PyTorch state dict"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointMismatch):
        backbones.efficientnet_lite0(checkpoint=bad)


def test_truncated_checkpoint(tmp_path, resnet18_bytes):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(resnet18_bytes[: len(resnet18_bytes) // 3])
    with pytest.raises(CheckpointMismatch):
        load_checkpoint(cut)


def test_checkpoint_without_tensors(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointMismatch, match="does not hold a state dict of tensors"):
        load_checkpoint(tmp_path / "meta.pth")


def test_pickled_object_is_refused(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # a whole module: needs unpickling code
    with pytest.raises(CheckpointMismatch):
        load_checkpoint(tmp_path / "module.pth")


def test_nested_state_dict_is_unwrapped(tmp_path):
    lin = torch.nn.Linear(2, 3)
    torch.save({"state_dict": lin.state_dict(), "epoch": 5}, tmp_path / "ckpt.pth")
    state = load_checkpoint(tmp_path / "ckpt.pth")
    assert set(state) == {"weight", "bias"} and torch.equal(state["weight"], lin.weight)


def test_corrupt_installed_lite0_is_detected(monkeypatch):
    monkeypatch.setattr(backbones, "LITE0_SHA256", "0" * 64)
    with pytest.raises(CheckpointMismatch, match="reinstall"):
        backbones.efficientnet_lite0()


# --------------------------------------------------------------------------- torchvision weights
def test_torchvision_checkpoint_from_local_server(tmp_path, http_server, resnet18_bytes):
    sha = hashlib.sha256(resnet18_bytes).hexdigest()
    url = http_server.add(f"models/resnet18-{sha[:8]}.pth", resnet18_bytes)
    path = torchvision_checkpoint("resnet18", url=url)
    assert path == tmp_path / "torch_home" / "hub" / "checkpoints" / f"resnet18-{sha[:8]}.pth"
    assert path.read_bytes() == resnet18_bytes
    model = models.resnet18(weights=None)
    model.load_state_dict(load_checkpoint(path))  # the served weights are usable
    assert torchvision_checkpoint("resnet18", url=url) == path
    assert len(http_server.requests) == 1  # cached: not fetched again


def test_torchvision_checkpoint_with_wrong_hash_is_refused(tmp_path, http_server, resnet18_bytes):
    sha = hashlib.sha256(resnet18_bytes).hexdigest()
    wrong = "0" * 8 if not sha.startswith("0" * 8) else "f" * 8
    url = http_server.add(f"resnet18-{wrong}.pth", resnet18_bytes)
    with pytest.raises(BackboneUnavailable, match="Checksum mismatch") as info:
        torchvision_checkpoint("resnet18", url=url)
    assert "efficientnet_lite0" in str(info.value)
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_torchvision_interrupted_download(tmp_path, http_server, resnet18_bytes):
    sha = hashlib.sha256(resnet18_bytes).hexdigest()
    url = http_server.add(f"resnet18-{sha[:8]}.pth", resnet18_bytes, interrupted=True)
    with pytest.raises(BackboneUnavailable, match="interrupted"):
        torchvision_checkpoint("resnet18", url=url)
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_resnet18_offline_without_cache_names_the_offline_choice(monkeypatch):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    with pytest.raises(BackboneUnavailable, match="efficientnet_lite0") as info:
        load_backbone("resnet18")
    assert "TL_COURSE_OFFLINE" in str(info.value)


@pytest.mark.parametrize("name,dim,n_stages", [("resnet18", 512, 5), ("mobilenet_v3_large", 960, 17)])
def test_torchvision_backbones_from_cached_weights(tmp_path, monkeypatch, name, dim, n_stages):
    path = tmp_path / f"{name}.pth"
    torch.manual_seed(0)
    torch.save(getattr(models, name)(weights=None).state_dict(), path)
    monkeypatch.setattr(backbones, "torchvision_checkpoint", lambda n, url=None: path)
    bb = load_backbone(name, image_size=64)
    assert (bb.feature_dim, len(bb.stages)) == (dim, n_stages)
    with torch.no_grad():
        assert bb.model(torch.randn(2, 3, 64, 64)).shape == (2, dim)


def test_torchvision_cached_weights_of_another_architecture(tmp_path, monkeypatch, resnet18_file):
    monkeypatch.setattr(backbones, "torchvision_checkpoint", lambda n, url=None: resnet18_file)
    with pytest.raises(CheckpointMismatch, match="mobilenet_v3_large"):
        load_backbone("mobilenet_v3_large")


def test_backbone_table(tmp_path):
    rows = {r["name"]: r for r in backbone_table()}
    assert set(rows) == {"efficientnet_lite0", "resnet18", "mobilenet_v3_large"}
    for row in rows.values():
        assert set(row) == {"name", "weights", "ImageNet top-1 (paper)", "available offline now", "how"}
        assert 50 < row["ImageNet top-1 (paper)"] < 90
    assert rows["efficientnet_lite0"]["available offline now"] is True
    assert rows["resnet18"]["available offline now"] is False  # empty TORCH_HOME
    cached = tmp_path / "torch_home" / "hub" / "checkpoints"
    cached.mkdir(parents=True)
    (cached / models.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]).write_bytes(b"x")
    rows = {r["name"]: r for r in backbone_table()}
    assert rows["resnet18"]["available offline now"] is True
    assert rows["resnet18"]["how"] == "cached in TORCH_HOME"


# --------------------------------------------------------------------------- registry
def test_registry_entries_are_specs():
    assert list(BACKBONES) == ["efficientnet_lite0", "resnet18", "mobilenet_v3_large"]
    for name, spec in BACKBONES.items():
        assert isinstance(spec, BackboneSpec) and spec.name == name
        assert isinstance(spec.preprocessing, Preprocessing) and isinstance(spec.weights_id(), str)
    assert BACKBONES["efficientnet_lite0"].offline and not BACKBONES["resnet18"].offline
    assert BACKBONES["efficientnet_lite0"].weights_id() == backbones.LITE0_SHA256


@pytest.mark.parametrize("name,dim", [("efficientnet_lite0", 1280), ("resnet18", 512)])
def test_architecture_without_pretrained_weights_needs_no_download(monkeypatch, name, dim):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    monkeypatch.setattr(backbones, "torchvision_checkpoint", lambda *a, **k: pytest.fail("downloaded"))
    monkeypatch.setattr(backbones, "lite0_checkpoint_path", lambda: pytest.fail("read the weights"))
    spec = BACKBONES[name]
    classifier = spec.classifier(False)
    stages, feature_dim = spec.stages(classifier)
    assert feature_dim == dim and all(isinstance(n, str) for n, _ in stages)
    prep = Preprocessing(resize=40, crop=32, interpolation="bilinear")
    bb = backbone_from(name, classifier, image_size=48, preprocessing=prep)
    assert bb.preprocessing == prep and bb.image_size == 48 and bb.feature_dim == dim
    assert backbone_from(name, spec.classifier(False)).preprocessing == spec.preprocessing
    with torch.no_grad():
        assert bb.model(torch.randn(1, 3, 32, 32)).shape == (1, dim)


def test_register_backbone_decorator(monkeypatch):
    monkeypatch.setattr(backbones, "BACKBONES", dict(BACKBONES))

    def stages(c):
        return [("conv", c[0]), ("relu", c[1])], 4

    @register_backbone("toy", stages=stages, preprocessing=Preprocessing(), weights="none", paper_top1=1.0,
                       offline=True, weights_id=lambda: "toy-v1")
    def toy(pretrained: bool = True):
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Linear(4, 2))

    assert backbones.BACKBONES["toy"].classifier is toy and "toy" not in BACKBONES
    bb = load_backbone("toy")
    assert bb.name == "toy" and len(bb.stages) == 2 and bb.weights_sha256 == "toy-v1"
    assert bb.model(torch.randn(1, 3, 8, 8)).shape == (1, 4)


def test_backbone_facts_without_weights():
    facts = backbones.backbone_facts("resnet18", image_size=32, batch_size=2, batches=1)
    assert facts["weights available"] is False  # the test's TORCH_HOME is empty
    assert facts["parameters"] == 11_176_512 and facts["feature_dim"] == 512
    assert facts["images_per_second"] > 0 and "download" in facts["how"]


def test_random_backbone_is_seeded_and_never_shares_the_pretrained_cache(lite0):
    from tl_course.models.backbones import random_backbone

    state = torch.random.get_rng_state()
    a, b, c = (random_backbone("efficientnet_lite0", seed=s, image_size=64) for s in (1, 1, 2))
    assert torch.equal(torch.random.get_rng_state(), state), "the global random state is left alone"
    first = lambda bb: next(iter(bb.model.parameters()))  # noqa: E731
    assert torch.equal(first(a), first(b)) and not torch.equal(first(a), first(c))
    assert not torch.equal(first(a), first(lite0))
    keys = {lite0.cache_key(), a.cache_key(), c.cache_key()}
    assert len(keys) == 3 and a.cache_key() == b.cache_key()
    assert "random" in a.weights and a.feature_dim == lite0.feature_dim and len(a.stages) == len(lite0.stages)
