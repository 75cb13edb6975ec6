"""Looking inside a backbone layer by layer: first-layer filters, feature maps, pooled features
after every stage (cached on disk like :func:`tl_course.features.extract_features`), linear
probes per depth, and a throughput measurement for choosing a backbone.

A backbone's ``stages`` run from the input to the output (for EfficientNet-Lite0: the stem, the
seven blocks, the final 1x1 convolution). "The output of a stage" is the output of its last
module, caught with a forward hook, so one forward pass yields every depth at once.

Usage::

    from tl_course.layers import stage_features, linear_probe
    feats, y = stage_features(bb, data.train)          # one (N, C_i * grid**2) tensor per stage
    acc = linear_probe(feats[3], y, val_feats[3], y_val)
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import settings, training
from .features import save_atomically

CACHE_VERSION = "1"


# --------------------------------------------------------------------------- stages and hooks
def _stage_output_module(stage: nn.Module) -> nn.Module:
    """The module whose output is the stage's output (the last one of a ``ModuleList``)."""
    while isinstance(stage, nn.ModuleList):
        stage = stage[len(stage) - 1]
    return stage


def stage_names(backbone) -> list[str]:
    """A readable name per stage, from the module names inside ``backbone.model``
    (``conv_stem+bn1``, ``blocks.0``, ..., ``conv_head+bn2`` for EfficientNet-Lite0).

    Usage: ``for i, name in enumerate(stage_names(bb)): print(i, name)``
    """
    names = {id(m): n for n, m in backbone.model.named_modules()}
    out = []
    for i, stage in enumerate(backbone.stages):
        if id(stage) in names and names[id(stage)]:
            out.append(names[id(stage)])
        elif isinstance(stage, nn.ModuleList):
            out.append("+".join(names.get(id(m), "?").split(".")[-1] for m in stage))
        else:
            out.append(f"stage{i}")
    return out


@contextmanager
def _capture(backbone):
    """Register forward hooks that store every stage's output (in order) in a list."""
    caught: list[torch.Tensor | None] = [None] * len(backbone.stages)
    handles = []
    for i, stage in enumerate(backbone.stages):
        def hook(_module, _inputs, output, i=i):
            caught[i] = output
        handles.append(_stage_output_module(stage).register_forward_hook(hook))
    try:
        yield caught
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def stage_outputs(backbone, x: torch.Tensor) -> list[torch.Tensor]:
    """The feature maps ``(N, C_i, H_i, W_i)`` after every stage for a batch of preprocessed images.

    Usage: ``maps = stage_outputs(bb, bb.transform(img).unsqueeze(0))``
    """
    model = backbone.model
    was_training = model.training
    model.eval()
    try:
        with _capture(backbone) as caught:
            model(x)
    finally:
        model.train(was_training)
    missing = [i for i, t in enumerate(caught) if t is None]
    if missing:
        raise RuntimeError(f"stages {missing} of {backbone.name} did not run in the forward pass.")
    return [t.detach().clone() for t in caught]


def feature_maps(backbone, image) -> list[torch.Tensor]:
    """The feature maps ``(C_i, H_i, W_i)`` after every stage for one PIL image, preprocessed as
    the backbone expects.

    Usage: ``maps = feature_maps(bb, Image.fromarray(skimage.data.chelsea()))``
    """
    return [m[0] for m in stage_outputs(backbone, backbone.transform(image).unsqueeze(0))]


def first_layer_filters(backbone) -> torch.Tensor:
    """The weights ``(out_channels, in_channels, k, k)`` of the backbone's first convolution:
    the only filters that look at pixels directly, so the only ones we can show as images.

    Usage: ``w = first_layer_filters(bb); w.shape  # (32, 3, 3, 3) for Lite0``
    """
    for module in backbone.model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().clone()
    raise ValueError(f"{backbone.name} has no Conv2d layer.")


