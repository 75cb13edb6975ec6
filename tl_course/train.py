"""Training loops: ``fit`` with progress, per-epoch history, early stopping and best-state restore.

Usage::

    from tl_course.training import fit, evaluate
    history = fit(model, train_ds, val_ds, epochs=20, lr=1e-3, patience=5)
    history.best
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import settings
from .datasets import few_shot_indices  # noqa: F401  (public here too: notebooks import it from training)


@dataclass
class History:
    """One row per epoch (train/val loss and accuracy, seconds), and the restored best epoch."""

    rows: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    @property
    def best(self) -> dict:
        """The row of the epoch whose weights were kept."""
        if not self.rows:
            return {}
        if self.best_epoch is None:
            return self.rows[-1]
        return self.rows[self.best_epoch - 1]

    def column(self, key: str) -> list[float]:
        """One metric over the epochs, e.g. ``history.column("val_accuracy")``."""
        return [r.get(key) for r in self.rows]

    @property
    def seconds(self) -> float:
        return float(sum(r["seconds"] for r in self.rows))

    def __repr__(self) -> str:
        best = self.best
        val = f", val_accuracy={best['val_accuracy']:.4f}" if "val_accuracy" in best else ""
        return f"History({len(self.rows)} epochs, best epoch {self.best_epoch}{val})"


def as_loader(data, batch_size: int = 64, shuffle: bool = False, seed: int = 0,
              num_workers: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader for a Dataset, a ``(X, y)`` tensor pair, or a DataLoader (returned as is).

    Usage: ``loader = as_loader((X_train, y_train), batch_size=64, shuffle=True)``
    """
    if isinstance(data, torch.utils.data.DataLoader):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        data = torch.utils.data.TensorDataset(data[0], torch.as_tensor(data[1]))
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=shuffle,
                                       generator=generator, num_workers=num_workers)


@torch.no_grad()
def predict_proba(model: nn.Module, data, batch_size: int = 128, device: str | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities ``(N, C)`` and true labels ``(N,)`` for a dataset, tensors or loader.

    Usage: ``probs, y = predict_proba(model, (X_val, y_val))``
    """
    device = device or settings.device()
    model.to(device).eval()
    probs, labels = [], []
    for x, y in as_loader(data, batch_size):
        probs.append(model(x.to(device)).float().softmax(-1).cpu())
        labels.append(torch.as_tensor(y))
    if not probs:
        raise ValueError("No data to predict on: the dataset is empty.")
    return torch.cat(probs), torch.cat(labels)


def evaluate(model: nn.Module, data, loss_fn: Callable | None = None, batch_size: int = 128,
             device: str | None = None) -> dict:
    """Loss and accuracy of ``model`` on a dataset, ``(X, y)`` tensors or a loader.

    Usage: ``evaluate(model, (X_val, y_val))  # {'loss': 0.21, 'accuracy': 0.94}``
    """
    probs, y = predict_proba(model, data, batch_size, device)
    loss_fn = loss_fn or nn.NLLLoss()
    loss = float(loss_fn(probs.clamp_min(1e-12).log(), y)) if isinstance(loss_fn, nn.NLLLoss) else float("nan")
    return {"loss": loss, "accuracy": float((probs.argmax(1) == y).float().mean()) if len(y) else float("nan")}


def fit(model: nn.Module, train, val=None, *, epochs: int = 10, lr: float = 1e-3,
        optimizer: torch.optim.Optimizer | None = None, scheduler=None,
        loss_fn: Callable | None = None, batch_size: int = 64, weight_decay: float = 0.0,
        patience: int | None = None, seed: int = 0, device: str | None = None,
        progress: bool = True, num_workers: int = 0, desc: str = "fit",
        select_best: bool = True) -> History:
    """Train ``model`` and return its :class:`History`.

    ``train``/``val`` may be Datasets, ``(X, y)`` tensor pairs or DataLoaders. Each epoch is
    evaluated on ``val``; the weights of the best validation epoch (accuracy, then loss) are
    restored at the end, and training stops early after ``patience`` epochs without improvement.
    With ``select_best=False`` the last epoch's weights are kept and ``val`` is only reported.
    Seeded for repeatable runs; CPU by default, CUDA when present.

    Usage: ``history = fit(head, (Xtr, ytr), (Xva, yva), epochs=30, lr=1e-2, patience=5)``
    """
    settings.seed_everything(seed)
    device = device or settings.device()
    model.to(device)
    loader = as_loader(train, batch_size, shuffle=True, seed=seed, num_workers=num_workers)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer is None:
        if not params:
            raise ValueError("The model has no trainable parameters: unfreeze something or add a head.")
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    history = History()
    best_key, best_state, waited = None, None, 0
    bar = tqdm(range(1, epochs + 1), desc=desc, unit="epoch", disable=not progress)
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        total, correct, loss_sum = 0, 0, 0.0
        for x, y in loader:
            x, y = x.to(device), torch.as_tensor(y).to(device)
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((out.argmax(1) == y).sum())
            total += len(y)
        if scheduler is not None:
            scheduler.step()
        row = {"epoch": epoch, "train_loss": loss_sum / max(total, 1),
               "train_accuracy": correct / max(total, 1)}
        if val is not None:
            metrics = evaluate(model, val, batch_size=max(batch_size, 128), device=device)
            row.update(val_loss=metrics["loss"], val_accuracy=metrics["accuracy"])
        row["seconds"] = time.perf_counter() - start
        history.rows.append(row)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k.endswith(("accuracy", "loss"))},
                        refresh=False)
        if val is not None and select_best:
            key = (row["val_accuracy"], -row["val_loss"])
            if best_key is None or key > best_key:
                best_key, waited, history.best_epoch = key, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
                if patience is not None and waited >= patience:
                    history.stopped_early = True
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def time_training_steps(model: nn.Module, train, optimizer: torch.optim.Optimizer, *,
                        batch_size: int = 32, steps: int = 3, seed: int = 0,
                        device: str | None = None) -> dict:
    """The cost of training ``model`` without paying for a whole epoch: one warm-up step, then
    ``steps`` timed optimizer steps on real batches of ``train``, scaled to one epoch. The model
    is changed by those steps: time a copy. Machine-dependent: report it, never assert on it.

    Returns ``{"seconds_per_step", "steps_per_epoch", "seconds_per_epoch"}``.

    Usage: ``cost = time_training_steps(copy.deepcopy(model), data.train.with_transform(tf), opt)``
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    settings.seed_everything(seed)
    device = device or settings.device()
    model.to(device).train()
    loader = as_loader(train, batch_size, shuffle=True, seed=seed)
    if len(loader) < steps + 1:
        raise ValueError(f"{len(loader)} batches of {batch_size} are too few to time {steps} steps "
                         "after a warm-up one: lower batch_size or steps.")
    loss_fn = nn.CrossEntropyLoss()
    batches = iter(loader)
    for i in range(steps + 1):
        if i == 1:  # the first step (allocations, lazy initialisation) is not timed
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
        x, y = next(batches)
        x, y = x.to(device), torch.as_tensor(y).to(device)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - start) / steps
    model.eval()
    return {"seconds_per_step": per_step, "steps_per_epoch": len(loader),
            "seconds_per_epoch": per_step * len(loader)}


