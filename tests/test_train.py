"""tl_course.train: fit/evaluate on tiny problems: accuracy, history, early stopping,
best-state restore, determinism."""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest
import torch
from torch import nn

from tl_course.settings import seed_everything
from tl_course.data import few_shot_indices
from tl_course.train import (SCHEDULES, History, Step, accuracy, as_loader, cross_entropy, epochs_for_steps,
                             evaluate, fit, images_per_second, predict, predict_proba, time_training_steps)

from helpers import blobs



def _model(d=8, classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, classes))


def test_fit_separable_problem():
    train, val = blobs(seed=0), blobs(60, seed=0)
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
    history = fit(model, blobs(), epochs=3, progress=False)
    assert history.best_epoch is None and history.best == history.rows[-1]
    assert "val_accuracy" not in history.rows[0]


def test_early_stopping_with_patience():
    train, val = blobs(), blobs(60, seed=1)
    # lr=0: nothing changes, so no epoch after the first improves
    history = fit(_model(), train, val, epochs=20, lr=0.0, patience=3, progress=False)
    assert history.stopped_early
    assert len(history.rows) == 4 and history.best_epoch == 1


def test_best_state_is_restored():
    X, y = blobs(160, spread=2.5, seed=3)  # overlapping classes: val accuracy fluctuates
    Xv, yv = blobs(80, spread=2.5, seed=3)
    model = _model()
    history = fit(model, (X, y), (Xv, yv), epochs=12, lr=0.05, batch_size=8, progress=False)
    accs = history.column("val_accuracy")
    assert accs[history.best_epoch - 1] == max(accs)
    assert evaluate(model, (Xv, yv))["accuracy"] == pytest.approx(history.best["val_accuracy"])
    assert evaluate(model, (Xv, yv))["loss"] == pytest.approx(history.best["val_loss"], rel=1e-5)


