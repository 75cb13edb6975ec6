"""Parameter-efficient fine-tuning: keep the pretrained weights frozen and train only a few new or
selected parameters: the biases (BitFit, Zaken et al. 2021) or BatchNorm's affine parameters, or
a low-rank update ``B @ A`` added to a frozen weight (LoRA, Hu et al. 2021).

Usage::

    from tl_course.models.peft import add_lora, bitfit, train_batchnorm_only
    wrapped = add_lora(backbone.model.block6, rank=8)    # frozen block + trainable low-rank updates
    n = train_batchnorm_only(backbone.model)             # only BatchNorm weight/bias train
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from .transfer import BATCHNORM, count_parameters


# --------------------------------------------------------------------------- LoRA
class _LoRA(nn.Module):
    """What LoRAConv2d and LoRALinear share: the frozen ``base`` plus ``scale * up(down(x))``,
    with ``scale = alpha / rank``, ``down`` initialised like a fresh layer and ``up`` at zero (so
    the wrapped layer starts out computing exactly what its base did)."""

    def __init__(self, base: nn.Module, rank: int, alpha: float | None, down: nn.Module, up: nn.Module):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.scale = (alpha if alpha is not None else rank) / rank
        self.down, self.up = down, up
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.down.to(base.weight.device, base.weight.dtype)
        self.up.to(base.weight.device, base.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.up(self.down(x))

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scale={self.scale:g}"


def _check_rank(rank: int) -> None:
    if rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}.")


class LoRAConv2d(_LoRA):
    """A frozen ``nn.Conv2d`` plus a trainable low-rank update (LoRA, Hu et al. 2021)::

        y = base(x) + (alpha / rank) * up(down(x))

    ``down`` is a convolution with the base's kernel, stride and padding but only ``rank``
    output channels; ``up`` a 1x1 convolution back to the base's output channels. ``up`` starts
    at zero, so the wrapped layer computes exactly what the base did until training moves it.
    The update has ``rank * (in * k * k + out)`` parameters instead of ``in * out * k * k``, and
    :meth:`merged` folds it into one ordinary convolution (no extra cost at inference).
    Grouped (e.g. depthwise) convolutions are not supported.

    Usage: ``layer = LoRAConv2d(nn.Conv2d(192, 1152, 1), rank=8)``
    """

    def __init__(self, base: nn.Conv2d, rank: int = 4, alpha: float | None = None):
        if not isinstance(base, nn.Conv2d):
            raise TypeError(f"LoRAConv2d wraps an nn.Conv2d, got {type(base).__name__}.")
        if base.groups != 1:
            raise ValueError("LoRAConv2d does not support grouped (depthwise) convolutions.")
        _check_rank(rank)
        down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding,
                         base.dilation, bias=False, padding_mode=base.padding_mode)
        super().__init__(base, rank, alpha, down, nn.Conv2d(rank, base.out_channels, 1, bias=False))

    def delta_weight(self) -> torch.Tensor:
        """The update ``scale * B @ A`` in the shape of the base weight."""
        up = self.up.weight.flatten(1)                      # (out, rank)
        down = self.down.weight.flatten(1)                  # (rank, in*k*k)
        return (self.scale * up @ down).view_as(self.base.weight)

    @torch.no_grad()
    def merged(self) -> nn.Conv2d:
        """One plain ``nn.Conv2d`` computing the same function (base weight + update).

        Usage: ``conv = lora_layer.merged()``
        """
        b = self.base
        conv = nn.Conv2d(b.in_channels, b.out_channels, b.kernel_size, b.stride, b.padding,
                         b.dilation, b.groups, b.bias is not None, b.padding_mode)
        conv.to(b.weight.device, b.weight.dtype)
        conv.weight.copy_(b.weight + self.delta_weight())
        if b.bias is not None:
            conv.bias.copy_(b.bias)
        return conv


class LoRALinear(_LoRA):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / rank) * B @ A``
    (LoRA, Hu et al. 2021); ``B`` starts at zero, so the layer starts identical to its base.

    Usage: ``layer = LoRALinear(nn.Linear(768, 768), rank=8)``
    """

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float | None = None):
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}.")
        _check_rank(rank)
        super().__init__(base, rank, alpha, nn.Linear(base.in_features, rank, bias=False),
                         nn.Linear(rank, base.out_features, bias=False))

    def delta_weight(self) -> torch.Tensor:
        """The update ``scale * B @ A`` in the shape of the base weight."""
        return self.scale * self.up.weight @ self.down.weight

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """One plain ``nn.Linear`` computing the same function.

        Usage: ``linear = lora_layer.merged()``
        """
        b = self.base
        lin = nn.Linear(b.in_features, b.out_features, b.bias is not None).to(b.weight.device, b.weight.dtype)
        lin.weight.copy_(b.weight + self.delta_weight())
        if b.bias is not None:
            lin.bias.copy_(b.bias)
        return lin


