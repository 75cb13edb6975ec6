"""A frozen backbone computes the same outputs every epoch, so the course runs it once per image
and keeps what it computed on disk: pooled features (:func:`extract_features`), features after
every stage (:func:`stage_features`), and the feature maps entering a stage for augmented views of
every image (:func:`extract_activations`, :func:`cached_views`), so that fine-tuning runs only the
unfrozen top each epoch. With ``fast=True`` the frozen forward pass runs through a faster
equivalent of the network (:mod:`tl_course.models.fast`: OpenVINO, or BatchNorm folded +
channels-last; outputs within 1e-4 of the plain network's, checked, plain PyTorch as the
fallback). That is the default, with which every notebook's outputs were made; ``fast=False``
runs the plain network (the reference the fast paths are checked against).

Every cache is keyed (see :mod:`tl_course.cache`) by the backbone's weights and preprocessing,
the dataset's contents (every image's bytes and label) and every argument, stored with a checksum
and written atomically: a changed image, label or preprocessing never reuses a stale file, and an
altered or truncated file is recomputed.

Usage::

    from tl_course.features import extract_features
    X_train, y_train = extract_features(backbone, data.train)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torchvision import transforms as T
from tqdm.auto import tqdm

from . import cache as disk
from . import settings
from .models.fast import EAGER, FAST, inference_model, planned_path
from .models.stages import capture_stage_outputs

log = logging.getLogger(__name__)


def _forward_key(fast: bool, runtime: bool = False) -> str:
    """The forward path planned, part of every feature-cache key: the fast paths' features differ
    from the plain network's by float rounding (~1e-5), and the paths are never mixed (a path
    that fails falls back to the next, whose features are within 1e-4 of the planned one's)."""
    return f"forward={planned_path(fast, runtime)}"


def feature_cache_path(backbone, dataset, *, fast: bool = True, runtime: bool = True) -> Path:
    """Where the features of ``dataset`` under ``backbone`` are (or will be) cached.

    Usage: ``feature_cache_path(bb, data.train).exists()``
    """
    return disk.cache_path("features", backbone.name, "features", _forward_key(fast, runtime), backbone.cache_key(),
                           dataset.fingerprint())


class _Forward:
    """The frozen forward pass of an extraction: chosen on the first batch by
    :func:`tl_course.models.fast.inference_model` (OpenVINO when ``runtime`` and installed, else
    the checked folded copy of ``model``, else ``model`` itself); ``path`` says which ran (also
    logged at debug level and stored in the cached file)."""

    def __init__(self, model, fast: bool, what: str, runtime: bool = False):
        self.model, self.fast, self.what, self.runtime = model, fast, what, runtime
        self.run, self.path = None, None

    def __call__(self, x):
        if self.run is None:
            self.run, self.path = inference_model(self.model, x[:2], enabled=self.fast, runtime=self.runtime)
            log.debug("%s: forward path %s", self.what, self.path)
        return self.run(x)