def test_best_state_restore_actually_rolls_back():
    """When later epochs are worse than the best, the returned weights are the best epoch's."""
    Xv, yv = blobs(60, seed=1)
    model = nn.Linear(8, 3)

    def wreck(m, batch, step: Step):  # a loss hook that zeroes the model from epoch 2 on
        if step.epoch >= 2:
            with torch.no_grad():
                for p in m.parameters():
                    p.zero_()
            return m(batch[0]).sum() * 0.0  # zero gradients: plain SGD leaves the zeros alone
        return cross_entropy(m, batch, step)

    history = fit(model, blobs(seed=1), (Xv, yv), epochs=4, batch_size=16, loss=wreck,
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    accs = history.column("val_accuracy")
    assert accs[0] >= 0.9 and accs[1:] == [pytest.approx(1 / 3)] * 3
    assert history.best_epoch == 1
    assert evaluate(model, (Xv, yv))["accuracy"] == pytest.approx(accs[0])
    assert model.weight.abs().sum() > 0


def test_select_best_false_keeps_last_weights():
    Xv, yv = blobs(60, seed=1)
    model = _model()
    history = fit(model, blobs(seed=1), (Xv, yv), epochs=4, lr=1e-2, select_best=False, progress=False)
    assert history.best_epoch is None
    assert evaluate(model, (Xv, yv))["accuracy"] == pytest.approx(history.rows[-1]["val_accuracy"])


def test_fit_is_deterministic():
    train, val = blobs(seed=2, spread=1.0), blobs(60, seed=2, spread=1.0)
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
        fit(model, blobs(), epochs=1, progress=False)


def test_fit_on_a_dataset_and_a_loader():
    X, y = blobs(60)
    ds = torch.utils.data.TensorDataset(X, y)
    h1 = fit(_model(), ds, epochs=2, progress=False)
    h2 = fit(_model(), as_loader((X, y), 64, shuffle=True), epochs=2, progress=False)
    assert len(h1.rows) == len(h2.rows) == 2


def test_as_loader_and_predict_proba():
    X, y = blobs(10)
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


def test_seed_everything_repeats_random_numbers():
    seed_everything(3)
    a = (np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert (np.random.rand(), torch.rand(1).item()) == a


def test_time_training_steps_trains_and_scales_to_an_epoch():
    X, y = blobs(n=130)
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
    X, y = blobs(n=40)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="too few"):
        time_training_steps(model, (X, y), opt, batch_size=32, steps=3)
    with pytest.raises(ValueError, match="at least 1"):
        time_training_steps(model, (X, y), opt, steps=0)


# --------------------------------------------------------------------------- loss hooks, schedules
def test_a_loss_hook_module_with_parameters_is_trained():
    """An nn.Module loss hook's own parameters join the optimizer (e.g. a domain classifier)."""

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.temperature = nn.Parameter(torch.tensor(5.0))

        def forward(self, model, batch, step):
            x, y = batch
            return nn.functional.cross_entropy(model(x) / self.temperature, y), {"t": self.temperature}

    hook = Scaled()
    model = _model()
    history = fit(model, blobs(), epochs=3, lr=0.05, loss=hook, progress=False)
    assert hook.temperature.item() != pytest.approx(5.0)
    assert not hook.training and not model.training
    assert "t" in history.rows[0] and "train_accuracy" not in history.rows[0]
    # the same with an optimizer the caller made for the model only
    hook2, model2 = Scaled(), _model()
    fit(model2, blobs(), epochs=2, loss=hook2, optimizer=torch.optim.SGD(model2.parameters(), lr=0.1),
        progress=False)
    assert hook2.temperature.item() != pytest.approx(5.0)


def test_fit_without_training_data_draws_batches_in_the_hook():
    X, y = blobs()
    seen = []

    def hook(model, batch, step):
        assert batch is None
        seen.append((step.index, step.epoch, step.total))
        idx = torch.randint(0, len(X), (16,), generator=step.generator)
        return nn.functional.cross_entropy(model(X[idx]), y[idx])

    model = _model()
    history = fit(model, None, (X, y), epochs=3, lr=1e-2, loss=hook, steps_per_epoch=7, progress=False)
    assert len(seen) == 21 and seen[0] == (0, 1, 21) and seen[-1] == (20, 3, 21)
    assert len(history.rows) == 3 and {"train_loss", "val_accuracy"} <= set(history.rows[0])
    with pytest.raises(ValueError, match="steps_per_epoch"):
        fit(_model(), None, epochs=1, loss=hook, progress=False)


def test_steps_per_epoch_beyond_one_pass_restarts_the_loader():
    X, y = blobs(20)
    history = fit(_model(), (X, y), epochs=1, batch_size=8, steps_per_epoch=5, progress=False)
    assert len(history.rows) == 1


def test_extra_tensors_reach_the_hook():
    X, y = blobs(40)
    w = torch.rand(40)
    sizes = []

    def hook(model, batch, step):
        xb, yb, wb = batch
        sizes.append(len(wb))
        return (nn.functional.cross_entropy(model(xb), yb, reduction="none") * wb).mean()

    fit(_model(), (X, y, w), epochs=1, batch_size=16, loss=hook, progress=False)
    assert sizes == [16, 16, 8]


def test_cosine_schedule_ends_near_zero_lr():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    lrs = []

    def hook(m, batch, step):
        lrs.append(opt.param_groups[0]["lr"])  # the rate this step uses
        return cross_entropy(m, batch, step)

    fit(model, blobs(64), epochs=4, batch_size=16, optimizer=opt, schedule="cosine", loss=hook, progress=False)
    assert len(lrs) == 16 and lrs[0] == pytest.approx(0.1) and lrs[-1] < 1e-6
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert SCHEDULES["cosine"](0.0) == pytest.approx(1.0) and SCHEDULES["cosine"](1.0) == pytest.approx(0.0)
    assert SCHEDULES["dann"](1.0) == pytest.approx(11 ** -0.75)
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1)
    fit(model, blobs(64), epochs=2, batch_size=16, optimizer=opt2, schedule=lambda p: 1 - p, progress=False)
    assert opt2.param_groups[0]["lr"] < 0.02
    fit(_model(), blobs(64), epochs=2, batch_size=16, schedule="onecycle", progress=False)


def test_fit_records_step_times():
    h = fit(_model(), blobs(64), epochs=2, batch_size=16, step_times=True, progress=False)
    assert len(h.step_seconds) == 8 and all(t >= 0 for t in h.step_seconds)


def test_metrics_are_added_to_every_row():
    Xv, yv = blobs(30, seed=2)
    h = fit(_model(), blobs(), epochs=2, progress=False, metrics=lambda m: {"target_accuracy": accuracy(m, Xv, yv)})
    assert all(0 <= r["target_accuracy"] <= 1 for r in h.rows)


def test_history_first_epoch_reaching_and_seconds_to_epoch():
    h = History(rows=[{"epoch": 1, "val_accuracy": 0.4, "seconds": 1.0},
                      {"epoch": 2, "val_accuracy": 0.7, "seconds": 2.0},
                      {"epoch": 3, "val_accuracy": 0.9, "seconds": 4.0, "other": 1.0}])
    assert h.first_epoch_reaching(0.6) == 2 and h.first_epoch_reaching(0.9) == 3
    assert h.first_epoch_reaching(0.95) is None
    assert h.first_epoch_reaching(0.5, key="other") == 3
    assert h.seconds_to_epoch(2) == pytest.approx(3.0) and h.seconds_to_epoch(3) == pytest.approx(7.0)
    assert h.seconds_to_epoch(None) is None
    assert h.seconds_to_epoch(h.first_epoch_reaching(0.95)) is None