def _eligible(module: nn.Module, pointwise_only: bool) -> bool:
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return not pointwise_only or tuple(module.kernel_size) == (1, 1)
    return False


def add_lora(modules: nn.Module | Iterable[nn.Module], rank: int = 4, alpha: float | None = None,
             pointwise_only: bool = True, freeze: bool = True) -> list[str]:
    """Replace, in place, every ``nn.Linear`` and (by default 1x1) ungrouped ``nn.Conv2d`` inside
    ``modules`` by a :class:`LoRALinear` / :class:`LoRAConv2d` wrapper. With ``freeze`` (the
    default) every existing parameter of ``modules`` is frozen first, so afterwards only the new
    low-rank factors are trainable there. Returns the qualified names of the wrapped layers.

    Usage: ``names = add_lora([bb.model.block6, bb.model.head_conv], rank=8)``
    """
    roots = [modules] if isinstance(modules, nn.Module) else list(modules)
    wrapped: list[str] = []
    for r, root in enumerate(roots):
        if freeze:
            for p in root.parameters():
                p.requires_grad_(False)
        targets = [(name, m) for name, m in root.named_modules()
                   if _eligible(m, pointwise_only) and not isinstance(m, (LoRAConv2d, LoRALinear))
                   and not name.endswith((".down", ".up")) and not _inside_lora(root, name)]
        for name, m in targets:
            parent_name, _, child = name.rpartition(".")
            parent = root.get_submodule(parent_name) if parent_name else root
            new = LoRALinear(m, rank, alpha) if isinstance(m, nn.Linear) else LoRAConv2d(m, rank, alpha)
            if name:
                setattr(parent, child, new)
            else:  # the root itself is a layer: it cannot replace itself in place
                raise ValueError("add_lora needs a container module; wrap a single layer with "
                                 "LoRAConv2d/LoRALinear directly.")
            wrapped.append(f"{r}.{name}" if len(roots) > 1 else name)
    return wrapped


def _inside_lora(root: nn.Module, name: str) -> bool:
    parts = name.split(".")
    for k in range(1, len(parts)):
        if isinstance(root.get_submodule(".".join(parts[:k])), (LoRAConv2d, LoRALinear)):
            return True
    return False


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The low-rank factors of every LoRA wrapper inside ``module``.

    Usage: ``torch.optim.AdamW(lora_parameters(model), lr=1e-3)``
    """
    return [p for m in module.modules() if isinstance(m, (LoRAConv2d, LoRALinear))
            for p in (*m.down.parameters(), *m.up.parameters())]


def merge_lora(module: nn.Module) -> int:
    """Replace, in place, every LoRA wrapper inside ``module`` by its merged plain layer; returns
    how many were merged. The function computed does not change.

    Usage: ``merge_lora(model)  # deploy without extra layers``
    """
    count = 0
    for name, m in list(module.named_modules()):
        if isinstance(m, (LoRAConv2d, LoRALinear)) and name:
            parent_name, _, child = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, child, m.merged())
            count += 1
    return count


# --------------------------------------------------------------------------- BitFit-style tuning
def bitfit(module: nn.Module) -> int:
    """BitFit (Zaken et al. 2021): freeze every parameter of ``module`` except the biases
    (including BatchNorm's shift). Returns the number of trainable parameters left.

    Usage: ``n = bitfit(backbone.model)``
    """
    for name, p in module.named_parameters():
        p.requires_grad_(name.rpartition(".")[2] == "bias")
    return count_parameters(module)[0]


def train_batchnorm_only(module: nn.Module) -> int:
    """Freeze every parameter of ``module`` except the BatchNorm affine parameters (scale
    ``weight`` and shift ``bias``): a BitFit-style variant for CNNs, whose convolutions often
    have no bias. Returns the number of trainable parameters left. Keep the BatchNorm *statistics*
    frozen while training them (e.g. ``TransferModel(..., bn_stats="frozen")``).

    Usage: ``n = train_batchnorm_only(backbone.model)``
    """
    for p in module.parameters():
        p.requires_grad_(False)
    for m in module.modules():
        if isinstance(m, BATCHNORM):
            for p in m.parameters(recurse=False):
                p.requires_grad_(True)
    return count_parameters(module)[0]
