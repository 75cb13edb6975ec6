"""The transfer steps as named functions: freeze, unfreeze the top N stages, add a head, list
what trains, and give each part its own learning rate.

A backbone can also be cut: :func:`truncate_backbone` keeps only its first stages (the generic
lower layers, without the most ImageNet-specific top ones).

Usage::

    from tl_course.models import transfer
    model = transfer.TransferModel(backbone, num_classes=2)     # base model + new head
    transfer.freeze(model.backbone)                              # step 3
    transfer.unfreeze_top(backbone, 2)                           # step 6: top 2 stages
    transfer.parameter_table(model)
    opt = torch.optim.AdamW(transfer.param_groups(model, head_lr=1e-3, backbone_lr=1e-4))
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
"""The BatchNorm layer types (their running statistics need care when fine-tuning)."""


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients for every parameter of ``module`` (returns it, for chaining).

    Usage: ``freeze(backbone.model)``
    """
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Make every parameter of ``module`` trainable again.

    Usage: ``unfreeze(model)``
    """
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def freeze_backbone(backbone) -> None:
    """Freeze the whole pretrained backbone (step 3).

    Usage: ``freeze_backbone(bb)``
    """
    freeze(backbone.model)


def unfreeze_top(backbone, n: int) -> list[nn.Module]:
    """Freeze the backbone, then unfreeze its top ``n`` stages (0 = none, ``len(stages)`` = all).
    Returns the unfrozen stages.

    Usage: ``unfreeze_top(bb, 2)  # fine-tune the last two stages``
    """
    if not 0 <= n <= len(backbone.stages):
        raise ValueError(f"n must be between 0 and {len(backbone.stages)} (the number of stages "
                         f"of {backbone.name}), got {n}.")
    freeze(backbone.model)
    top = backbone.stages[len(backbone.stages) - n:] if n else []
    for stage in top:
        unfreeze(stage)
    return top


def make_head(in_features: int, num_classes: int, kind: str = "linear", hidden: int = 256,
              dropout: float = 0.2) -> nn.Module:
    """A new trainable classification head (step 4): ``"linear"`` or ``"mlp"``.

    Usage: ``head = make_head(1280, 2, "mlp")``
    """
    if num_classes < 2:
        raise ValueError("A classifier needs at least 2 classes.")
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                             nn.Linear(hidden, num_classes))
    raise ValueError(f"Unknown head kind {kind!r}: use 'linear' or 'mlp'.")


class TransferModel(nn.Module):
    """A pretrained base model (no head) followed by a new head.

    With ``frozen_bn_eval=True`` (the default, and the fix for the BatchNorm pitfall), BatchNorm
    layers whose parameters are all frozen stay in eval mode when the model is put in training
    mode, so their running statistics are not overwritten by the new data. With
    ``bn_stats="frozen"`` every BatchNorm layer of the backbone keeps its pretrained statistics
    (recommended when fine-tuning on a small dataset with small batches); ``"train"`` updates all.

    ``backbone`` is a :class:`~tl_course.models.backbones.Backbone` or any ``nn.Module`` producing
    features (e.g. the top stages of one, ``bb.model[7:]``, with an existing ``head`` module).

    Usage: ``model = TransferModel(bb, num_classes=2, head="mlp")``
    """

    def __init__(self, backbone, num_classes: int, head: str | nn.Module = "linear",
                 frozen_bn_eval: bool = True, bn_stats: str = "auto"):
        super().__init__()
        if bn_stats not in ("auto", "frozen", "train"):
            raise ValueError("bn_stats must be 'auto', 'frozen' or 'train'.")
        self.bn_stats = bn_stats
        self.backbone = backbone.model if hasattr(backbone, "model") else backbone
        self.head = head if isinstance(head, nn.Module) else make_head(backbone.feature_dim, num_classes, head)
        self.frozen_bn_eval = frozen_bn_eval

    def forward(self, x):
        return self.head(self.backbone(x))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.bn_stats != "train":
            for m in self.backbone.modules():
                frozen = not any(p.requires_grad for p in m.parameters())
                if isinstance(m, BATCHNORM) and (self.bn_stats == "frozen" or (frozen and self.frozen_bn_eval)):
                    m.eval()
        return self


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts.

    Usage: ``trainable, total = count_parameters(model)``
    """
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def parameter_table(model: nn.Module, depth: int = 1) -> list[dict]:
    """Trainable vs frozen parameters per submodule (to ``depth`` levels of names), plus a total.

    Usage: ``for row in parameter_table(model): print(row)``
    """
    groups: dict[str, list[int]] = {}
    for name, p in model.named_parameters():
        key = ".".join(name.split(".")[:-1][:depth]) or name
        trainable, frozen = groups.get(key, [0, 0])
        groups[key] = [trainable + p.numel() * p.requires_grad, frozen + p.numel() * (not p.requires_grad)]
    rows = [{"module": k, "trainable": t, "frozen": f} for k, (t, f) in groups.items()]
    rows.append({"module": "TOTAL", "trainable": sum(r["trainable"] for r in rows),
                 "frozen": sum(r["frozen"] for r in rows)})
    return rows


