"""A frozen network's forward pass made about twice as fast on a CPU without changing what it
computes beyond float rounding: an inference-only copy with every BatchNorm folded into the
convolution before it (in eval mode a BatchNorm is a per-channel affine map, so it can be
merged into that convolution's weights and bias) and weights and inputs in channels-last
memory layout (the layout the CPU convolution kernels are fastest in).

The copy is checked against the original on a sample of the real input; if the two disagree by
more than ``tol`` (a module this code does not understand), or anything fails, the original
network is used instead: plain PyTorch is the path that always works. Which path ran is logged
at debug level and returned.

Usage::

    from tl_course.models.fast import inference_model
    run, path = inference_model(backbone.model, x[:2])   # path: "bnfold+channels_last" or "eager"
    feats = run(x)
"""
from __future__ import annotations

import copy
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

FAST = "bnfold+channels_last"
"""Name of the fast path (part of the feature-cache keys of what it computes)."""
EAGER = "eager"
"""Name of the plain path: the network itself, in eval mode."""


def _conv_bn_pairs(model: nn.Module):
    """``(parent, conv, bn_name, bn)`` for every BatchNorm registered right after a Conv2d of
    the same width (module registration order: the course's backbones register each conv just
    before the BatchNorm that normalises its output; the numerical check guards the rest)."""
    for parent in model.modules():
        prev = None
        for name, child in parent.named_children():
            if (isinstance(prev, nn.Conv2d) and isinstance(child, nn.BatchNorm2d)
                    and child.running_mean is not None and prev.out_channels == child.num_features
                    and (type(child) is nn.BatchNorm2d or hasattr(child, "act"))):
                yield parent, prev, name, child
            prev = child


def _after_norm(bn: nn.BatchNorm2d) -> nn.Module:
    """What remains of a BatchNorm once folded: nothing, or (timm's ``BatchNormAct2d``) its
    dropout and activation."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    return nn.Sequential(getattr(bn, "drop", nn.Identity()), bn.act)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm into the convolution before it, **in place** (use on a
    copy): ``conv`` then ``bn`` becomes one ``conv`` with scaled weights and a bias. Returns
    ``model``.

    Usage: ``fused = fold_batchnorm(copy.deepcopy(model).eval())``
    """
    for parent, conv, name, bn in list(_conv_bn_pairs(model)):
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps) if bn.affine \
            else 1 / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.double() if bn.affine else torch.zeros_like(scale)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        w = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
        conv.weight = nn.Parameter(w.to(conv.weight.dtype), requires_grad=False)
        conv.bias = nn.Parameter(((bias - bn.running_mean.double()) * scale + shift).to(conv.weight.dtype),
                                 requires_grad=False)
        setattr(parent, name, _after_norm(bn))
    return model


class _ChannelsLast(nn.Module):
    """Runs ``network`` on its input in channels-last layout; outputs are made contiguous again
    (the layout of the plain path), so callers see no difference. ``network`` keeps the module
    names of the network it was copied from."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x):
        out = self.network(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)
        return out.contiguous() if isinstance(out, torch.Tensor) else out


def fast_copy(model: nn.Module) -> nn.Module:
    """An inference-only copy of ``model`` (left untouched): eval mode, BatchNorm folded,
    channels-last; ``.network`` is the folded copy, with the original's module names.
    Unchecked: prefer :func:`inference_model`.

    Usage: ``fast = fast_copy(bb.model)``
    """
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    fold_batchnorm(fast)
    return _ChannelsLast(fast.to(memory_format=torch.channels_last)).eval()


@torch.no_grad()
def inference_model(model: nn.Module, sample: torch.Tensor, *, enabled: bool = True,
                    tol: float = 1e-4) -> tuple[nn.Module, str]:
    """``(run, path)``: a module computing what ``model`` (in eval mode) computes, the fast copy
    of :func:`fast_copy` when it agrees with ``model`` on ``sample`` within ``tol`` (max abs,
    relative to the outputs' scale when that exceeds 1), else ``model`` itself (``path`` says
    which: :data:`FAST` or :data:`EAGER`). ``enabled=False``: always ``model``.

    Usage: ``run, path = inference_model(bb.model.eval(), x[:2]); y = run(x)``
    """
    if not enabled:
        return model, EAGER
    try:
        fast = fast_copy(model)
        want, got = model(sample), fast(sample)
        tensors = [(a, b) for a, b in zip(*(t if isinstance(t, (list, tuple)) else [t] for t in (want, got)))]
        worst = max(float((a.float() - b.float()).abs().max()) for a, b in tensors)
        scale = max(1.0, max(float(a.float().abs().max()) for a, _ in tensors))
        if not worst <= tol * scale:
            log.debug("fast forward differs by %.3g (tolerance %.3g): using the plain network", worst, tol * scale)
            return model, EAGER
    except Exception as err:  # noqa: BLE001 - any failure means the plain path
        log.debug("fast forward unavailable (%s: %s): using the plain network", type(err).__name__, err)
        return model, EAGER
    log.debug("fast forward (%s), max abs difference %.3g on the sample", FAST, worst)
    return fast, FAST
