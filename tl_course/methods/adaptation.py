"""Small building blocks for the concept notebooks 01-03: image tensors, a small CNN trained from
scratch, linear probes on features, multi-task and self-supervised pieces, and domain adaptation
(importance weights, CORAL, the gradient reversal layer and DANN).

The teaching pieces (gradient reversal, CORAL) are written out by hand in a few lines; everything
else leans on torch and scikit-learn.

Usage::

    from tl_course import adaptation as ad
    X, y = ad.image_tensors(load_dataset("digits").train)
    acc = ad.linear_probe_accuracy(F_train, y_train, F_val, y_val)
    z = ad.grad_reverse(features, lambd=1.0)          # identity forward, -lambd * grad backward
    loss = ad.coral_loss(source_features, target_features)
"""
from __future__ import annotations

import functools
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from . import settings


# --------------------------------------------------------------------------- threads
@contextmanager
def torch_threads(n: int = 1):
    """Run the enclosed code with ``n`` intra-op PyTorch threads, then restore the previous number.
    The training loops below use one thread: their models are tiny, so more threads barely help
    (and cost a lot on a shared machine), and the results then do not depend on how many cores the
    machine has (summation order, hence rounding, changes with the number of threads).

    Usage: ``with torch_threads(1): model(x)``
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _single_threaded(fn):
    """Decorator: run ``fn`` under :func:`torch_threads` (1)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch_threads(1):
            return fn(*args, **kwargs)
    return wrapper


