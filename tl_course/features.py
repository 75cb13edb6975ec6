"""Run a frozen backbone once per dataset and keep its features on disk.

A frozen backbone computes the same features every epoch, so the course computes them once and
trains heads on the cached tensors (seconds instead of minutes). The cache key combines the
backbone's weights and preprocessing with the dataset's contents (every image's bytes and
label), so a changed image, label or preprocessing never reuses a stale cache. Files are written
atomically (temporary file, then rename): an interrupted run leaves no partial cache.

Usage::

    from tl_course.features import extract_features
    X_train, y_train = extract_features(backbone, data.train)
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import settings

CACHE_VERSION = "1"


def feature_cache_path(backbone, dataset) -> Path:
    """Where the features of ``dataset`` under ``backbone`` are (or will be) cached.

    Usage: ``feature_cache_path(bb, data.train).exists()``
    """
    key = hashlib.sha256(f"{CACHE_VERSION}|{backbone.cache_key()}|{dataset.fingerprint()}".encode()).hexdigest()
    return settings.data_dir() / "features" / f"{backbone.name}-{key[:24]}.pt"


def _load_cached(path: Path, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        feats, labels = blob["features"], blob["labels"]
        count = feats.shape[1] if feats.dim() == 5 else feats.shape[0]  # (views, N, ...) or (N, ...)
        if count == n == labels.shape[0]:
            return feats, labels
    except Exception:
        pass
    path.unlink(missing_ok=True)  # unreadable or inconsistent: recompute
    return None


@torch.inference_mode()
def extract_features(backbone, dataset, *, batch_size: int = 32, cache: bool = True,
                     progress: bool = True, device: str | None = None,
                     num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(N, backbone.feature_dim)`` and labels ``(N,)`` of every image in ``dataset``,
    computed with the backbone in eval mode and its own preprocessing, cached on disk.

    Usage: ``X, y = extract_features(load_backbone("efficientnet_lite0"), data.val)``
    """
    path = feature_cache_path(backbone, dataset)
    if cache and path.exists():
        hit = _load_cached(path, len(dataset))
        if hit is not None:
            return hit
    device = device or settings.device()
    model = backbone.model.to(device)
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset.with_transform(backbone.transform),
                                         batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers)
    feats, labels = [], []
    try:
        for x, y in tqdm(loader, desc=f"features {backbone.name}", disable=not progress,
                         unit="batch"):
            feats.append(model(x.to(device)).float().cpu())
            labels.append(y)
    finally:
        model.train(was_training)
    X = torch.cat(feats) if feats else torch.empty(0, backbone.feature_dim)
    y = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
    if cache:
        save_atomically({"features": X, "labels": y}, path)
    return X, y


def save_atomically(obj, path: Path) -> None:
    """``torch.save`` into a temporary file beside ``path``, then rename: a crash or an interrupt
    never leaves a half-written cache file behind.

    Usage: ``save_atomically({"features": X, "labels": y}, cache_dir / "x.pt")``
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@torch.no_grad()  # not inference_mode: the maps feed training of the layers above
def extract_activations(backbone, dataset, stage: int, *, transform=None, views: int = 1,
                        seed: int = 0, batch_size: int = 32, cache: bool = True,
                        progress: bool = True, device: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps entering stage ``stage`` (i.e. the output of ``backbone.model[:stage]``) for
    every image, for ``views`` passes of ``transform`` (random augmentations differ per view,
    reproducibly from ``seed``); shape ``(views, N, C, H, W)``, plus labels ``(N,)``. Cached on
    disk like :func:`extract_features`.

    While the stages below ``stage`` are frozen, fine-tuning only needs these maps: the frozen
    bottom of the network runs once per view instead of once per epoch.

    Usage: ``acts, y = extract_activations(bb, data.train, 7, transform=bb.train_transform, views=4)``
    """
    transform = transform or backbone.transform
    key = hashlib.sha256(f"{CACHE_VERSION}|{backbone.cache_key()}|{dataset.fingerprint()}|stage={stage}|"
                         f"{transform!r}|views={views}|seed={seed}".encode()).hexdigest()
    path = settings.data_dir() / "features" / f"{backbone.name}-acts{stage}-{key[:24]}.pt"
    if cache and path.exists():
        hit = _load_cached(path, len(dataset))
        if hit is not None and hit[0].dim() == 5 and hit[0].shape[0] == views:
            return hit[0], hit[1]
    device = device or settings.device()
    bottom = backbone.model[:stage].to(device)
    was_training = bottom.training
    bottom.eval()
    all_views, labels = [], None
    try:
        for v in range(views):
            torch.manual_seed(seed * 1000 + v)  # the random augmentations of view v
            loader = torch.utils.data.DataLoader(dataset.with_transform(transform), batch_size=batch_size)
            maps, ys = [], []
            for x, y in tqdm(loader, desc=f"activations view {v + 1}/{views}", disable=not progress, unit="batch"):
                maps.append(bottom(x.to(device)).float().cpu())
                ys.append(y)
            all_views.append(torch.cat(maps))
            labels = torch.cat(ys)
    finally:
        bottom.train(was_training)
    acts = torch.stack(all_views)
    if cache:
        save_atomically({"features": acts, "labels": labels}, path)
    return acts, labels
