"""tl_course.training: fit/evaluate on tiny problems: accuracy, history, early stopping,
best-state restore, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tl_course.settings import seed_everything
from tl_course.training import (History, as_loader, evaluate, few_shot_indices, fit, time_training_steps,
                                fit_logistic_head, predict_proba)


def _blobs(n=120, d=8, classes=3, seed=0, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g) * 3
    y = torch.arange(n) % classes
    X = centres[y] + spread * torch.randn(n, d, generator=g)
    return X, y


def _model(d=8, classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, classes))


def test_fit_separable_problem():
    train, val = _blobs(seed=0), _blobs(60, seed=0)
    model = _model()
    history = fit(model, train, val, epochs=15, lr=1e-2, batch_size=16, progress=False)
    assert history.best["val_accuracy"] >= 0.95
    assert evaluate(model, val)["accuracy"] >= 0.95
    assert not model.training
    assert len(history.rows) == 15 and not history.stopped_early
    assert [r["epoch"] for r in history.rows] == list(range(1, 16))
    for row in history.rows:
        assert set(row) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}
        assert 0 <= row["train_accuracy"] <= 1 and row["seconds"] >= 0
    assert history.rows[-1]["train_loss"] < history.rows[0]["train_loss"]
    assert history.column("val_accuracy") == [r["val_accuracy"] for r in history.rows]
    assert history.seconds == pytest.approx(sum(r["seconds"] for r in history.rows))
    assert "best epoch" in repr(history)


def test_fit_without_val_keeps_last_epoch():
    model = _model()
    history = fit(model, _blobs(), epochs=3, progress=False)
    assert history.best_epoch is None and history.best == history.rows[-1]
    assert "val_accuracy" not in history.rows[0]


def test_early_stopping_with_patience():
    train, val = _blobs(), _blobs(60, seed=1)
    # lr=0: nothing changes, so no epoch after the first improves
    history = fit(_model(), train, val, epochs=20, lr=0.0, patience=3, progress=False)
    assert history.stopped_early
    assert len(history.rows) == 4 and history.best_epoch == 1


def test_best_state_is_restored():
    X, y = _blobs(160, spread=2.5, seed=3)  # overlapping classes: val accuracy fluctuates
    Xv, yv = _blobs(80, spread=2.5, seed=3)
    model = _model()
    history = fit(model, (X, y), (Xv, yv), epochs=12, lr=0.05, batch_size=8, progress=False)
    accs = history.column("val_accuracy")
    assert accs[history.best_epoch - 1] == max(accs)
    assert evaluate(model, (Xv, yv))["accuracy"] == pytest.approx(history.best["val_accuracy"])
    assert evaluate(model, (Xv, yv))["loss"] == pytest.approx(history.best["val_loss"], rel=1e-5)


def test_best_state_restore_actually_rolls_back():
    """When later epochs are worse than the best, the returned weights are the best epoch's."""
    Xv, yv = _blobs(60, seed=1)
    model = nn.Linear(8, 3)

    class Wreck:  # a "scheduler" that zeroes the model from epoch 2 on (before evaluation)
        epoch = 0

        def step(self):
            self.epoch += 1
            if self.epoch >= 2:
                with torch.no_grad():
                    for p in model.parameters():
                        p.zero_()

    history = fit(model, _blobs(seed=1), (Xv, yv), epochs=4, lr=0.1, batch_size=16,
                  scheduler=Wreck(), progress=False)
    accs = history.column("val_accuracy")
    assert accs[0] >= 0.9 and accs[1:] == [pytest.approx(1 / 3)] * 3
    assert history.best_epoch == 1
    assert evaluate(model, (Xv, yv))["accuracy"] == pytest.approx(accs[0])
    assert model.weight.abs().sum() > 0


def test_select_best_false_keeps_last_weights():
    Xv, yv = _blobs(60, seed=1)
    model = _model()
    history = fit(model, _blobs(seed=1), (Xv, yv), epochs=4, lr=1e-2, select_best=False, progress=False)
    assert history.best_epoch is None
    assert evaluate(model, (Xv, yv))["accuracy"] == pytest.approx(history.rows[-1]["val_accuracy"])


def test_fit_is_deterministic():
    train, val = _blobs(seed=2, spread=1.0), _blobs(60, seed=2, spread=1.0)
    m1, m2 = _model(seed=5), _model(seed=5)
    h1 = fit(m1, train, val, epochs=4, lr=1e-2, batch_size=16, seed=7, progress=False)
    h2 = fit(m2, train, val, epochs=4, lr=1e-2, batch_size=16, seed=7, progress=False)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in h1.rows]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in h2.rows]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    m3 = _model(seed=5)
    fit(m3, train, val, epochs=4, lr=1e-2, batch_size=16, seed=8, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m3.state_dict().values()))


def test_fit_with_no_trainable_parameters():
    model = _model()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(model, _blobs(), epochs=1, progress=False)


def test_fit_on_a_dataset_and_a_loader():
    X, y = _blobs(60)
    ds = torch.utils.data.TensorDataset(X, y)
    h1 = fit(_model(), ds, epochs=2, progress=False)
    h2 = fit(_model(), as_loader((X, y), 64, shuffle=True), epochs=2, progress=False)
    assert len(h1.rows) == len(h2.rows) == 2


def test_as_loader_and_predict_proba():
    X, y = _blobs(10)
    loader = as_loader((X, y.numpy()), batch_size=4)
    assert as_loader(loader) is loader
    assert [len(b[0]) for b in loader] == [4, 4, 2]
    probs, labels = predict_proba(_model(), (X, y))
    assert probs.shape == (10, 3) and torch.allclose(probs.sum(1), torch.ones(10))
    assert torch.equal(labels, y)


def test_evaluate_on_empty_data():
    with pytest.raises(ValueError, match="empty"):
        evaluate(_model(), (torch.empty(0, 8), torch.empty(0, dtype=torch.long)))


def test_history_empty():
    assert History().best == {}


def test_few_shot_indices():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 7)
    idx = few_shot_indices(labels, 5, seed=0)
    assert np.bincount(labels[idx]).tolist() == [5, 3, 5]
    assert np.array_equal(idx, few_shot_indices(labels, 5, seed=0))
    assert np.all(np.diff(idx) > 0)


def test_fit_logistic_head_binary_and_multiclass():
    for classes in (2, 3):
        X, y = _blobs(90, d=6, classes=classes, seed=4)
        head = nn.Sequential(nn.Dropout(0.2), nn.Linear(6, classes))
        info = fit_logistic_head(head, X, y, Cs=(0.1, 1.0), cv=3)
        assert info["train_accuracy"] >= 0.95 and info["C"] in (0.1, 1.0)
        assert evaluate(head, (X, y))["accuracy"] >= 0.95


def test_seed_everything_repeats_random_numbers():
    seed_everything(3)
    a = (np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert (np.random.rand(), torch.rand(1).item()) == a


def test_time_training_steps_trains_and_scales_to_an_epoch():
    X, y = _blobs(n=130)
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cost = time_training_steps(model, (X, y), opt, batch_size=32, steps=2)
    assert cost["steps_per_epoch"] == 5  # ceil(130 / 32)
    assert cost["seconds_per_step"] > 0
    assert cost["seconds_per_epoch"] == pytest.approx(cost["seconds_per_step"] * 5)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # it really trained
    assert not model.training


def test_time_training_steps_needs_enough_batches():
    X, y = _blobs(n=40)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="too few"):
        time_training_steps(model, (X, y), opt, batch_size=32, steps=3)
    with pytest.raises(ValueError, match="at least 1"):
        time_training_steps(model, (X, y), opt, steps=0)