@torch.inference_mode()
def images_per_second(model: nn.Module, input_shape, batch_size: int = 32, batches: int = 3,
                      device: str | None = None) -> float:
    """Inference throughput of any model on random inputs of ``input_shape`` (without the batch
    dimension), after one warm-up batch. Machine-dependent: report it, never assert on it.

    Usage: ``images_per_second(student, (3, 64, 64))``
    """
    device = device or settings.device()
    model = model.to(device).eval()
    x = torch.randn(batch_size, *input_shape, device=device)
    model(x)  # warm-up: allocations, lazy initialisation
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        model(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch_size * batches / (time.perf_counter() - start)


def fit_logistic_head(head: nn.Module, X: torch.Tensor, y: torch.Tensor, Cs=(0.01, 0.1, 1.0, 10.0),
                      cv: int = 5, seed: int = 0) -> dict:
    """Train a linear head as an L2-regularised logistic regression on cached features: a convex
    problem, solved exactly (scikit-learn), with the regularisation strength chosen by
    cross-validation on the training set only. The solution is copied into the head's last
    ``nn.Linear``, so the head can still be fine-tuned with the backbone afterwards.

    Usage: ``info = fit_logistic_head(model.head, X_train, y_train)``
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    import warnings

    start = time.perf_counter()
    Xn, yn = X.double().numpy(), np.asarray(y)
    folds = min(cv, int(np.bincount(yn).min()))
    # one BLAS thread: these small solves gain nothing from more and suffer badly when cores are shared
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-learn 1.9 announces changed defaults
        if folds >= 2 and len(Cs) > 1:
            search = LogisticRegressionCV(Cs=list(Cs), cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                          scoring="accuracy", max_iter=3000).fit(Xn, yn)
            C = float(np.atleast_1d(search.C_)[0])
        else:
            C = float(Cs[len(Cs) // 2])
        clf = LogisticRegression(C=C, max_iter=3000).fit(Xn, yn)
    linear = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    n_classes = linear.out_features
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # binary: one score s maps to logits (-s/2, s/2)
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((n_classes, coef.shape[1]))
    bias = np.full(n_classes, -1e4)  # classes absent from training are never predicted
    weight[clf.classes_] = coef
    bias[clf.classes_] = intercept
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight, dtype=linear.weight.dtype))
        linear.bias.copy_(torch.as_tensor(bias, dtype=linear.bias.dtype))
    return {"C": C, "seconds": time.perf_counter() - start,
            "train_accuracy": float(clf.score(Xn, yn))}
