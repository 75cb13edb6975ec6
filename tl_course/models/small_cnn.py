"""Small networks trained from scratch: the baselines that transfer is measured against, the
students of distillation, and the multilayer perceptrons of adaptation methods.

Usage::

    from tl_course.models.small_cnn import SmallCNN, conv_trunk, mlp
    model = SmallCNN(in_channels=3, num_classes=10, seed=0)     # three conv blocks + linear head
    student = SmallCNN(num_classes=2, width=16, depth=4, dropout=0.2)
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def conv_trunk(in_channels: int, widths: Sequence[int] = (16, 32, 64), seed: int | None = None,
               batch_norm: bool = True) -> nn.Sequential:
    """Convolutional feature extractor: one conv-BatchNorm-ReLU-maxpool block per entry of
    ``widths`` (its channels), then global average pooling to a ``widths[-1]``-d vector.
    ``seed`` makes the random initial weights reproducible without touching the global RNG.
    ``batch_norm=False`` leaves BatchNorm out: its batch statistics mix whatever shares a batch
    (e.g. source and target images), which is itself a form of domain adaptation.

    Usage: ``trunk = conv_trunk(3, (16, 32, 64), seed=0); features = trunk(x)  # (N, 64)``
    """
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        blocks, c_in = [], in_channels
        for c_out in widths:
            norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm),
                                        *norm, nn.ReLU(), nn.MaxPool2d(2)))
            c_in = c_out
        return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class SmallCNN(nn.Module):
    """A small convolutional network: :func:`conv_trunk` with ``depth`` blocks of ``width``,
    ``2*width``, ``4*width``, ... channels, then (optionally dropout and) a linear head.
    ``features`` is the trunk (image -> ``feature_dim`` vector), ``head`` the classifier. Any
    input of at least ``2**depth`` pixels works. ``seed`` fixes the initial weights without
    touching the global random state (without it, they come from the global state, which is then
    left as it was).

    Usage: ``model = SmallCNN(in_channels=3, num_classes=10, seed=0); logits = model(x)``
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 16, depth: int = 3,
                 dropout: float = 0.0, seed: int | None = None):
        super().__init__()
        widths = [width * 2 ** i for i in range(depth)]
        self.feature_dim = widths[-1]
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.features = conv_trunk(in_channels, widths)
            linear = nn.Linear(self.feature_dim, num_classes)
            self.head = nn.Sequential(nn.Dropout(dropout), linear) if dropout else linear

    def forward(self, x):
        return self.head(self.features(x))


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """A ReLU multilayer perceptron, e.g. ``mlp([1280, 256, 10])`` (no activation after the last layer).

    Usage: ``net = mlp([1024, 128, 10])``
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
    return nn.Sequential(*layers)
