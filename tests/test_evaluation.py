"""tl_course.evaluation: scores, calibration (ECE), confident mistakes and Grad-CAM on tiny inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tl_course.evaluation import confident_mistakes, denormalize, grad_cam, reliability, scores


def test_scores_on_a_hand_made_example():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    y = np.array([0, 0, 0, 0, 1])
    s = scores(probs, y)
    assert s["accuracy"] == pytest.approx(0.8)                     # 4 of 5 right
    assert s["balanced_accuracy"] == pytest.approx((3 / 4 + 1) / 2)  # recalls: class 0 3/4, class 1 1/1
    # AUC: the share of (positive, negative) pairs ranked right: p(1)=0.55 beats 0.1, 0.2, 0.4 but not 0.7
    assert s["auc"] == pytest.approx(3 / 4)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_scores_balanced_accuracy_and_multiclass_auc():
    always_majority = np.tile([0.9, 0.1], (10, 1))
    imbalanced = np.array([0] * 9 + [1])
    s = scores(always_majority, imbalanced)
    assert s["accuracy"] == pytest.approx(0.9) and s["balanced_accuracy"] == pytest.approx(0.5)
    three = np.eye(3)[[0, 1, 2, 0, 1, 2]] * 0.7 + 0.1
    s3 = scores(three, np.array([0, 1, 2, 0, 1, 2]))
    assert s3 == {"accuracy": 1.0, "balanced_accuracy": 1.0, "auc": pytest.approx(1.0)}
    missing = scores(three[:2], np.array([0, 1]))  # class 2 absent: AUC undefined
    assert np.isnan(missing["auc"]) and missing["accuracy"] == 1.0


def test_reliability_ece_is_about_zero_when_calibrated():
    rng = np.random.default_rng(0)
    n = 20000
    conf = rng.uniform(0.5, 1.0, n)
    probs = np.stack([conf, 1 - conf], 1)
    y = np.where(rng.random(n) < conf, 0, 1)  # class 0 is right with probability conf: calibrated
    rel = reliability(probs, y, bins=10)
    assert rel["ece"] < 0.02
    assert sum(b["count"] for b in rel["bins"]) == n
    for b in rel["bins"]:
        assert b["low"] <= b["confidence"] <= b["high"]
        assert b["accuracy"] == pytest.approx(b["confidence"], abs=0.05)
    overconfident = reliability(np.tile([0.99, 0.01], (100, 1)), np.r_[np.zeros(50, int), np.ones(50, int)])
    assert overconfident["ece"] == pytest.approx(0.49)


def test_confident_mistakes_order():
    probs = np.array([[0.6, 0.4], [0.05, 0.95], [0.99, 0.01], [0.3, 0.7], [0.2, 0.8]])
    y = np.array([1, 0, 1, 1, 0])
    # mistakes: 0 (conf 0.6), 1 (0.95), 2 (0.99), 4 (0.8); index 3 is right
    assert confident_mistakes(probs, y) == [2, 1, 4, 0]
    assert confident_mistakes(probs, y, k=2) == [2, 1]
    assert confident_mistakes(probs, probs.argmax(1)) == []


def test_grad_cam_shape_and_range_on_a_tiny_model():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    for p in model.parameters():
        p.requires_grad_(False)  # frozen, as a trained backbone often is
    model.train()
    x = torch.randn(3, 12, 10)
    cam = grad_cam(model, x, conv)
    assert cam.shape == (12, 10) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0 + 1e-6
    assert cam.max() == pytest.approx(1.0) or cam.max() == 0.0
    assert model.training and not conv._forward_hooks  # mode restored, hook removed
    for k in range(3):
        other = grad_cam(model, x, conv, class_index=k)
        assert other.shape == (12, 10) and 0.0 <= other.min() and other.max() <= 1.0 + 1e-6


def test_denormalize():
    img = torch.zeros(3, 2, 2)
    out = denormalize(img, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert out.shape == (2, 2, 3) and np.allclose(out, 0.5)