def filters_as_images(weights: torch.Tensor) -> np.ndarray:
    """Each RGB filter scaled to 0..1 on its own (symmetric around 0, so grey = 0), as an
    ``(out, k, k, 3)`` array ready for ``imshow``.

    Usage: ``imgs = filters_as_images(first_layer_filters(bb))``
    """
    w = weights.float()
    if w.shape[1] != 3:
        raise ValueError(f"expected RGB filters (in_channels=3), got {w.shape[1]}.")
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return (0.5 + 0.5 * w / scale).permute(0, 2, 3, 1).numpy()


# --------------------------------------------------------------------------- pooled features per stage
def _pool(t: torch.Tensor, grid: int) -> torch.Tensor:
    """Average-pool to at most ``grid x grid`` cells (a smaller map is kept as is, not upsampled)."""
    size = (min(grid, t.shape[-2]), min(grid, t.shape[-1]))
    return torch.flatten(nn.functional.adaptive_avg_pool2d(t, size), 1)


def stage_cache_path(backbone, dataset, grid: int = 1) -> Path:
    """Where the per-stage features of ``dataset`` under ``backbone`` are (or will be) cached.

    Usage: ``stage_cache_path(bb, data.train).exists()``
    """
    key = hashlib.sha256(f"stages{CACHE_VERSION}|{grid}|{len(backbone.stages)}|{backbone.cache_key()}|"
                         f"{dataset.fingerprint()}".encode()).hexdigest()
    return settings.data_dir() / "features" / f"{backbone.name}-stages-{key[:24]}.pt"


def _load_cached(path: Path, n: int, n_stages: int):
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        feats, labels = list(blob["features"]), blob["labels"]
        if len(feats) == n_stages and labels.shape[0] == n and all(f.shape[0] == n for f in feats):
            return feats, labels
    except Exception:
        pass
    path.unlink(missing_ok=True)  # unreadable or inconsistent: recompute
    return None


