"""Inductive transfer between tasks that share their inputs: multi-task learning (one trunk, one
head per task, trained together) and self-taught learning from a pretext task that needs no
human label (rotation prediction, Gidaris et al. 2018).

Usage::

    from tl_course.methods.multitask import MultiTask, fit_multitask, rotations
    model = MultiTask(trunk, {"digit": nn.Linear(64, 10), "parity": nn.Linear(64, 2)})
    fit_multitask(model, {"digit": (Xa, ya), "parity": (Xb, yb)}, steps=300)
    X_rot, y_rot = rotations(X_unlabelled)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..train import History, fit


class MultiTask(nn.Module):
    """One shared ``trunk`` and one head per task: ``model(x, task)`` are the logits of ``task``;
    ``model.for_task(task)`` is the single-task network ``trunk -> head``.

    Usage: ``model = MultiTask(trunk, {"digit": nn.Linear(64, 10)}); model(x, "digit")``
    """

    def __init__(self, trunk: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        return self.heads[task](self.trunk(x))

    def for_task(self, task: str) -> nn.Sequential:
        """``trunk -> heads[task]`` as one network (sharing the weights)."""
        return nn.Sequential(self.trunk, self.heads[task])


class MultiTaskLoss:
    """A loss hook for :func:`~tl_course.train.fit` with no training set of its own: every step
    draws one batch (with replacement, ``batch_size``) of every task's labelled examples
    ``tasks[name] = (X, y)`` and sums their (``weights``-weighted) cross-entropies, so a task with
    20 labels is seen as often as one with 1000. Logs ``<task>_loss``.

    Usage: ``fit(model, None, epochs=6, steps_per_epoch=50, loss=MultiTaskLoss(tasks))``
    """

    def __init__(self, tasks: dict, batch_size: int = 64, weights: dict | None = None):
        self.tasks, self.batch_size, self.weights = tasks, batch_size, weights or {}

    def __call__(self, model: MultiTask, batch, step):
        total, logs = 0.0, {}
        for name, (X, y) in self.tasks.items():
            idx = torch.randint(len(X), (min(self.batch_size, len(X)),), generator=step.generator)
            loss = F.cross_entropy(model(X[idx].to(step.device), name), torch.as_tensor(y)[idx].to(step.device))
            total = total + self.weights.get(name, 1.0) * loss
            logs[f"{name}_loss"] = loss
        return total, logs


def fit_multitask(model: MultiTask, tasks: dict, *, steps: int = 300, batch_size: int = 64, lr: float = 3e-3,
                  weight_decay: float = 1e-4, task_weights: dict | None = None, seed: int = 0,
                  log_every: int = 50) -> History:
    """Train ``model`` on all ``tasks`` at once for ``steps`` optimizer steps (AdamW, cosine decay
    to zero, one thread) with :class:`MultiTaskLoss`; one history row per ``log_every`` steps.
    With a single task this is ordinary training.

    Usage: ``fit_multitask(MultiTask(trunk, heads), {"digit": (Xa, ya), "parity": (Xb, yb)})``
    """
    if steps % log_every:
        raise ValueError(f"steps ({steps}) must be a multiple of log_every ({log_every}).")
    return fit(model, None, epochs=steps // log_every, steps_per_epoch=log_every, lr=lr,
               weight_decay=weight_decay, schedule="cosine", loss=MultiTaskLoss(tasks, batch_size, task_weights),
               seed=seed, threads=1, progress=False, desc="multi-task")


def rotations(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotation pretext task (Gidaris et al., 2018): every image rotated by 0, 90, 180 and
    270 degrees, labelled 0-3 by its rotation. No human label needed.

    Usage: ``X_rot, y_rot = rotations(X_unlabelled); fit(net, (X_rot, y_rot))``
    """
    Xr = torch.cat([torch.rot90(X, k, (2, 3)) for k in range(4)])
    return Xr, torch.arange(4).repeat_interleave(len(X))
