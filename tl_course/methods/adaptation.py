"""Domain adaptation (transductive transfer): a labelled source domain, an unlabelled target
domain, and methods that make what is learned on the source work on the target.

- feature alignment by re-colouring: :func:`coral_align` (CORAL, Sun, Feng & Saenko 2016);
- alignment while training, as loss hooks for :func:`tl_course.train.fit`: :class:`CORALLoss`
  (Deep CORAL, Sun & Saenko 2016) and :class:`DANNLoss` (the gradient reversal layer and a
  domain classifier, Ganin & Lempitsky 2015), with :class:`AdaptationLoss` (source only) as the
  baseline they differ from by one term.

Instance reweighting (importance weights) is :mod:`tl_course.methods.shift`. The teaching pieces
(gradient reversal, CORAL) are written out by hand in a few lines.

Usage::

    from tl_course.methods.adaptation import coral_align, DANNLoss
    Xs_aligned = coral_align(X_source, X_target)
    fit(nn.Sequential(features, head), (Xs, ys), epochs=30, loss=DANNLoss(Xt, feature_dim=128), schedule="dann")
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..probe import as_numpy


class GradReverse(torch.autograd.Function):
    """The gradient reversal layer as an autograd function: identity forward, ``-lambd`` times the
    gradient backward. Use it through :func:`grad_reverse`.

    Usage: ``GradReverse.apply(x, 1.0)``
    """

    @staticmethod
    def forward(ctx, x, lambd):
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """The gradient reversal layer as a function: identity on the way forward, gradient multiplied
    by ``-lambd`` on the way back (Ganin & Lempitsky, 2015).

    Usage: ``domain_logits = domain_head(grad_reverse(features, lambd))``
    """
    return GradReverse.apply(x, float(lambd))


class GradientReversal(nn.Module):
    """:func:`grad_reverse` as a layer; set ``.lambd`` to change its strength during training.

    Usage: ``domain_head = nn.Sequential(GradientReversal(1.0), nn.Linear(64, 2))``
    """

    def __init__(self, lambd: float = 1.0):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return grad_reverse(x, self.lambd)

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}"


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """The DANN paper's schedule for the reversal strength: 0 at the start of training, rising
    smoothly to 1 (``2 / (1 + exp(-gamma * progress)) - 1``, ``progress`` in [0, 1]).

    Usage: ``grl.lambd = dann_lambda(step / total_steps)``
    """
    return float(2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


def covariance(x: torch.Tensor) -> torch.Tensor:
    """The (unbiased) covariance matrix ``(d, d)`` of the rows of ``x`` ``(n, d)``.

    Usage: ``C = covariance(features)``
    """
    xc = x - x.mean(0, keepdim=True)
    return xc.T @ xc / max(x.shape[0] - 1, 1)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL loss (Sun & Saenko, 2016): squared Frobenius distance between the feature
    covariances of a source and a target batch, divided by ``4 d^2``. Differentiable.

    Usage: ``loss = ce(head(fs), ys) + weight * coral_loss(fs, ft)``
    """
    d = source.shape[1]
    return ((covariance(source) - covariance(target)) ** 2).sum() / (4 * d * d)


def _sym_matrix_power(C: np.ndarray, power: float) -> np.ndarray:
    vals, vecs = np.linalg.eigh(C)
    return (vecs * np.clip(vals, 1e-12, None) ** power) @ vecs.T