def preprocessed_batches(backbone, dataset, batch_size: int = 32):
    """``(x, y)`` batches of ``dataset`` under ``backbone``'s evaluation preprocessing, in order.
    Images are decoded (at reduced size, see ``Backbone.preprocessed``) in a background thread
    one batch ahead, so decoding overlaps the forward pass of the batch before (PIL releases the
    interpreter lock while it decodes and resizes).

    Usage: ``for x, y in preprocessed_batches(bb, data.val): ...``
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    ds = backbone.preprocessed(dataset)

    def load(start: int):
        items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        return torch.stack([x for x, _ in items]), torch.as_tensor([y for _, y in items], dtype=torch.long)

    with ThreadPoolExecutor(1, thread_name_prefix="decode") as pool:
        pending = deque()
        for start in range(0, len(ds), batch_size):
            pending.append(pool.submit(load, start))
            if len(pending) > 1:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _rows(n: int, dim: int | None = None, labels=None):
    """A cache check: ``features`` has ``n`` rows (of width ``dim``), all finite, and ``labels``
    ``n`` entries (equal to the dataset's own ``labels`` when given)."""
    def check(blob) -> bool:
        X, y = blob["features"], blob["labels"]
        return (X.shape[0] == n == y.shape[0] and (dim is None or X.shape[1] == dim)
                and bool(torch.isfinite(X).all())
                and (labels is None or torch.equal(y.cpu(), torch.as_tensor(labels, dtype=y.dtype))))
    return check


@torch.inference_mode()
def extract_features(backbone, dataset, *, batch_size: int = 32, cache: bool = True,
                     progress: bool = True, device: str | None = None,
                     fast: bool = True, runtime: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(N, backbone.feature_dim)`` and labels ``(N,)`` of every image in ``dataset``,
    computed with the backbone in eval mode and its own preprocessing, cached on disk
    (``cache=False``: computed, neither read nor written).

    By default (``fast=True``, ``runtime=True``, the path every notebook's outputs were made
    with) the backbone runs through OpenVINO where it is installed, else through a copy
    with BatchNorm folded into the convolutions and channels-last layout
    (:mod:`tl_course.models.fast`; 2-5x faster on a CPU, features equal to the plain network's
    within 1e-4, checked on the first batch), falling back to the plain network if neither can be
    made or agrees; ``runtime=False``: PyTorch only (the folded copy); ``fast=False``: the plain
    network. Each path's features are cached apart.

    Usage: ``X, y = extract_features(load_backbone("efficientnet_lite0"), data.val)``
    """
    path = feature_cache_path(backbone, dataset, fast=fast, runtime=runtime)
    if cache:
        hit = disk.load(path, check=_rows(len(dataset), backbone.feature_dim, getattr(dataset, "targets", None)))
        if hit is not None:
            return hit["features"], hit["labels"]
    device = device or settings.device()
    model = backbone.model.to(device)
    was_training = model.training
    model.eval()
    feats, labels = [], []
    batches = preprocessed_batches(backbone, dataset, batch_size)
    forward = _Forward(model, fast, f"features {backbone.name}", runtime=runtime)
    try:
        for x, y in tqdm(batches, desc=f"features {backbone.name}", disable=not progress, unit="batch",
                         total=-(-len(dataset) // batch_size)):
            feats.append(forward(x.to(device)).float().cpu())
            labels.append(y)
    finally:
        model.train(was_training)
    X = torch.cat(feats) if feats else torch.empty(0, backbone.feature_dim)
    y = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
    if cache:
        disk.save({"features": X, "labels": y, "forward": forward.path or EAGER}, path)
    return X, y


# --------------------------------------------------------------------------- features after every stage
def _pool(t: torch.Tensor, grid: int) -> torch.Tensor:
    """Average-pool to at most ``grid x grid`` cells (a smaller map is kept as is, not upsampled)."""
    size = (min(grid, t.shape[-2]), min(grid, t.shape[-1]))
    return torch.flatten(nn.functional.adaptive_avg_pool2d(t, size), 1)


@torch.inference_mode()
def stage_features(backbone, dataset, *, grid: int = 1, batch_size: int = 64, cache: bool = True,
                   progress: bool = True, device: str | None = None, fast: bool = True
                   ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Features after every stage of the backbone, average-pooled to a ``grid x grid`` map (or
    kept as is when the map is smaller) and flattened (``grid=1``: global average pooling, one
    number per channel), plus the labels. One forward pass per batch serves all stages;
    ``fast`` as in :func:`extract_features`.

    Usage: ``feats, y = stage_features(bb, data.train, grid=2); [f.shape for f in feats]``
    """
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}.")
    n_stages, n = len(backbone.stages), len(dataset)
    path = disk.cache_path("features", backbone.name, "stages", grid, n_stages, _forward_key(fast),
                           backbone.cache_key(), dataset.fingerprint())
    if cache:
        hit = disk.load(path, check=lambda b: len(b["features"]) == n_stages and b["labels"].shape[0] == n
                         and all(f.shape[0] == n and bool(torch.isfinite(f).all()) for f in b["features"]))
        if hit is not None:
            return list(hit["features"]), hit["labels"]
    device = device or settings.device()
    model = backbone.model.to(device)
    was_training = model.training
    model.eval()
    per_stage: list[list[torch.Tensor]] = [[] for _ in backbone.stages]
    labels = []
    forward = None
    try:
        for x, y in tqdm(preprocessed_batches(backbone, dataset, batch_size), disable=not progress,
                         desc=f"stage features {backbone.name}", unit="batch",
                         total=-(-len(dataset) // batch_size)):
            x = x.to(device)
            if forward is None:
                forward = _StagedForward(backbone, model, x[:2], fast)
            for i, t in enumerate(forward(x)):
                per_stage[i].append(_pool(t.float(), grid).cpu())
            labels.append(y)
    finally:
        model.train(was_training)
    feats = [torch.cat(chunks) for chunks in per_stage]
    y = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
    if cache:
        disk.save({"features": feats, "labels": y}, path)
    return feats, y


class _StagedForward:
    """Every stage's output for a batch: through the checked fast copy of ``model`` (hooked at
    the copies of the stages, found by module name) or, failing that, ``model`` itself."""

    def __init__(self, backbone, model, sample, fast: bool):
        run, self.path = inference_model(model, sample, enabled=fast)
        stages = backbone.stages
        if self.path == FAST:
            names = {id(m): name for name, m in model.named_modules()}
            try:
                stages = [run.network.get_submodule(names[id(s)]) for s in backbone.stages]
            except (KeyError, AttributeError):
                run, self.path = model, EAGER
        log.debug("stage features %s: forward path %s", backbone.name, self.path)
        self.run, self.stages = run, stages

    def __call__(self, x) -> list[torch.Tensor]:
        from types import SimpleNamespace

        with capture_stage_outputs(SimpleNamespace(stages=self.stages)) as caught:
            self.run(x)
        return list(caught)


# --------------------------------------------------------------------------- augmented views through the frozen bottom
@torch.no_grad()  # not inference_mode: the maps feed training of the layers above
def _bottom_views(backbone, dataset, stage: int, transforms: list, key: tuple, *, half: bool,
                  seed: int, batch_size: int, cache: bool, progress: bool,
                  device: str | None, fast: bool = True) -> dict:
    """The engine of :func:`extract_activations` and :func:`cached_views`: for view ``v``, every
    image through ``transforms[v]`` (seeded with ``seed * 1000 + v``; a transform may return
    ``(tensor, small uint8 image)``), then through the frozen ``backbone.model[:stage]``
    (its checked fast copy when ``fast``, see :func:`extract_features`).
    Returns ``{"acts": (V, N, C, H, W), "labels": (N,)[, "images": (V, N, 3, s, s)]}``, cached."""
    n, views = len(dataset), len(transforms)
    path = disk.cache_path("features", f"{backbone.name}-acts{stage}", *key, stage, views, seed, half,
                           f"decode>={backbone.resize_size}", _forward_key(fast),
                           backbone.cache_key(), dataset.fingerprint())
    if cache:
        hit = disk.load(path, check=lambda b: tuple(b["acts"].shape[:2]) == (views, n)
                         and b["labels"].shape[0] == n and bool(torch.isfinite(b["acts"]).all()))
        if hit is not None:
            return {**hit, "acts": hit["acts"].float()}
    device = device or settings.device()
    bottom = backbone.model[:stage].to(device)
    modes = [(m, m.training) for m in bottom.modules()]  # a fresh slice says nothing of its stages
    bottom.eval()
    forward = _Forward(bottom, fast, f"{backbone.name}[:{stage}]")
    all_acts, all_images, labels = [], [], None
    try:
        with torch.random.fork_rng(devices=[]):
            for v, transform in enumerate(transforms):
                torch.manual_seed(seed * 1000 + v)  # the random augmentations of view v
                loader = torch.utils.data.DataLoader(dataset.with_transform(transform, min_side=backbone.resize_size),
                                                     batch_size=batch_size)
                maps, small, ys = [], [], []
                for x, y in tqdm(loader, desc=f"{backbone.name}[:{stage}] view {v + 1}/{views}",
                                 disable=not progress, unit="batch"):
                    if isinstance(x, (list, tuple)):
                        x, s = x
                        small.append(s)
                    maps.append(forward(x.to(device)).float().cpu())
                    ys.append(y)
                all_acts.append(torch.cat(maps))
                if small:
                    all_images.append(torch.cat(small))
                labels = torch.cat(ys)
    finally:
        for m, mode in modes:
            m.train(mode)
    acts = torch.stack(all_acts)
    blob = {"acts": acts.half() if half else acts, "labels": labels}
    if all_images:
        blob["images"] = torch.stack(all_images)
    if cache:
        disk.save(blob, path)
    return {**blob, "acts": blob["acts"].float()}  # the precision of a cache hit: identical results


def extract_activations(backbone, dataset, stage: int, *, transform=None, views: int = 1,
                        seed: int = 0, batch_size: int = 32, cache: bool = True,
                        progress: bool = True, device: str | None = None,
                        fast: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps entering stage ``stage`` (i.e. the output of ``backbone.model[:stage]``) for
    every image, for ``views`` passes of ``transform`` (default: the evaluation preprocessing;
    random augmentations differ per view, reproducibly from ``seed``); shape
    ``(views, N, C, H, W)``, plus labels ``(N,)``. Cached on disk.

    While the stages below ``stage`` are frozen, fine-tuning only needs these maps: the frozen
    bottom of the network runs once per view instead of once per epoch.

    Usage: ``acts, y = extract_activations(bb, data.train, 7, transform=bb.train_transform, views=4)``
    """
    transform = transform or backbone.transform
    out = _bottom_views(backbone, dataset, stage, [transform] * views, ("acts", repr(transform)), half=False,
                        seed=seed, batch_size=batch_size, cache=cache, progress=progress,
                        device=device, fast=fast)
    return out["acts"], out["labels"]


@dataclass
class Views:
    """``views`` versions of every image of a dataset, seen twice: at the backbone's resolution
    through its frozen bottom (``acts``, the feature maps entering stage ``stage``) and as small
    ``uint8`` images for a student (``images``). View 0 is the evaluation crop; the others are
    random crops (and flips). The two are the *same* crops, so a teacher's outputs computed from
    ``acts`` are its outputs on exactly what the student sees."""

    acts: torch.Tensor      # (views, N, C, H, W) float32
    images: torch.Tensor    # (views, N, 3, s, s) uint8
    labels: torch.Tensor    # (N,)
    mean: tuple
    std: tuple

    @property
    def num_views(self) -> int:
        return self.acts.shape[0]

    def student_inputs(self) -> torch.Tensor:
        """All views as normalised float images ``(views * N, 3, s, s)`` (view-major order).

        Usage: ``X = views.student_inputs(); y = views.all_labels()``
        """
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (self.images.flatten(0, 1).float() / 255 - mean) / std

    def activations(self) -> torch.Tensor:
        """All views' feature maps ``(views * N, C, H, W)``, in the order of :meth:`student_inputs`."""
        return self.acts.flatten(0, 1)

    def all_labels(self) -> torch.Tensor:
        """``labels`` repeated once per view, in the order of :meth:`student_inputs`."""
        return self.labels.repeat(self.num_views)


class _ViewCrop:
    """One view of an image: the evaluation crop (``random=False``) or a random resized crop
    (area in ``scale``) mirrored at random with ``flip``; returns the normalised crop and a
    ``student_size`` uint8 copy of the same crop."""

    def __init__(self, prep, crop: int, random: bool, scale: tuple, flip: bool, student_size: int):
        self.prep, self.crop, self.random, self.scale, self.flip = prep, crop, random, scale, flip
        self.student_size = student_size
        self.resize = int(round(crop * prep.resize / prep.crop))
        self.interp = T.InterpolationMode(prep.interpolation)
        self.normalize = T.Normalize(prep.mean, prep.std)

    def __call__(self, img: Image.Image):
        if not self.random:
            c = TF.center_crop(TF.resize(img, self.resize, interpolation=self.interp), self.crop)
        else:
            i, j, h, w = T.RandomResizedCrop.get_params(img, list(self.scale), [3 / 4, 4 / 3])
            c = TF.resized_crop(img, i, j, h, w, [self.crop, self.crop], interpolation=self.interp)
            if self.flip and float(torch.rand(())) < 0.5:
                c = TF.hflip(c)
        small = torch.from_numpy(np.array(c.resize((self.student_size,) * 2, Image.Resampling.BICUBIC)))
        return self.normalize(TF.to_tensor(c)), small.permute(2, 0, 1)

    def __repr__(self) -> str:
        return (f"ViewCrop(crop={self.crop}, random={self.random}, scale={self.scale}, flip={self.flip}, "
                f"student={self.student_size}, prep={self.prep.key()})")


def cached_views(backbone, dataset, stage: int, *, views: int = 4, student_size: int = 64,
                 flip: bool = True, scale: tuple = (0.35, 1.0), seed: int = 0, batch_size: int = 32,
                 cache: bool = True, progress: bool = True, fast: bool = True) -> Views:
    """Make ``views`` crops of every image of ``dataset`` (view 0: the backbone's evaluation
    crop; views 1..: random resized crops with area in ``scale``, mirrored at random with
    ``flip``), reproducibly from ``seed``. Returns them as :class:`Views`: the feature maps the
    frozen ``backbone.model[:stage]`` makes of them, and ``student_size`` pixel copies for a
    small student. Cached on disk, so the frozen bottom runs once per view, ever.

    Usage: ``v = cached_views(bb, data.train, 7, views=4, student_size=64)``
    """
    prep = backbone.preprocessing
    crop = backbone.image_size or prep.crop
    crops = [_ViewCrop(prep, crop, v > 0, tuple(scale), flip, student_size) for v in range(views)]
    out = _bottom_views(backbone, dataset, stage, crops, ("views", repr(crops)), half=True, seed=seed,
                        batch_size=batch_size, cache=cache, progress=progress, device=None, fast=fast)
    return Views(out["acts"], out["images"], out["labels"], prep.mean, prep.std)
