"""Training and evaluating a model: one training loop, :func:`fit`, for every method of the course.

What differs between methods is the *loss*, so :func:`fit` takes a loss hook: a callable
``loss(model, batch, step)`` returning the loss (or ``(loss, {name: value})`` to log more). The
default is cross-entropy on ``(x, y)`` batches; domain adaptation (DANN, CORAL), multi-task
learning and distillation are loss hooks in :mod:`tl_course.methods`. A hook that is an
``nn.Module`` with parameters (e.g. DANN's domain classifier) is trained along with the model.
Every run is seeded, shows a progress bar, and returns a :class:`History`.

Usage::

    from tl_course.train import fit, evaluate
    history = fit(model, (X_train, y_train), (X_val, y_val), epochs=20, lr=1e-3, patience=5)
    history.best, evaluate(model, (X_val, y_val))
    fit(net, (Xs, ys), epochs=30, loss=DANNLoss(Xt, feature_dim=128), schedule="dann")
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import settings


@dataclass
class History:
    """One row per epoch (train loss and whatever the loss hook logs, validation metrics,
    seconds), the epoch whose weights were kept, and the seconds of every step when asked."""

    rows: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    step_seconds: list[float] = field(default_factory=list)

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
        """Total training seconds (evaluation included)."""
        return float(sum(r["seconds"] for r in self.rows))

    def first_epoch_reaching(self, threshold: float, key: str = "val_accuracy") -> int | None:
        """The first epoch (1-based) whose ``key`` is at least ``threshold``, or None if never.

        Usage: ``history.first_epoch_reaching(0.6)``
        """
        for row in self.rows:
            if row.get(key) is not None and row[key] >= threshold:
                return int(row["epoch"])
        return None

    def seconds_to_epoch(self, epoch: int | None) -> float | None:
        """Wall-clock seconds spent up to and including ``epoch`` (None stays None).

        Usage: ``history.seconds_to_epoch(history.first_epoch_reaching(0.6))``
        """
        if epoch is None:
            return None
        return float(sum(r["seconds"] for r in self.rows[:epoch]))

    def __repr__(self) -> str:
        best = self.best
        val = f", val_accuracy={best['val_accuracy']:.4f}" if "val_accuracy" in best else ""
        return f"History({len(self.rows)} epochs, best epoch {self.best_epoch}{val})"


@dataclass
class Step:
    """What a loss hook knows about the current optimizer step: its index (0-based), the total
    planned, the epoch (1-based), the device, and a seeded generator for the hook's own draws."""

    index: int
    total: int
    epoch: int
    device: str
    generator: torch.Generator

    @property
    def progress(self) -> float:
        """Training progress in [0, 1]: 0 at the first step, 1 at the last."""
        return self.index / max(self.total - 1, 1)


def cross_entropy(model: nn.Module, batch, step: Step):
    """The default loss hook: cross-entropy of ``model(x)`` against ``y`` for a batch ``(x, y)``,
    logging the training accuracy.

    Usage: ``fit(model, data, loss=cross_entropy)``
    """
    x, y = batch[0], batch[1]
    out = model(x)
    return F.cross_entropy(out, y), {"train_accuracy": (out.argmax(1) == y).float().mean()}


SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda p: 1.0,
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
    "dann": lambda p: (1.0 + 10.0 * p) ** -0.75,
    "warmup": lambda p: p / 0.1 if p < 0.1 else (1.0 - p) / 0.9 + 1e-3,
}
"""Learning-rate factors by training progress ``p`` in [0, 1], applied every step: ``cosine``
decays to zero, ``dann`` is the DANN paper's ``(1 + 10 p) ** -0.75``, ``warmup`` rises linearly
over the first 10% of steps, then decays linearly. ``"onecycle"`` (PyTorch's ``OneCycleLR``,
15% warm-up) is also accepted by :func:`fit`."""


