"""tl_course.methods.distillation: the distillation loss and its loss hook for fit(), on tiny inputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tl_course.methods.distillation import IGNORE, DistillationLoss, distillation_loss, soft_targets
from tl_course.models.small_cnn import SmallCNN
from tl_course.train import accuracy, fit, images_per_second


def _logits(n=8, c=5, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * scale


# --------------------------------------------------------------------------- distillation loss
def test_alpha_zero_is_cross_entropy():
    s, t = _logits(seed=0), _logits(seed=1)
    y = torch.arange(8) % 5
    for T in (1.0, 4.0):
        assert torch.allclose(distillation_loss(s, t, y, temperature=T, alpha=0.0), F.cross_entropy(s, y))


def test_alpha_one_is_scaled_kl_and_needs_no_labels():
    s, t = _logits(seed=0), _logits(seed=1)
    T = 3.0
    p_t = (t / T).softmax(-1)
    kl = (p_t * (p_t.log() - (s / T).log_softmax(-1))).sum(-1).mean()
    assert torch.allclose(distillation_loss(s, t, None, temperature=T, alpha=1.0), T * T * kl, atol=1e-6)


def test_mixture_is_the_weighted_sum():
    s, t = _logits(seed=2), _logits(seed=3)
    y = torch.arange(8) % 5
    ce = distillation_loss(s, t, y, 2.0, 0.0)
    kd = distillation_loss(s, t, y, 2.0, 1.0)
    assert torch.allclose(distillation_loss(s, t, y, 2.0, 0.3), 0.7 * ce + 0.3 * kd, atol=1e-6)


def test_zero_when_student_matches_teacher():
    t = _logits(seed=4)
    assert float(distillation_loss(t.clone(), t, None, 4.0, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_temperature_softens_the_targets():
    t = torch.tensor([[4.0, 1.0, 0.0]])
    p1, p4 = soft_targets(t, 1.0), soft_targets(t, 4.0)
    entropy = lambda p: float(-(p * p.log()).sum())  # noqa: E731
    assert entropy(p4) > entropy(p1)                      # flatter at higher T
    assert p4.argmax() == p1.argmax() == 0                # same ranking
    assert float(p4[0, 1]) > float(p1[0, 1])              # the wrong classes gain weight


def test_t_squared_keeps_gradients_on_scale():
    """Without T**2 the KL gradients would shrink like 1/T**2; with it they stay comparable."""
    t = _logits(n=64, c=10, seed=5, scale=2.0)
    norms = []
    for T in (2.0, 8.0):
        s = _logits(n=64, c=10, seed=6, scale=2.0).requires_grad_()
        distillation_loss(s, t, None, T, 1.0).backward()
        norms.append(float(s.grad.norm()))
    assert 0.2 < norms[1] / norms[0] < 5  # 1/16 without the factor


def test_teacher_gets_no_gradient_and_bad_arguments_are_refused():
    s, t = _logits(seed=0).requires_grad_(), _logits(seed=1).requires_grad_()
    distillation_loss(s, t, torch.zeros(8, dtype=torch.long), 4.0, 0.5).backward()
    assert s.grad is not None and t.grad is None
    with pytest.raises(ValueError):
        distillation_loss(s, t, None, 4.0, 0.5)      # labels needed for the CE part
    with pytest.raises(ValueError):
        distillation_loss(s, t, None, 0.0, 1.0)
    with pytest.raises(ValueError):
        distillation_loss(s, t, None, 2.0, 1.5)


# --------------------------------------------------------------------------- training a student with fit()


def _toy_images(n=64, seed=0):
    """Two classes: bright left half vs bright right half."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 12, 12, generator=g) * 0.3
    y = torch.arange(n) % 2
    x[y == 0, :, :, :6] += 1.0
    x[y == 1, :, :, 6:] += 1.0
    return x, y


def test_fit_student_learns_and_is_repeatable():
    X, y = _toy_images()
    Xv, yv = _toy_images(32, seed=1)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        net = SmallCNN(num_classes=2, width=4, depth=2, dropout=0.2)
        history = fit(net, (X, y), (Xv, yv), epochs=6, lr=1e-2, batch_size=16, schedule="onecycle",
                      select_best=False, progress=False)
        runs.append((history.rows[-1]["train_loss"], accuracy(net, Xv, yv)))
    assert runs[0] == runs[1]
    assert runs[0][1] >= 0.9


def test_fit_student_with_teacher_logits():
    X, y = _toy_images()
    teacher = F.one_hot(y, 2).float() * 4.0 - 2.0
    torch.manual_seed(0)
    net = SmallCNN(num_classes=2, width=4, depth=2, dropout=0.2)
    history = fit(net, (X, y, teacher), loss=DistillationLoss(temperature=2.0, alpha=1.0), epochs=6,
                  lr=1e-2, batch_size=16, schedule="onecycle", progress=False)
    rows = history.rows
    assert len(rows) == 6 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert accuracy(net, X, y) >= 0.9
    with pytest.raises(ValueError):
        fit(net, (X, y, teacher), loss=DistillationLoss(alpha=1.5), epochs=1, progress=False)


def test_distillation_loss_hook_with_unlabelled_examples():
    """IGNORE labels: those examples are learned from the teacher only."""
    X, y = _toy_images()
    teacher = F.one_hot(y, 2).float() * 4.0 - 2.0
    partial = y.clone()
    partial[8:] = IGNORE  # only 8 labelled examples
    net = SmallCNN(num_classes=2, width=4, depth=2, seed=0)
    fit(net, (X, partial, teacher), loss=DistillationLoss(temperature=2.0, alpha=0.5), epochs=6, lr=1e-2,
        batch_size=16, schedule="onecycle", progress=False)
    assert accuracy(net, X, y) >= 0.9


def test_images_per_second_is_positive():
    assert images_per_second(SmallCNN(num_classes=2, width=4, depth=2), (3, 16, 16), batch_size=4, batches=1) > 0
