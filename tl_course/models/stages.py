"""A backbone's stages, from the input to the output: their names, their outputs (caught with
forward hooks, so one forward pass yields every depth at once), feature maps and the first-layer
filters.

A backbone's ``stages`` run from the input to the output (for EfficientNet-Lite0: the stem, the
seven blocks, the final 1x1 convolution). "The output of a stage" is the output of its last
module, caught with a forward hook, so one forward pass yields every depth at once.

Pooled features after every stage, cached, are :func:`tl_course.features.stage_features`.

Usage::

    from tl_course.models.stages import stage_names, feature_maps, MIDDLE_STAGES
    maps = feature_maps(bb, img)                       # one (C_i, H_i, W_i) map per stage
    truncate_backbone(bb, MIDDLE_STAGES)               # the course's "middle" of Lite0
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


MIDDLE_STAGES = 6
"""The course's one definition of "the middle" of EfficientNet-Lite0: its first 6 of 9 stages (the
stem and blocks 0-4), chosen once in notebook 01 and used as is elsewhere. As a truncation:
``truncate_backbone(bb, MIDDLE_STAGES)``; as a depth in :func:`tl_course.features.stage_features`:
index ``MIDDLE_STAGES - 1`` (``blocks.4``)."""


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
def capture_stage_outputs(backbone):
    """While open, every forward pass of ``backbone.model`` stores each stage's output (in order)
    in the yielded list; the hooks are removed on exit.

    Usage: ``with capture_stage_outputs(bb) as caught: bb.model(x)``
    """
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
        with capture_stage_outputs(backbone) as caught:
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