@torch.inference_mode()
def stage_features(backbone, dataset, *, grid: int = 1, batch_size: int = 64, cache: bool = True,
                   progress: bool = True, device: str | None = None
                   ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Features after every stage of the backbone, average-pooled to a ``grid x grid`` map (or
    kept as is when the map is smaller) and flattened (``grid=1``: global average pooling, one
    number per channel), plus the labels.
    One forward pass per batch serves all stages; the result is cached on disk, keyed by the
    weights, preprocessing, ``grid`` and the dataset's contents.

    Usage: ``feats, y = stage_features(bb, data.train, grid=2); [f.shape for f in feats]``
    """
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}.")
    path = stage_cache_path(backbone, dataset, grid)
    if cache and path.exists():
        hit = _load_cached(path, len(dataset), len(backbone.stages))
        if hit is not None:
            return hit
    device = device or settings.device()
    model = backbone.model.to(device)
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset.with_transform(backbone.transform),
                                         batch_size=batch_size, shuffle=False)
    per_stage: list[list[torch.Tensor]] = [[] for _ in backbone.stages]
    labels = []
    try:
        with _capture(backbone) as caught:
            for x, y in tqdm(loader, desc=f"stage features {backbone.name}", disable=not progress,
                             unit="batch"):
                model(x.to(device))
                for i, t in enumerate(caught):
                    per_stage[i].append(_pool(t.float(), grid).cpu())
                labels.append(y)
    finally:
        model.train(was_training)
    feats = [torch.cat(chunks) for chunks in per_stage]
    y = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
    if cache:
        save_atomically({"features": feats, "labels": y}, path)
    return feats, y


# --------------------------------------------------------------------------- probes
def linear_probe(X_train, y_train, X_val, y_val, C: float = 1.0, max_iter: int = 2000,
                 sample_weight=None) -> float:
    """Validation accuracy of a linear classifier (standardised features, L2-regularised logistic
    regression, optionally with per-example ``sample_weight``) trained on frozen features: how
    linearly readable the labels are from them.

    Usage: ``acc = linear_probe(feats[4], y, val_feats[4], y_val)``
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    Xtr, Xva = np.asarray(X_train, dtype=np.float64), np.asarray(X_val, dtype=np.float64)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    with threadpool_limits(1):  # small solves: one BLAS thread is faster when cores are shared
        probe.fit(Xtr, np.asarray(y_train), logisticregression__sample_weight=sample_weight)
        return float(probe.score(Xva, np.asarray(y_val)))


def probe_stages(train_feats, y_train, val_feats, y_val, C: float = 1.0) -> list[float]:
    """:func:`linear_probe` at every depth: one validation accuracy per stage.

    Usage: ``accs = probe_stages(feats, y, val_feats, y_val)``
    """
    if len(train_feats) != len(val_feats):
        raise ValueError(f"{len(train_feats)} train stages but {len(val_feats)} val stages.")
    return [linear_probe(a, y_train, b, y_val, C=C) for a, b in zip(train_feats, val_feats)]


# --------------------------------------------------------------------------- speed
@torch.inference_mode()
def images_per_second(backbone, image_size: int | None = None, batch_size: int = 32,
                      batches: int = 3, device: str | None = None) -> float:
    """Forward-pass throughput of a backbone (or any image model), on random inputs after one
    warm-up batch, in images per second on this machine. Machine-dependent: report it, never
    assert on it.

    Usage: ``images_per_second(bb, image_size=224)``
    """
    if isinstance(backbone, nn.Module):
        model, size = backbone, image_size or 224
    else:
        model = backbone.model
        size = image_size or backbone.image_size or backbone.preprocessing.crop
    return training.images_per_second(model, (3, size, size), batch_size, batches, device)


def backbone_facts(name: str, image_size: int = 224, batch_size: int = 16, batches: int = 2) -> dict:
    """Size and speed of a registered backbone's *architecture*: parameters, feature dimension
    and images/s on this machine, plus whether its pretrained weights can be loaded right now.
    Size and speed do not depend on the weights, so they are measured (on a randomly initialised
    copy) even when the pretrained weights are not available offline.

    Usage: ``backbone_facts("resnet18")  # {'parameters': 11176512, 'feature_dim': 512, ...}``
    """
    from .backbones import BACKBONES, backbone_table, load_backbone

    row = {r["name"]: r for r in backbone_table()}[name]
    spec = BACKBONES[name]
    if row["available offline now"]:
        bb = load_backbone(name, image_size=image_size)
        model, dim = bb.model, bb.feature_dim
    else:
        from torchvision import models

        model, dim, _ = spec.base(getattr(models, name)(weights=None))
    n_params = sum(p.numel() for p in model.parameters())
    speed = images_per_second(model, image_size, batch_size=batch_size, batches=batches)
    return {"name": name, "parameters": n_params, "feature_dim": dim, "images_per_second": speed,
            "ImageNet top-1 (paper)": spec.paper_top1, "weights available": row["available offline now"],
            "how": row["how"]}


# --------------------------------------------------------------------------- pictures
def plot_filters(weights: torch.Tensor, ncols: int = 16, size: float = 0.6, title: str | None = None):
    """Show RGB first-layer filters as small images (grey = 0; each filter scaled on its own).

    Usage: ``plot_filters(first_layer_filters(bb))``
    """
    import matplotlib.pyplot as plt

    imgs = filters_as_images(weights)
    nrows = -(-len(imgs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img in zip(axes.flat, imgs):
        ax.imshow(img, interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.1)
    return fig


def plot_feature_maps(maps: list[torch.Tensor], stages: list[int], names: list[str] | None = None,
                      per_stage: int = 6, size: float = 1.3):
    """For each chosen stage, its ``per_stage`` most active channels (highest mean activation) as
    heat maps: one row per stage.

    Usage: ``plot_feature_maps(feature_maps(bb, img), stages=[0, 2, 4, 6])``
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(stages), per_stage, figsize=(size * per_stage, size * len(stages)),
                             squeeze=False)
    for row, i in zip(axes, stages):
        m = maps[i]
        top = torch.argsort(m.mean(dim=(1, 2)), descending=True)[:per_stage]
        for j, (ax, c) in enumerate(zip(row, top)):
            ax.imshow(m[c].numpy(), cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                label = names[i] if names else f"stage {i}"
                ax.set_ylabel(f"{i}: {label}\n{tuple(m.shape[1:])}", fontsize=7)
    fig.tight_layout(pad=0.2)
    return fig
