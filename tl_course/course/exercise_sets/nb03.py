"""Exercises of notebook 03 (domain adaptation: importance weights, CORAL, DANN)."""
from .. import asserts
from ..exercises import checker
from ...models.transfer import truncate_backbone
from ...methods.adaptation import coral_loss, dann_lambda, grad_reverse



@checker("03.grl_gradient")
def _grl_gradient(answer):
    import torch

    
    value = asserts.number(answer)
    x = torch.zeros(4, requires_grad=True)
    grad_reverse(x, dann_lambda(0.5)).sum().backward()
    expected = float(x.grad[0])
    if abs(value + expected) < 1e-4:
        raise AssertionError("right size, wrong sign: the layer *reverses* the gradient.")
    if abs(value - (-0.5)) < 1e-4:
        raise AssertionError("lambda is not p itself: it follows dann_lambda(p) = 2 / (1 + exp(-10 p)) - 1.")
    assert abs(value - expected) < 1e-4, f"{value:.4f} is not the gradient the layer passes back."


@checker("03.effective_sample_size")
def _effective_sample_size(answer):
    import numpy as np

    from ...data import load_dataset

    assert isinstance(answer, (tuple, list)) and len(answer) == 2, "expected a tuple (weights, ess)."
    weights, value = np.asarray(answer[0], dtype=np.float64), asserts.number(answer[1])
    n = len(load_dataset("digits").train)
    assert weights.ndim == 1 and len(weights) == n, f"expected one weight per source example ({n})."
    assert (weights >= 0).all(), "importance weights are never negative."
    expected = float(weights.sum() ** 2 / (weights ** 2).sum())
    if abs(value - expected / n) < 1e-6:
        raise AssertionError("that is the effective *fraction*; the question asks for a number of examples.")
    assert abs(value - expected) <= 1e-6 * max(1.0, expected), \
        f"{value:.2f} is not (sum w)^2 / sum w^2 for these weights."


@checker("03.coral_by_hand")
def _coral_by_hand(answer):
    import torch

    from ...models.backbones import load_backbone
    from ...data import load_dataset
    from ...features import extract_features

    value = asserts.number(answer)
    backbone = truncate_backbone(load_backbone("efficientnet_lite0", image_size=64), 6)
    Fs, _ = extract_features(backbone, load_dataset("digits").train, progress=False)
    Ft, _ = extract_features(backbone, load_dataset("digits_m").train, progress=False)
    both = torch.cat([Fs, Ft])
    mu, sd = both.mean(0), both.std(0) + 1e-6
    Zs, Zt = (Fs - mu) / sd, (Ft - mu) / sd
    expected = float(coral_loss(Zs.double(), Zt.double()))
    d = Zs.shape[1]
    if abs(value - expected * 4 * d * d) <= 1e-3 * expected * 4 * d * d:
        raise AssertionError("you forgot to divide by 4 d^2.")
    assert abs(value - expected) <= 1e-3 * abs(expected) + 1e-9, (
        f"{value:.6f} is not the CORAL loss of the standardised features (the notebook's default "
        "settings: 6 stages, image size 64).")