# --------------------------------------------------------------------------- data as tensors
def image_tensors(dataset, grayscale: bool = False, size: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """An in-memory image dataset (uint8 ``(N, H, W, 3)`` samples) as a float tensor
    ``(N, C, H, W)`` scaled to about [-2, 2] (``(x / 255 - 0.5) / 0.25``), plus its labels.
    ``grayscale=True`` averages the colour channels into one; ``size`` resizes (area averaging).

    Usage: ``X_train, y_train = image_tensors(load_dataset("digits_m").train)``
    """
    arr = dataset.samples if isinstance(dataset.samples, np.ndarray) else np.stack(
        [np.asarray(dataset.image(i)) for i in range(len(dataset))])
    x = torch.as_tensor(arr).permute(0, 3, 1, 2).float() / 255.0
    if grayscale:
        x = x.mean(1, keepdim=True)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = nn.functional.interpolate(x, size=(size, size), mode="area")
    return (x - 0.5) / 0.25, torch.as_tensor(dataset.targets, dtype=torch.long)


def split_indices(labels, fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split example indices into two disjoint, class-stratified pools: ``(1 - fraction)`` and
    ``fraction`` of the examples (scikit-learn's ``train_test_split``), e.g. the images labelled
    for task A and those available for task B.

    Usage: ``pool_a, pool_b = split_indices(y_train, 0.3)``
    """
    from sklearn.model_selection import train_test_split

    labels = _np(labels)
    a, b = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(a), np.sort(b)


def epochs_for_steps(n_examples: int, batch_size: int, steps: int) -> int:
    """The number of epochs that gives about ``steps`` optimizer steps on ``n_examples``, so runs
    on 10 or 1000 examples get the same amount of training.

    Usage: ``fit(model, (X, y), epochs=epochs_for_steps(len(X), 32, 300), batch_size=32)``
    """
    per_epoch = max(1, math.ceil(n_examples / max(1, batch_size)))
    return max(1, math.ceil(steps / per_epoch))


def first_epoch_reaching(history, threshold: float, key: str = "val_accuracy") -> int | None:
    """The first epoch (1-based) whose ``key`` is at least ``threshold``, or None if never.

    Usage: ``first_epoch_reaching(history, 0.6)``
    """
    for row in history.rows:
        if row.get(key) is not None and row[key] >= threshold:
            return int(row["epoch"])
    return None


def seconds_to_epoch(history, epoch: int | None) -> float | None:
    """Wall-clock seconds spent training up to and including ``epoch`` (None stays None).

    Usage: ``seconds_to_epoch(history, first_epoch_reaching(history, 0.6))``
    """
    if epoch is None:
        return None
    return float(sum(r["seconds"] for r in history.rows[:epoch]))


def fit_cosine(model: nn.Module, train, val=None, *, epochs: int = 10, lr: float = 3e-3,
               batch_size: int = 64, weight_decay: float = 1e-4, seed: int = 0, progress: bool = False,
               desc: str = "fit"):
    """:func:`tl_course.training.fit` with AdamW and a cosine learning-rate decay to zero over
    ``epochs``, keeping the last epoch's weights (``val`` is only reported, never used to pick a
    model), so the final weights are stable and no validation data leaks into training.

    Usage: ``history = fit_cosine(SmallCNN(), (X, y), (X_val, y_val), epochs=8)``
    """
    from .training import fit

    settings.seed_everything(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    with torch_threads(1):
        return fit(model, train, val, epochs=epochs, optimizer=optimizer, scheduler=scheduler,
                   batch_size=batch_size, seed=seed, progress=progress, desc=desc, select_best=False)


# --------------------------------------------------------------------------- models
def conv_trunk(in_channels: int, widths: Sequence[int] = (16, 32, 64), seed: int | None = None,
               batch_norm: bool = True) -> nn.Sequential:
    """Convolutional feature extractor: one conv-BatchNorm-ReLU-maxpool block per entry of
    ``widths`` (its channels), then global average pooling to a ``widths[-1]``-d vector.
    ``seed`` makes the random initial weights reproducible without touching the global RNG.
    ``batch_norm=False`` leaves BatchNorm out: its batch statistics mix whatever shares a batch
    (e.g. source and target images), which is itself a form of domain adaptation.

    Usage: ``trunk = conv_trunk(3, (16, 32, 64), seed=0); features = trunk(x)  # (N, 64)``
    """
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        blocks, c_in = [], in_channels
        for c_out in widths:
            norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm),
                                        *norm, nn.ReLU(), nn.MaxPool2d(2)))
            c_in = c_out
        return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class SmallCNN(nn.Module):
    """A small convolutional network for 32x32 (or 16x16) images: :func:`conv_trunk` with
    ``width``, ``2*width``, ``4*width`` channels, then a linear head. ``features`` is the trunk
    (image -> ``feature_dim`` vector), ``head`` the classifier.

    Usage: ``model = SmallCNN(in_channels=3, num_classes=10, seed=0); logits = model(x)``
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 16,
                 seed: int | None = None):
        super().__init__()
        self.feature_dim = 4 * width
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.features = conv_trunk(in_channels, (width, 2 * width, 4 * width))
            self.head = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """A ReLU multilayer perceptron, e.g. ``mlp([1280, 256, 10])`` (no activation after the last layer).

    Usage: ``net = mlp([1024, 128, 10])``
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
    return nn.Sequential(*layers)


@_single_threaded
@torch.no_grad()
def embed(module: nn.Module, X: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """``module(X)`` in eval mode, batch by batch, without gradients.

    Usage: ``F_val = embed(model.features, X_val)``
    """
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    was_training = module.training
    module.eval()
    out = (torch.cat([module(X[i:i + batch_size].to(device)).cpu() for i in range(0, len(X), batch_size)])
           if len(X) else X)
    module.train(was_training)
    return out.float()


def truncate_backbone(backbone, n_stages: int, pool: bool = True):
    """A copy of a :class:`~tl_course.backbones.Backbone` keeping only its first ``n_stages``
    stages (then global average pooling, or with ``pool=False`` the feature maps themselves):
    the generic lower layers without the most ImageNet-specific top ones. Shares the weights; has
    its own name, so :func:`~tl_course.features.extract_features` caches its outputs separately.

    Usage: ``bb6 = truncate_backbone(load_backbone("efficientnet_lite0", image_size=64), 6)``
    """
    import dataclasses

    if not 1 <= n_stages <= len(backbone.stages):
        raise ValueError(f"n_stages must be between 1 and {len(backbone.stages)}, got {n_stages}.")
    stages = [s if not isinstance(s, nn.ModuleList) else nn.Sequential(*s) for s in backbone.stages[:n_stages]]
    bottom = nn.Sequential(*stages)
    model = (nn.Sequential(bottom, nn.AdaptiveAvgPool2d(1), nn.Flatten(1)) if pool else bottom).eval()
    size = backbone.image_size or backbone.preprocessing.crop
    with torch.no_grad():
        dim = int(model(torch.zeros(1, 3, size, size)).shape[1])
    name = f"{backbone.name}[:{n_stages}]" + ("" if pool else "-maps")
    return dataclasses.replace(backbone, name=name, model=model,
                               feature_dim=dim, stages=stages,
                               notes=[*backbone.notes, f"first {n_stages} of {len(backbone.stages)} stages"])


# --------------------------------------------------------------------------- linear probes
def linear_probe(X_train, y_train, C: float = 1.0, sample_weight=None, max_iter: int = 3000):
    """A standardised L2 logistic regression (scikit-learn pipeline) fitted on features.

    Usage: ``clf = linear_probe(F_train, y_train); clf.score(F_val, y_val)``
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    fit_kw = {} if sample_weight is None else {"logisticregression__sample_weight": np.asarray(sample_weight)}
    with _one_blas_thread():
        return clf.fit(_np(X_train), _np(y_train), **fit_kw)


def linear_probe_accuracy(X_train, y_train, X_test, y_test, C: float = 1.0, sample_weight=None) -> float:
    """Accuracy on ``(X_test, y_test)`` of :func:`linear_probe` fitted on the training features.

    Usage: ``acc = linear_probe_accuracy(F_train, y_train, F_val, y_val)``
    """
    clf = linear_probe(X_train, y_train, C, sample_weight)
    with _one_blas_thread():
        return float(clf.score(_np(X_test), _np(y_test)))


def _one_blas_thread():
    """One BLAS thread for small scikit-learn solves: they gain nothing from more threads, and
    suffer badly when the cores are shared."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.double().numpy() if x.is_floating_point() else x.numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------- domain adaptation
class _GradReverse(torch.autograd.Function):
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
    return _GradReverse.apply(x, float(lambd))


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
    Xs, Xt = _np(source).astype(np.float64), _np(target).astype(np.float64)
    X = Xs if apply_to is None else _np(apply_to).astype(np.float64)
    eye = np.eye(Xs.shape[1])
    Cs = np.cov(Xs, rowvar=False) + eps * eye
    Ct = np.cov(Xt, rowvar=False) + eps * eye
    whitened = (X - Xs.mean(0)) @ _sym_matrix_power(Cs, -0.5)
    return whitened @ _sym_matrix_power(Ct, 0.5) + Xt.mean(0)


def domain_classifier_weights(source, target, C: float = 1.0, clip: float = 10.0,
                              seed: int = 0) -> np.ndarray:
    """Importance weights ``w(x) ~ p_target(x) / p_source(x)`` for the source examples, estimated
    with a domain classifier (logistic regression, source = 0 vs target = 1) used as a density-ratio
    estimator: ``w = (n_s / n_t) * P(target | x) / P(source | x)``. The probabilities are
    out-of-fold (5-fold cross-validation), so an example's weight does not come from a classifier
    that saw it; weights are clipped to ``clip`` times their median and normalised to mean 1.

    Usage: ``w = domain_classifier_weights(X_source, X_target); clf.fit(X_source, y, sample_weight=w)``
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xs, Xt = _np(source), _np(target)
    X = np.concatenate([Xs, Xt])
    d = np.r_[np.zeros(len(Xs)), np.ones(len(Xt))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
    with _one_blas_thread():
        proba = cross_val_predict(clf, X, d, cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                                  method="predict_proba")[: len(Xs), 1]
    proba = np.clip(proba, 1e-6, 1 - 1e-6)
    w = (len(Xs) / len(Xt)) * proba / (1 - proba)
    w = np.minimum(w, clip * np.median(w))
    return w / w.mean()


def interpolate_domains(source, target, strength: float):
    """An ``ImageDataset`` between two aligned array datasets (image ``i`` of both shows the same
    example, as with ``digits`` and ``digits_m``): each pixel is ``(1 - strength) * source +
    strength * target``. ``strength=0`` gives the source images, ``1`` the target ones; the
    domain-shift explorer of notebook 03 turns this knob.

    Usage: ``half_shifted = interpolate_domains(load_dataset("digits").val, load_dataset("digits_m").val, 0.5)``
    """
    from .datasets import ImageDataset

    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}.")
    a, b = source.samples, target.samples
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        raise TypeError("interpolate_domains needs datasets held in memory as arrays (e.g. digits, digits_m), "
                        "not image files.")
    if a.shape != b.shape or not np.array_equal(source.targets, target.targets):
        raise ValueError(f"the two datasets are not aligned: shapes {a.shape} vs {b.shape}, or different labels.")
    mixed = np.rint((1.0 - strength) * a.astype(np.float32) + strength * b.astype(np.float32))
    return ImageDataset(mixed.clip(0, 255).astype(np.uint8), source.targets, source.classes)


def domain_accuracy(source, target, C: float = 1.0, seed: int = 0) -> float:
    """How well a linear classifier tells source from target features (5-fold cross-validated
    accuracy): 0.5 means the domains are indistinguishable, 1.0 perfectly separable. A proxy for
    the domain distance (the proxy A-distance is ``2 * (2 * acc - 1)``).

    Usage: ``domain_accuracy(F_source, F_target)``
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xs, Xt = _np(source), _np(target)
    X = np.concatenate([Xs, Xt])
    d = np.r_[np.zeros(len(Xs)), np.ones(len(Xt))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
    with _one_blas_thread():
        return float(cross_val_score(clf, X, d, cv=StratifiedKFold(5, shuffle=True, random_state=seed)).mean())


def embed_2d(*feature_sets, method: str = "pca", seed: int = 0) -> list[np.ndarray]:
    """Project several feature sets into one shared 2-D space (fitted on all of them together):
    ``"pca"`` (scikit-learn PCA after standardising) or ``"tsne"``. Returns one ``(n_i, 2)`` array
    per input.

    Usage: ``src_xy, tgt_xy = embed_2d(F_source, F_target)``
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    arrays = [_np(f).astype(np.float64) for f in feature_sets]
    if method not in ("pca", "tsne"):
        raise ValueError(f"Unknown method {method!r}: use 'pca' or 'tsne'.")
    with _one_blas_thread():
        X = StandardScaler().fit_transform(np.concatenate(arrays))
        if method == "pca":
            Z = PCA(2, random_state=seed).fit_transform(X)
        else:
            Z = TSNE(2, init="pca", random_state=seed, perplexity=min(30, len(X) - 1)).fit_transform(X)
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    return [Z[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass
class AdaptationResult:
    """What :func:`train_adapted` returns: the trained ``model`` (features + head), one row per
    epoch (losses, target accuracy when a labelled target set was given), and the seconds taken.

    Usage: ``res = train_adapted(...); res.model(x); res.column("target_accuracy")``
    """

    model: nn.Module
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def column(self, key: str) -> list[float]:
        """One metric over the epochs, e.g. ``res.column("target_accuracy")``."""
        return [r.get(key) for r in self.rows]


@_single_threaded
def train_adapted(features: nn.Module, head: nn.Module, source: tuple, target_x: torch.Tensor, *,
                  method: str = "dann", epochs: int = 20, batch_size: int = 64, lr: float = 1e-3,
                  weight_decay: float = 1e-4, adapt_weight: float = 1.0, domain_hidden: int = 64,
                  anneal: bool = True, source_weights=None, target_eval: tuple | None = None, seed: int = 0,
                  device: str | None = None, progress: bool = False) -> AdaptationResult:
    """Train ``features`` + ``head`` on the labelled ``source = (X, y)`` while using the unlabelled
    ``target_x``, with one loop for three methods, so they differ only by the adaptation term:

    - ``"source"``: cross-entropy on source only (the baseline; ``target_x`` is ignored);
    - ``"coral"``: plus ``adapt_weight * coral_loss`` between source and target batch features;
    - ``"dann"``: plus the loss of a domain classifier (an MLP with ``domain_hidden`` units) fed
      through a gradient reversal layer whose strength follows :func:`dann_lambda` up to
      ``adapt_weight``: the domain classifier learns to tell the domains apart, the features learn
      to make that impossible.

    ``source_weights`` (one per source example, e.g. :func:`domain_classifier_weights`) turn the
    source cross-entropy into a weighted one: instance-based adaptation, usable with any method.
    Every step sees one source batch and one target batch; an epoch is one pass over the source.
    Runs single-threaded (see :func:`torch_threads`). With ``anneal`` the learning rate decays as in the DANN paper, ``lr / (1 + 10 p) ** 0.75``.
    ``target_eval = (X, y)`` (held-out labelled target data) is only evaluated, never trained on.

    Usage: ``res = train_adapted(net.features, net.head, (Xs, ys), Xt, method="dann", epochs=15)``
    """
    if method not in ("source", "coral", "dann"):
        raise ValueError(f"Unknown method {method!r}: use 'source', 'coral' or 'dann'.")
    settings.seed_everything(seed)
    device = device or settings.device()
    Xs, ys = source
    model = nn.Sequential(features, head).to(device)
    dim = head.in_features if isinstance(head, nn.Linear) else None
    grl = GradientReversal(0.0)
    domain_head = None
    params = list(model.parameters())
    if method == "dann":
        if dim is None:
            with torch.no_grad():
                features.eval()
                dim = features(Xs[:2].to(device)).shape[1]
        domain_head = nn.Sequential(grl, nn.Linear(dim, domain_hidden), nn.ReLU(),
                                    nn.Linear(domain_hidden, 2)).to(device)
        params += list(domain_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    ce = nn.CrossEntropyLoss()
    ce_each = nn.CrossEntropyLoss(reduction="none")
    weights = None if source_weights is None else torch.as_tensor(np.asarray(source_weights), dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    n_s, n_t = len(Xs), len(target_x)
    steps_per_epoch = max(1, math.ceil(n_s / batch_size))
    total = epochs * steps_per_epoch
    result = AdaptationResult(nn.Sequential(features, head))
    start = time.perf_counter()
    from tqdm.auto import tqdm

    step = 0
    for epoch in tqdm(range(1, epochs + 1), desc=method, unit="epoch", disable=not progress):
        model.train()
        if domain_head is not None:
            domain_head.train()
        order_s = torch.randperm(n_s, generator=gen)
        order_t = torch.randint(n_t, (steps_per_epoch * batch_size,), generator=gen)
        sums = {"class_loss": 0.0, "adapt_loss": 0.0}
        for b in range(steps_per_epoch):
            idx_s = order_s[b * batch_size:(b + 1) * batch_size]
            xs, yb = Xs[idx_s].to(device), torch.as_tensor(ys)[idx_s].to(device)
            if method == "source":
                fs = features(xs)
                adapt = torch.zeros((), device=device)
            else:
                xt = target_x[order_t[b * batch_size:b * batch_size + len(idx_s)]].to(device)
                f = features(torch.cat([xs, xt]))
                fs, ft = f[:len(xs)], f[len(xs):]
                if method == "coral":
                    adapt = adapt_weight * coral_loss(fs, ft)
                else:
                    grl.lambd = adapt_weight * dann_lambda(step / max(total - 1, 1))
                    dom = torch.cat([torch.zeros(len(fs)), torch.ones(len(ft))]).long().to(device)
                    adapt = ce(domain_head(f), dom)
            if weights is None:
                class_loss = ce(head(fs), yb)
            else:
                w = weights[idx_s].to(device)
                class_loss = (w * ce_each(head(fs), yb)).sum() / w.sum()
            loss = class_loss + adapt
            if anneal:  # the DANN paper's schedule: lr / (1 + 10 p) ** 0.75
                for group in optimizer.param_groups:
                    group["lr"] = lr / (1 + 10 * step / max(total - 1, 1)) ** 0.75
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums["class_loss"] += float(class_loss.detach())
            sums["adapt_loss"] += float(adapt.detach())
            step += 1
        row = {"epoch": epoch, **{k: v / steps_per_epoch for k, v in sums.items()}}
        if target_eval is not None:
            row["target_accuracy"] = accuracy(result.model, *target_eval)
        result.rows.append(row)
    result.model.eval()
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y, batch_size: int = 512) -> float:
    """Accuracy of ``model`` (logits) on tensors ``X``, labels ``y`` (eval mode, no gradients).

    Usage: ``accuracy(model, X_val, y_val)``
    """
    logits = embed(model, X, batch_size)
    return float((logits.argmax(1).cpu() == torch.as_tensor(y)).float().mean())


# --------------------------------------------------------------------------- multi-task, self-supervised
@_single_threaded
def fit_multitask(trunk: nn.Module, heads: dict, tasks: dict, *, steps: int = 300, batch_size: int = 64,
                  lr: float = 3e-3, weight_decay: float = 1e-4, task_weights: dict | None = None,
                  seed: int = 0, device: str | None = None) -> list[dict]:
    """Train one shared ``trunk`` with one head per task. ``tasks`` maps a task name to its labelled
    examples ``(X, y)`` (the tasks may have different inputs and very different sizes); every step
    draws one batch per task and minimises the (weighted) sum of their cross-entropies, so a task
    with 20 labels is seen as often as one with 1000. With a single task this is ordinary training.
    AdamW with a cosine learning-rate decay to zero, single-threaded (see :func:`torch_threads`).
    Returns one row of mean losses per 50 steps.

    Usage: ``fit_multitask(trunk, {"digit": h1, "parity": h2}, {"digit": (Xa, ya), "parity": (Xb, yb)})``
    """
    settings.seed_everything(seed)
    device = device or settings.device()
    heads = nn.ModuleDict(heads)
    model = nn.ModuleDict({"trunk": trunk, "heads": heads}).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    ce = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    weights = task_weights or {}
    rows, sums = [], {name: 0.0 for name in tasks}
    model.train()
    for step in range(1, steps + 1):
        loss = torch.zeros((), device=device)
        for name, (X, y) in tasks.items():
            idx = torch.randint(len(X), (min(batch_size, len(X)),), generator=gen)
            task_loss = ce(heads[name](trunk(X[idx].to(device))), torch.as_tensor(y)[idx].to(device))
            loss = loss + weights.get(name, 1.0) * task_loss
            sums[name] += float(task_loss.detach())
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps:
            count = 50 if step % 50 == 0 else step % 50
            rows.append({"step": step, **{f"{k}_loss": v / count for k, v in sums.items()}})
            sums = {name: 0.0 for name in tasks}
    model.eval()
    return rows


def rotations(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotation pretext task (Gidaris et al., 2018): every image rotated by 0, 90, 180 and
    270 degrees, labelled 0-3 by its rotation. No human label needed.

    Usage: ``X_rot, y_rot = rotations(X_unlabelled); fit(net, (X_rot, y_rot))``
    """
    Xr = torch.cat([torch.rot90(X, k, (2, 3)) for k in range(4)])
    return Xr, torch.arange(4).repeat_interleave(len(X))
