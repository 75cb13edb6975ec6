"""Exercises of notebook 03 (domain adaptation: importance weights, CORAL, DANN)."""
from .. import asserts
from ..exercises import checker, trivial_answers
from ...models.transfer import truncate_backbone
from ...methods.adaptation import coral_loss, dann_lambda, grad_reverse


def _grl_expected() -> float:
    import torch

    x = torch.zeros(4, requires_grad=True)
    grad_reverse(x, dann_lambda(0.5)).sum().backward()
    return float(x.grad[0])


@checker("03.grl_gradient")
def _grl_gradient(answer):
    value = asserts.number(answer)
    expected = _grl_expected()
    if abs(value + expected) < 1e-4:
        raise AssertionError("right size, wrong sign: the layer *reverses* the gradient.")
    if abs(value - (-0.5)) < 1e-4:
        raise AssertionError("lambda is not p itself: it follows dann_lambda(p) = 2 / (1 + exp(-10 p)) - 1.")
    assert abs(value - expected) < 1e-4, f"{value:.4f} is not the gradient the layer passes back."


@trivial_answers("03.grl_gradient")
def _():
    return [(0, {}), (0.0, {}), (1.0, {}), (-1.0, {}), (-0.5, {}),   # -0.5: printed just above, for lambda = 0.5
            (-_grl_expected(), {}), (dann_lambda(0.5), {})]


def _source_size() -> int:
    from ...data import load_dataset

    return len(load_dataset("digits").train)


@checker("03.effective_sample_size")
def _effective_sample_size(answer, weights=None):
    import numpy as np

    assert weights is not None, ("the checker computes the expected number from the notebook's weights: "
                                 "call ex.check(answer, weights=weights).")
    w = np.asarray(weights, dtype=np.float64)
    n = _source_size()
    assert w.ndim == 1 and len(w) == n, f"weights=...: expected the importance weights, one per source example ({n})."
    assert np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0, "importance weights are finite, never negative."
    assert w.max() - w.min() > 1e-9 * w.max(), ("these weights are all equal (their ESS is trivially n): pass the "
                                                "importance weights of section 3.")
    value = asserts.number(answer)
    expected = float(w.sum() ** 2 / (w ** 2).sum())
    if abs(value - expected / n) < 1e-6:
        raise AssertionError("that is the effective *fraction*; the question asks for a number of examples.")
    if abs(value - n) < 0.5:
        raise AssertionError(f"{n} is the number of examples: the ESS equals it only when all weights are equal.")
    if abs(value - 1 / expected) < 1e-9 or abs(value - n * n / expected) < 1e-6 * n:
        raise AssertionError("the fraction is upside down: (sum w)^2 goes on top, sum w^2 below.")
    assert abs(value - expected) <= 1e-6 * max(1.0, expected), \
        f"{value:.2f} is not (sum w)^2 / sum w^2 for these weights."


@trivial_answers("03.effective_sample_size")
def _():
    import numpy as np

    n = _source_size()
    w = np.random.default_rng(0).exponential(size=n)  # uneven weights, as importance weights are
    ess = float(w.sum() ** 2 / (w ** 2).sum())
    ctx = {"weights": w}
    return [(0, ctx), (0.0, ctx), (1.0, ctx), (float(n), ctx), (n, ctx), (ess / n, ctx), (1 / ess, ctx),
            (float(w.sum()), ctx), (float((w ** 2).sum()), ctx),
            (float(n), {"weights": np.ones(n)}),          # equal weights: the ESS is n, nothing learned
            (ess, {}),                                    # no weights to check against
            (1.0, {"weights": np.ones(1)})]


def _coral_expected() -> tuple[float, int]:
    import torch

    from ...models.backbones import load_backbone
    from ...data import load_dataset
    from ...features import extract_features

    backbone = truncate_backbone(load_backbone("efficientnet_lite0", image_size=64), 6)
    Fs, _ = extract_features(backbone, load_dataset("digits").train, progress=False)
    Ft, _ = extract_features(backbone, load_dataset("digits_m").train, progress=False)
    both = torch.cat([Fs, Ft])
    mu, sd = both.mean(0), both.std(0) + 1e-6
    Zs, Zt = (Fs - mu) / sd, (Ft - mu) / sd
    return float(coral_loss(Zs.double(), Zt.double())), Zs.shape[1]


@checker("03.coral_by_hand")
def _coral_by_hand(answer):
    value = asserts.number(answer)
    assert value > 0, "two different covariance matrices have a positive squared distance."
    expected, d = _coral_expected()
    if abs(value - expected * 4 * d * d) <= 1e-3 * expected * 4 * d * d:
        raise AssertionError("you forgot to divide by 4 d^2.")
    assert abs(value - expected) <= 1e-3 * abs(expected) + 1e-9, (
        f"{value:.6f} is not the CORAL loss of the standardised features (the notebook's default "
        "settings: 6 stages, image size 64).")


@trivial_answers("03.coral_by_hand")
def _():
    return [(0, {}), (0.0, {}), (1.0, {}), (0.25, {}), (-0.01, {})]