def as_loader(data, batch_size: int = 64, shuffle: bool = False, seed: int = 0,
              num_workers: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader for a Dataset, a tuple of tensors of equal length (``(X, y)``, ``(X, y, w)``,
    ...), or a DataLoader (returned as is).

    Usage: ``loader = as_loader((X_train, y_train), batch_size=64, shuffle=True)``
    """
    if isinstance(data, torch.utils.data.DataLoader):
        return data
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], torch.Tensor):
        data = torch.utils.data.TensorDataset(*(torch.as_tensor(t) for t in data))
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=shuffle,
                                       generator=generator, num_workers=num_workers)


@contextmanager
def channels_last(model: nn.Module):
    """Within the block, ``model``'s 4-D weights are stored channels-last (NHWC) if it has 2-D
    convolutions; after it, the model is back in the layout it came in. A network whose first
    convolution sees images (a whole Lite0, the small CNNs) then runs in NHWC from that layer on,
    and oneDNN's CPU convolutions train 1.25-2x faster (``benchmarks/training_layout.py``). Top
    stages trained on cached maps are unchanged: their 1x1 and depthwise weights look the same in
    both layouts, so their NCHW inputs decide. Results equal the default layout's up to float
    rounding (summation order). :func:`fit`, :func:`predict`, :func:`predict_proba` and
    :func:`images_per_second` use it.

    Usage: ``with channels_last(model): model(x)``
    """
    weights = [p for p in model.parameters() if p.dim() == 4]
    convert = any(isinstance(m, nn.Conv2d) for m in model.modules()) and any(
        not w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    if convert:
        model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        if convert:
            model.to(memory_format=torch.contiguous_format)


def _to(batch, device: str):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch) if isinstance(batch, tuple) else [_to(b, device) for b in batch]
    return batch


def _scheduler(optimizer, schedule, total: int):
    if schedule is None or schedule == "constant":
        return None
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=max(total, 1), pct_start=0.15)
    factor = SCHEDULES[schedule] if isinstance(schedule, str) else schedule
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: factor(i / max(total - 1, 1)))


def fit(model: nn.Module, train=None, val=None, *, epochs: int = 10, lr: float = 1e-3,
        weight_decay: float = 0.0, optimizer: torch.optim.Optimizer | None = None,
        schedule: str | Callable[[float], float] | None = None, loss: Callable | None = None,
        batch_size: int = 64, steps_per_epoch: int | None = None, patience: int | None = None,
        select_best: bool = True, metrics: Callable[[nn.Module], dict] | None = None, seed: int = 0,
        device: str | None = None, threads: int | None = None, progress: bool = True,
        desc: str = "fit", num_workers: int = 0, step_times: bool = False) -> History:
    """Train ``model`` and return its :class:`History`.

    - ``train``: a Dataset, a tuple of tensors (``(X, y)``, ``(X, y, teacher_logits)``, ...) or a
      DataLoader, shuffled every epoch; or None when the ``loss`` hook draws its own batches
      (then ``steps_per_epoch`` says how many steps make an epoch).
    - ``loss``: ``loss(model, batch, step) -> loss`` or ``(loss, logs)``; default
      :func:`cross_entropy`. Batches arrive on the device.
    - ``optimizer``: default AdamW over the trainable parameters (and the hook's), at ``lr``.
    - ``schedule``: a name in :data:`SCHEDULES`, ``"onecycle"``, or ``factor(progress)``,
      applied every step.
    - ``val``: evaluated after every epoch (loss, accuracy); with ``select_best`` the weights of
      the best epoch (accuracy, then loss) are restored at the end and ``patience`` epochs without
      improvement stop training. ``select_best=False`` keeps the last weights (``val`` is only
      reported). ``metrics(model)`` adds numbers of your own to every row.
    - ``threads``: run on that many threads (see :func:`tl_course.settings.threads`).

    Usage: ``history = fit(head, (Xtr, ytr), (Xva, yva), epochs=30, lr=1e-2, patience=5)``
    """
    with settings.threads(threads), channels_last(model):
        return _fit(model, train, val, epochs, lr, weight_decay, optimizer, schedule, loss, batch_size,
                    steps_per_epoch, patience, select_best, metrics, seed, device, progress, desc,
                    num_workers, step_times)


def _fit(model, train, val, epochs, lr, weight_decay, optimizer, schedule, loss, batch_size,
         steps_per_epoch, patience, select_best, metrics, seed, device, progress, desc, num_workers,
         step_times) -> History:
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}.")
    settings.seed_everything(seed)
    device = device or settings.device()
    loss = loss or cross_entropy
    model.to(device)
    hook_params = []
    if isinstance(loss, nn.Module):
        loss.to(device)
        hook_params = [p for p in loss.parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer is None:
        if not params and not hook_params:
            raise ValueError("The model has no trainable parameters: unfreeze something or add a head.")
        optimizer = torch.optim.AdamW(params + hook_params, lr=lr, weight_decay=weight_decay)
    elif hook_params:
        known = {id(p) for g in optimizer.param_groups for p in g["params"]}
        missing = [p for p in hook_params if id(p) not in known]
        if missing:
            optimizer.add_param_group({"params": missing})
    loader = None if train is None else as_loader(train, batch_size, shuffle=True, seed=seed,
                                                  num_workers=num_workers)
    if loader is None and steps_per_epoch is None:
        raise ValueError("Without training data, give steps_per_epoch (the loss hook draws its own batches).")
    per_epoch = steps_per_epoch if steps_per_epoch is not None else len(loader)
    if per_epoch < 1:
        raise ValueError("No training data: the training set is empty.")
    total = epochs * per_epoch
    scheduler = _scheduler(optimizer, schedule, total)
    generator = torch.Generator().manual_seed(seed)
    cuda = str(device).startswith("cuda")
    history = History()
    best_key, best_state, waited, index = None, None, 0, 0
    bar = tqdm(range(1, epochs + 1), desc=desc, unit="epoch", disable=not progress)
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        if isinstance(loss, nn.Module):
            loss.train()
        sums: dict[str, float] = {}
        weight_sum = 0.0
        batches = iter(loader) if loader is not None else None
        for _ in range(per_epoch):
            if batches is not None:
                try:
                    batch = next(batches)
                except StopIteration:  # steps_per_epoch beyond one pass: start another
                    batches = iter(loader)
                    batch = next(batches)
                batch = _to(batch, device)
            else:
                batch = None
            step_start = time.perf_counter()
            out = loss(model, batch, Step(index, total, epoch, device, generator))
            value, logs = out if isinstance(out, tuple) else (out, {})
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if step_times:
                if cuda:
                    torch.cuda.synchronize()
                history.step_seconds.append(time.perf_counter() - step_start)
            weight = float(len(batch[0])) if isinstance(batch, (list, tuple)) and batch else 1.0
            weight_sum += weight
            for key, v in {"train_loss": value, **logs}.items():
                sums[key] = sums.get(key, 0.0) + weight * float(v.detach() if isinstance(v, torch.Tensor) else v)
            index += 1
        row: dict[str, Any] = {"epoch": epoch, **{k: v / weight_sum for k, v in sums.items()}}
        if val is not None:
            scores = evaluate(model, val, batch_size=max(batch_size, 128), device=device)
            row.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
        if metrics is not None:
            row.update(metrics(model))
            model.train()
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
    if isinstance(loss, nn.Module):
        loss.eval()
    return history


class _Diverged(Exception):
    """Raised inside :func:`lr_range_test`'s loss hook to end the test once the loss explodes."""


def lr_range_test(model: nn.Module, train, *, lr_min: float = 1e-6, lr_max: float = 1.0, steps: int = 100,
                  batch_size: int = 64, weight_decay: float = 0.0, stop_factor: float = 4.0,
                  smoothing: float = 0.05, seed: int = 0, progress: bool = False) -> dict:
    """The learning-rate range test (L. Smith 2017; fast.ai's ``lr_find``): train ``model`` for up to
    ``steps`` steps while one learning rate for all its trainable parameters grows exponentially
    from ``lr_min`` to ``lr_max``, record every step's loss, stop once the smoothed loss exceeds
    ``stop_factor`` times its minimum. The model's weights are restored afterwards: the test only
    looks. Runs through :func:`fit` (the course's one training loop).

    Returns ``{"lr": [...], "loss": [...], "smoothed": [...], "lr_at_min": float, "lr_climb": float
    | None}``: ``lr_climb`` is the first rate where the smoothed loss exceeds 1.5 times its lowest
    value so far, the ceiling. Good learning rates lie below the minimum of the smoothed curve
    (about ``lr_at_min / 10`` is a usual choice) and well below the ceiling.

    Usage: ``r = lr_range_test(model, (X, y), lr_min=1e-6, lr_max=1e-1); plt.semilogx(r["lr"], r["smoothed"])``
    """
    if not 0 < lr_min < lr_max:
        raise ValueError(f"need 0 < lr_min < lr_max, got {lr_min} and {lr_max}.")
    ratio = lr_max / lr_min
    lrs, losses, smoothed = [], [], []

    def recording(m, batch, step):
        value, logs = cross_entropy(m, batch, step)
        loss = float(value.detach())
        if not math.isfinite(loss):
            raise _Diverged
        lrs.append(lr_min * ratio ** step.progress)
        losses.append(loss)
        smoothed.append(loss if not smoothed else smoothing * loss + (1 - smoothing) * smoothed[-1])
        if len(smoothed) > 5 and smoothed[-1] > stop_factor * min(smoothed):
            raise _Diverged
        return value, logs

    state = copy.deepcopy(model.state_dict())
    try:
        fit(model, train, epochs=1, steps_per_epoch=steps, lr=lr_min, weight_decay=weight_decay,
            schedule=lambda p: ratio ** p, loss=recording, batch_size=batch_size, select_best=False,
            seed=seed, progress=progress, desc="lr range test")
    except _Diverged:
        pass
    finally:
        model.load_state_dict(state)
        model.eval()
    if not smoothed:
        raise ValueError("The loss was not finite from the first step: lower lr_min.")
    best = min(range(len(smoothed)), key=smoothed.__getitem__)
    climb = next((lrs[i] for i in range(1, len(smoothed)) if smoothed[i] > 1.5 * min(smoothed[:i])), None)
    return {"lr": lrs, "loss": losses, "smoothed": smoothed, "lr_at_min": lrs[best], "lr_climb": climb}


def epochs_for_steps(n_examples: int, batch_size: int, steps: int) -> int:
    """The number of epochs that gives about ``steps`` optimizer steps on ``n_examples``, so runs
    on 10 or 1000 examples get the same amount of training.

    Usage: ``fit(model, (X, y), epochs=epochs_for_steps(len(X), 32, 300), batch_size=32)``
    """
    per_epoch = max(1, math.ceil(n_examples / max(1, batch_size)))
    return max(1, math.ceil(steps / per_epoch))


# --------------------------------------------------------------------------- predicting, evaluating
@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = 256, device: str | None = None) -> torch.Tensor:
    """``model(X)`` in eval mode, batch by batch, without gradients, as float on the CPU: logits
    of a classifier, or features of a feature extractor. The model's train/eval mode is restored.

    Usage: ``logits = predict(model, X_val)``; ``F_val = predict(model.features, X_val)``
    """
    device = device or settings.device()
    was_training = model.training
    model.to(device).eval()
    try:
        with channels_last(model):
            outs = [model(X[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(X), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


@torch.no_grad()
def predict_proba(model: nn.Module, data, batch_size: int = 128, device: str | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities ``(N, C)`` and true labels ``(N,)`` for a dataset, tensors or loader.

    Usage: ``probs, y = predict_proba(model, (X_val, y_val))``
    """
    device = device or settings.device()
    model.to(device).eval()
    probs, labels = [], []
    with channels_last(model):
        for batch in as_loader(data, batch_size):
            x, y = batch[0], batch[1]
            probs.append(model(x.to(device)).float().softmax(-1).cpu())
            labels.append(torch.as_tensor(y))
    if not probs:
        raise ValueError("No data to predict on: the dataset is empty.")
    return torch.cat(probs), torch.cat(labels)


def evaluate(model: nn.Module, data, batch_size: int = 128, device: str | None = None) -> dict:
    """Loss (cross-entropy) and accuracy of ``model`` on a dataset, ``(X, y)`` tensors or a loader.

    Usage: ``evaluate(model, (X_val, y_val))  # {'loss': 0.21, 'accuracy': 0.94}``
    """
    probs, y = predict_proba(model, data, batch_size, device)
    loss = float(F.nll_loss(probs.clamp_min(1e-12).log(), y))
    return {"loss": loss, "accuracy": float((probs.argmax(1) == y).float().mean())}


def accuracy(model: nn.Module, X: torch.Tensor, y) -> float:
    """Top-1 accuracy of ``model`` on tensors ``X`` with labels ``y``.

    Usage: ``accuracy(model, X_val, y_val)``
    """
    return float((predict(model, X).argmax(1) == torch.as_tensor(y)).float().mean())


# --------------------------------------------------------------------------- cost
def time_training_steps(model: nn.Module, train, optimizer: torch.optim.Optimizer, *,
                        batch_size: int = 32, steps: int = 3, seed: int = 0,
                        device: str | None = None) -> dict:
    """The cost of training ``model`` without paying for a whole epoch: one warm-up step, then
    ``steps`` timed optimizer steps of :func:`fit` on real batches of ``train``, scaled to one
    epoch. The model is changed by those steps: time a copy. Machine-dependent: report it, never
    assert on it.

    Returns ``{"seconds_per_step", "steps_per_epoch", "seconds_per_epoch"}``.

    Usage: ``cost = time_training_steps(copy.deepcopy(model), data.train.with_transform(tf), opt)``
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    per_epoch = len(as_loader(train, batch_size))
    if per_epoch < steps + 1:
        raise ValueError(f"{per_epoch} batches of {batch_size} are too few to time {steps} steps "
                         "after a warm-up one: lower batch_size or steps.")
    history = fit(model, train, epochs=1, steps_per_epoch=steps + 1, optimizer=optimizer,
                  batch_size=batch_size, seed=seed, device=device, progress=False, step_times=True)
    per_step = sum(history.step_seconds[1:]) / steps  # the first step (allocations) is not counted
    return {"seconds_per_step": per_step, "steps_per_epoch": per_epoch,
            "seconds_per_epoch": per_step * per_epoch}


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
    with channels_last(model):
        model(x)  # warm-up: allocations, lazy initialisation
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(batches):
            model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return batch_size * batches / seconds
