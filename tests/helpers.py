"""Small data makers shared by several test files."""
from __future__ import annotations

import torch


def blobs(n=120, d=8, classes=3, seed=0, spread=0.3):
    """``(X, y)``: ``n`` points in ``d`` dimensions around one random centre per class."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g) * 3
    y = torch.arange(n) % classes
    X = centres[y] + spread * torch.randn(n, d, generator=g)
    return X, y