def test_predict_accuracy_and_epochs_for_steps():
    X, y = blobs(50)
    model = _model()
    fit(model, (X, y), epochs=10, lr=1e-2, progress=False)
    logits = predict(model, X, batch_size=7)
    assert logits.shape == (50, 3) and not logits.requires_grad
    assert accuracy(model, X, y) == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert accuracy(model, X, y.numpy()) == accuracy(model, X, y)
    assert epochs_for_steps(100, 32, 300) == 75  # 4 steps per epoch
    assert epochs_for_steps(10, 32, 300) == 300 and epochs_for_steps(1000, 32, 1) == 1


def test_evaluate_is_always_cross_entropy():
    X, y = blobs(30)
    model = _model()
    expected = nn.functional.cross_entropy(predict(model, X), y).item()
    assert evaluate(model, (X, y))["loss"] == pytest.approx(expected, rel=1e-5)


def test_images_per_second():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert images_per_second(model, (3, 16, 16), batch_size=4, batches=2) > 0


def test_lr_range_test_sweeps_up_stops_when_the_loss_explodes_and_restores_the_weights():
    from tl_course.train import lr_range_test

    torch.manual_seed(0)
    X = torch.randn(256, 8)
    y = (X[:, 0] + X[:, 1] > 0).long()
    model = torch.nn.Linear(8, 2)
    before = copy.deepcopy(model.state_dict())
    r = lr_range_test(model, (X, y), lr_min=1e-4, lr_max=1e4, steps=200, batch_size=32)
    assert all(a < b for a, b in zip(r["lr"], r["lr"][1:])), "the learning rate grows every step"
    assert r["lr"][0] == pytest.approx(1e-4)
    assert len(r["lr"]) < 200, "a learning rate of 1e4 makes the loss explode: the test stops early"
    assert 1e-3 < r["lr_at_min"] < 1e3
    assert r["lr_at_min"] < r["lr_climb"] <= r["lr"][-1], "the loss climbs above the minimum's rate"
    assert min(r["smoothed"]) < r["smoothed"][0], "the loss fell somewhere on the way up"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "weights restored"
    with pytest.raises(ValueError, match="lr_min < lr_max"):
        lr_range_test(model, (X, y), lr_min=1.0, lr_max=0.1)


def _small_convnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))


def test_convolutional_models_train_and_predict_channels_last(monkeypatch):
    """fit() and predict() run a convnet with its 4-D weights channels-last (the faster layout for
    oneDNN) and hand it back in the layout it came in; a model without convolutions is left as it
    is; training gives the default layout's result up to float rounding."""
    import tl_course.train as train_module
    from tl_course.train import channels_last

    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(64, 3, 12, 12, generator=g), torch.randint(0, 2, (64,), generator=g)
    layouts = []
    fast = _small_convnet()
    real_forward = fast.forward
    fast.forward = lambda x: (layouts.append(fast[0].weight.is_contiguous()), real_forward(x))[1]
    fit(fast, (X, y), epochs=2, lr=1e-2, progress=False)
    assert layouts and not any(layouts)            # every training step ran channels-last
    assert fast[0].weight.is_contiguous()          # and the model came back in its own layout
    layouts.clear()
    fast_logits = predict(fast, X)
    assert layouts and not any(layouts) and fast[0].weight.is_contiguous()

    with monkeypatch.context() as m:  # the same run in the default layout
        m.setattr(train_module, "channels_last", lambda model: contextlib.nullcontext(model))
        plain = _small_convnet()
        fit(plain, (X, y), epochs=2, lr=1e-2, progress=False)
        plain_logits = predict(plain, X)
    assert torch.allclose(fast_logits, plain_logits, atol=1e-4)
    assert not torch.equal(fast[0].weight, _small_convnet()[0].weight)  # it did train

    reference = _small_convnet()
    moved = copy.deepcopy(reference)
    with channels_last(moved):
        assert moved[0].weight.is_contiguous(memory_format=torch.channels_last)
        for a, b in zip(reference.state_dict().values(), moved.state_dict().values()):
            assert torch.equal(a, b) and a.shape == b.shape
        with torch.no_grad():
            assert torch.allclose(reference.eval()(X), moved.eval()(X), atol=1e-5)
    assert moved[0].weight.is_contiguous()

    already = _small_convnet().to(memory_format=torch.channels_last)  # a layout chosen by the user stays
    with channels_last(already):
        pass
    assert already[0].weight.is_contiguous(memory_format=torch.channels_last)

    mlp = nn.Sequential(nn.Linear(4, 2))
    with channels_last(mlp) as same:
        assert same is mlp and mlp[0].weight.is_contiguous()