def format_parameter_table(model: nn.Module, depth: int = 1) -> str:
    """:func:`parameter_table` as aligned text, for printing in a notebook.

    Usage: ``print(format_parameter_table(model, depth=2))``
    """
    rows = parameter_table(model, depth)
    width = max(len(r["module"]) for r in rows)
    lines = [f"{'module':<{width}}  {'trainable':>11}  {'frozen':>11}"]
    lines += [f"{r['module']:<{width}}  {r['trainable']:>11,}  {r['frozen']:>11,}" for r in rows]
    return "\n".join(lines)


def param_groups(model: TransferModel, head_lr: float, backbone_lr: float,
                 weight_decay: float = 0.0) -> list[dict]:
    """Optimizer parameter groups: the head at ``head_lr``, trainable backbone parameters at the
    (usually 10-100x lower) ``backbone_lr``. Frozen parameters are left out.

    Usage: ``torch.optim.AdamW(param_groups(model, 1e-3, 1e-4))``
    """
    head = [p for p in model.head.parameters() if p.requires_grad]
    body = [p for p in model.backbone.parameters() if p.requires_grad]
    groups = [{"params": head, "lr": head_lr, "weight_decay": weight_decay, "name": "head"}]
    if body:
        groups.append({"params": body, "lr": backbone_lr, "weight_decay": weight_decay, "name": "backbone"})
    return groups


def truncate_backbone(backbone, n_stages: int, pool: bool = True):
    """A copy of a :class:`~tl_course.models.backbones.Backbone` keeping only its first
    ``n_stages`` stages (then global average pooling, or with ``pool=False`` the feature maps
    themselves): the generic lower layers without the most ImageNet-specific top ones. Shares the
    weights; has its own name, so :func:`~tl_course.features.extract_features` caches its outputs
    separately.

    Usage: ``bb6 = truncate_backbone(load_backbone("efficientnet_lite0", image_size=64), 6)``
    """
    if not 1 <= n_stages <= len(backbone.stages):
        raise ValueError(f"n_stages must be between 1 and {len(backbone.stages)}, got {n_stages}.")
    stages = [s if not isinstance(s, nn.ModuleList) else nn.Sequential(*s) for s in backbone.stages[:n_stages]]
    bottom = nn.Sequential(*stages)
    model = (nn.Sequential(bottom, nn.AdaptiveAvgPool2d(1), nn.Flatten(1)) if pool else bottom).eval()
    size = backbone.image_size or backbone.preprocessing.crop
    with torch.no_grad():
        dim = int(model(torch.zeros(1, 3, size, size)).shape[1])
    name = f"{backbone.name}[:{n_stages}]" + ("" if pool else "-maps")
    return dataclasses.replace(backbone, name=name, model=model, feature_dim=dim, stages=stages,
                               notes=[*backbone.notes, f"first {n_stages} of {len(backbone.stages)} stages"])
