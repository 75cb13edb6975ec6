"""Knowledge distillation (Hinton et al. 2015): a small *student* learns to match a large
*teacher*'s softened output distribution as well as the true labels; as a loss hook for
:func:`tl_course.train.fit`, teacher outputs computed once and stored beside every example.

Usage::

    from tl_course.methods.distillation import distillation_loss, DistillationLoss, IGNORE
    loss = distillation_loss(student(x), teacher_logits, y, temperature=4.0, alpha=0.7)
    fit(student, (X, y, teacher_logits), loss=DistillationLoss(temperature=4.0, alpha=0.7))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100
"""The label of an unlabelled example (PyTorch's default ``ignore_index``)."""


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor | None = None, temperature: float = 4.0,
                      alpha: float = 0.5) -> torch.Tensor:
    """Hinton et al. (2015)'s distillation loss, averaged over the batch::

        (1 - alpha) * CE(student_logits, labels)
        + alpha * T**2 * KL(softmax(teacher_logits / T) || softmax(student_logits / T))

    The KL term compares the *softened* distributions (temperature ``T`` > 1 flattens them, so
    the teacher's ranking of the wrong classes, its "dark knowledge", carries weight); the factor
    ``T**2`` keeps its gradients on the same scale as the cross-entropy's when ``T`` changes.
    ``alpha=0`` is plain cross-entropy on the labels, ``alpha=1`` pure distillation (``labels``
    may then be None). ``labels`` are class indices, or class probabilities ``(N, C)``; an index
    of ``IGNORE`` (-100) marks an unlabelled example, which only the KL term sees (the
    cross-entropy is summed over the labelled ones and divided by the batch size).

    Usage: ``loss = distillation_loss(student(x), teacher_logits, y, temperature=4.0, alpha=0.7)``
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}.")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    loss = student_logits.new_zeros(())
    if alpha < 1.0:
        if labels is None:
            raise ValueError("labels are needed when alpha < 1 (the cross-entropy term).")
        if labels.dtype == torch.long:  # class indices; IGNORE (-100) marks unlabelled examples
            known = labels != IGNORE
            if bool(known.any()):
                ce = F.cross_entropy(student_logits[known], labels[known], reduction="sum") / len(labels)
                loss = loss + (1.0 - alpha) * ce
        else:  # class probabilities (N, C)
            loss = loss + (1.0 - alpha) * F.cross_entropy(student_logits, labels)
    if alpha > 0.0:
        t = float(temperature)
        kl = F.kl_div(F.log_softmax(student_logits / t, dim=-1),
                      F.log_softmax(teacher_logits.detach() / t, dim=-1),
                      reduction="batchmean", log_target=True)
        loss = loss + alpha * t * t * kl
    return loss


def soft_targets(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The softened class distribution ``softmax(logits / T)``.

    Usage: ``soft_targets(torch.tensor([[2.0, 0.0]]), temperature=4.0)  # [[0.62, 0.38]]``
    """
    return (logits / temperature).softmax(-1)


class DistillationLoss:
    """A loss hook for :func:`~tl_course.train.fit` on batches ``(x, y, teacher_logits)``:
    :func:`distillation_loss` of the model's logits (``y`` may hold :data:`IGNORE` for
    unlabelled examples).

    Usage: ``fit(student, (X, y, T), loss=DistillationLoss(temperature=4.0, alpha=0.7), schedule="onecycle")``
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.5):
        self.temperature, self.alpha = temperature, alpha

    def __call__(self, model, batch, step):
        x, y, teacher = batch
        return distillation_loss(model(x), teacher, y, self.temperature, self.alpha)