def coral_align(source, target, eps: float = 1.0, apply_to=None) -> np.ndarray:
    """CORAL by re-colouring (Sun, Feng & Saenko, 2016): whiten the source features with their own
    covariance, colour them with the target's (both regularised by ``eps * I``) and move them to the
    target mean. A classifier trained on the result is then applied to the raw target features.
    ``apply_to`` maps other source-domain features (e.g. a validation split) with the same
    transformation, fitted on ``source``; by default the source features themselves are mapped.

    Usage: ``Xs_aligned = coral_align(X_source, X_target); clf.fit(Xs_aligned, y_source)``
    """
    Xs, Xt = as_numpy(source).astype(np.float64), as_numpy(target).astype(np.float64)
    X = Xs if apply_to is None else as_numpy(apply_to).astype(np.float64)
    eye = np.eye(Xs.shape[1])
    Cs = np.cov(Xs, rowvar=False) + eps * eye
    Ct = np.cov(Xt, rowvar=False) + eps * eye
    whitened = (X - Xs.mean(0)) @ _sym_matrix_power(Cs, -0.5)
    return whitened @ _sym_matrix_power(Ct, 0.5) + Xt.mean(0)


# --------------------------------------------------------------------------- loss hooks for fit()
class AdaptationLoss(nn.Module):
    """Source only, the baseline: cross-entropy of ``model = nn.Sequential(features, head)`` on a
    labelled source batch ``(x, y)`` (weighted by ``w`` when the batch is ``(x, y, w)``: instance
    weighting), plus an adaptation term that subclasses define on the source and target features
    of the step (a batch of ``target_x`` of the same size, drawn at random). Logs ``class_loss``
    and ``adapt_loss``.

    Usage: ``fit(nn.Sequential(features, head), (Xs, ys), loss=AdaptationLoss(Xt))``
    """

    uses_target = False

    def __init__(self, target_x: torch.Tensor, weight: float = 1.0):
        super().__init__()
        self.target_x = target_x
        self.weight = float(weight)

    def adaptation(self, fs: torch.Tensor, ft: torch.Tensor, step) -> torch.Tensor:
        """The adaptation term (none for source only)."""
        return fs.new_zeros(())

    def forward(self, model: nn.Module, batch, step):
        features, head = model[0], model[1]
        xs, ys = batch[0], batch[1]
        if self.uses_target:
            pick = torch.randint(len(self.target_x), (len(xs),), generator=step.generator)
            f = features(torch.cat([xs, self.target_x[pick].to(xs.device)]))
            fs, ft = f[:len(xs)], f[len(xs):]
        else:
            fs = features(xs)
            ft = None
        each = F.cross_entropy(head(fs), ys, reduction="none")
        class_loss = each.mean() if len(batch) < 3 else (batch[2] * each).sum() / batch[2].sum()
        adapt = self.adaptation(fs, ft, step)
        return class_loss + adapt, {"class_loss": class_loss, "adapt_loss": adapt}


class CORALLoss(AdaptationLoss):
    """Deep CORAL: source cross-entropy + ``weight * coral_loss`` between the source and target
    batch features.

    Usage: ``fit(net, (Xs, ys), loss=CORALLoss(Xt, weight=10.0))``
    """

    uses_target = True

    def adaptation(self, fs, ft, step):
        return self.weight * coral_loss(fs, ft)


class DANNLoss(AdaptationLoss):
    """DANN: source cross-entropy + the loss of a domain classifier (an MLP with ``hidden`` units
    over ``feature_dim`` features) fed through a gradient reversal layer whose strength follows
    :func:`dann_lambda` up to ``weight``: the domain classifier learns to tell the domains apart,
    the features learn to make that impossible. The domain classifier's parameters are trained by
    :func:`~tl_course.train.fit` along with the model.

    Usage: ``fit(net, (Xs, ys), loss=DANNLoss(Xt, feature_dim=128), schedule="dann")``
    """

    uses_target = True

    def __init__(self, target_x: torch.Tensor, feature_dim: int, weight: float = 1.0, hidden: int = 64):
        super().__init__(target_x, weight)
        self.domain_head = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def adaptation(self, fs, ft, step):
        lambd = self.weight * dann_lambda(step.progress)
        domain = torch.cat([torch.zeros(len(fs)), torch.ones(len(ft))]).long().to(fs.device)
        return F.cross_entropy(self.domain_head(grad_reverse(torch.cat([fs, ft]), lambd)), domain)
