"""Unit tests of the building blocks of notebooks 01-03 (tl_course.methods.adaptation and
.multitask, the data helpers, truncate_backbone) and of the exercises of those notebooks.
Synthetic data only, except one test that cuts the offline EfficientNet-Lite0: the whole file
runs in seconds on a CPU."""
import numpy as np
import pytest
import torch
from torch import nn

from tl_course.data import image_tensors, split_indices
from tl_course.data.digits import interpolate_domains
from tl_course.methods import adaptation as ad
from tl_course.methods.adaptation import AdaptationLoss, CORALLoss, DANNLoss
from tl_course.methods.multitask import MultiTask, fit_multitask, rotations
from tl_course.methods.shift import domain_accuracy, importance_weights
from tl_course.models.small_cnn import SmallCNN, conv_trunk, mlp
from tl_course.models.transfer import truncate_backbone
from tl_course.plots import embed_2d
from tl_course.probe import probe_accuracy
from tl_course.train import History, accuracy, epochs_for_steps, fit, predict


# --------------------------------------------------------------------------- helpers
def _blobs(n=200, d=5, shift=0.0, seed=0):
    """Two Gaussian classes in d dimensions, the whole cloud moved by ``shift``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    X = torch.randn(n, d, generator=g) + 5.0 * y[:, None].float() * torch.eye(d)[0] + shift
    return X, y


class _FakeDataset:
    def __init__(self, n=6, size=8):
        rng = np.random.default_rng(0)
        self.samples = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
        self.targets = np.arange(n) % 3


# --------------------------------------------------------------------------- data helpers
def test_image_tensors_shapes_scaling_and_options():
    ds = _FakeDataset()
    X, y = image_tensors(ds)
    assert X.shape == (6, 3, 8, 8) and X.dtype == torch.float32
    assert y.tolist() == [0, 1, 2, 0, 1, 2]
    expected = (torch.as_tensor(ds.samples[0, 0, 0, 0]).float() / 255 - 0.5) / 0.25
    assert torch.isclose(X[0, 0, 0, 0], expected)
    assert X.min() >= -2 and X.max() <= 2
    G, _ = image_tensors(ds, grayscale=True, size=4)
    assert G.shape == (6, 1, 4, 4)
    assert torch.allclose(G.mean(), X.mean(), atol=1e-5)  # area resize and channel mean keep the mean


def test_split_indices_disjoint_stratified_complete():
    y = np.repeat(np.arange(4), 25)
    a, b = split_indices(y, 0.2, seed=0)
    assert len(a) == 80 and len(b) == 20
    assert set(a).isdisjoint(b) and set(a) | set(b) == set(range(100))
    assert np.bincount(y[b]).tolist() == [5, 5, 5, 5]
    assert np.array_equal(split_indices(y, 0.2, seed=0)[1], b)


def test_epochs_for_steps():
    assert epochs_for_steps(10, 64, 176) == 176      # one step per epoch
    assert epochs_for_steps(1347, 64, 176) == 8      # 22 steps per epoch
    assert epochs_for_steps(1000, 64, 1) == 1


# --------------------------------------------------------------------------- models
def test_conv_trunk_and_small_cnn_seeded_without_touching_global_rng():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = SmallCNN(seed=0), SmallCNN(seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = SmallCNN(seed=1)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    assert a(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert SmallCNN(1, 4, width=8)(torch.zeros(2, 1, 16, 16)).shape == (2, 4)
    trunk = conv_trunk(24, (32, 64), seed=0, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in trunk.modules())
    assert trunk(torch.zeros(2, 24, 8, 8)).shape == (2, 64)


def test_mlp_and_embed():
    net = mlp([5, 7, 3])
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear]
    net.train()
    out = predict(net, torch.randn(1030, 5), batch_size=512)
    assert out.shape == (1030, 3) and not out.requires_grad
    assert net.training  # predict restores the mode


def test_accuracy_and_linear_probe():
    X, y = _blobs(200)
    assert probe_accuracy(X, y, X, y) > 0.9
    w = np.ones(len(y))
    assert probe_accuracy(X, y, X, y, sample_weight=w) == pytest.approx(probe_accuracy(X, y, X, y))
    model = nn.Linear(5, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.0, 1.0]))  # always predicts class 1
    assert accuracy(model, X, y) == pytest.approx(float((y == 1).float().mean()))


def test_fit_cosine_learns_and_keeps_the_last_epoch():
    X, y = _blobs(128)
    model = nn.Linear(5, 2)
    torch.manual_seed(0)
    h = fit(model, (X, y), (X, y), epochs=10, lr=0.2, batch_size=32, schedule="cosine", weight_decay=1e-4,
            select_best=False, threads=1, progress=False)
    assert len(h.rows) == 10 and h.best_epoch is None  # nothing selected on validation data
    assert h.rows[-1]["val_accuracy"] > 0.9
    assert accuracy(model, X, y) == pytest.approx(h.rows[-1]["val_accuracy"])


# --------------------------------------------------------------------------- gradient reversal
def test_grad_reverse_is_identity_forward_and_flips_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    y = ad.grad_reverse(x, 0.7)
    assert torch.equal(y, x)
    (y * 2).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -1.4))


def test_gradient_reversal_module_and_zero_strength():
    layer = ad.GradientReversal(0.0)
    x = torch.ones(3, requires_grad=True)
    layer(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros(3))
    layer.lambd = 2.0
    x.grad = None
    layer(x).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -2.0))
    assert "lambd=2.0" in repr(layer)


def test_dann_lambda_schedule():
    assert ad.dann_lambda(0.0) == 0.0
    assert ad.dann_lambda(1.0) == pytest.approx(1.0, abs=1e-4)
    values = [ad.dann_lambda(p / 10) for p in range(11)]
    assert all(a < b for a, b in zip(values, values[1:]))


# --------------------------------------------------------------------------- CORAL
def test_covariance_matches_numpy():
    X = torch.randn(50, 4, dtype=torch.float64)
    assert np.allclose(ad.covariance(X).numpy(), np.cov(X.numpy(), rowvar=False))


def test_coral_loss_zero_for_same_statistics_positive_otherwise_and_differentiable():
    X = torch.randn(64, 6)
    assert float(ad.coral_loss(X, X)) == pytest.approx(0.0, abs=1e-12)
    assert float(ad.coral_loss(X, X + 5.0)) == pytest.approx(0.0, abs=1e-10)  # a shift keeps the covariance
    Y = (X * 3.0).requires_grad_()
    loss = ad.coral_loss(X, Y)
    d = X.shape[1]
    manual = ((np.cov(X.numpy(), rowvar=False) - np.cov(Y.detach().numpy(), rowvar=False)) ** 2).sum() / (4 * d * d)
    assert float(loss.detach()) == pytest.approx(manual, rel=1e-4)
    loss.backward()
    assert Y.grad is not None and Y.grad.abs().sum() > 0


def test_coral_align_gives_target_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    Xs = torch.randn(500, 3, generator=g, dtype=torch.float64)
    Xt = torch.randn(500, 3, generator=g, dtype=torch.float64) @ torch.tensor(
        [[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]], dtype=torch.float64) + 4.0
    aligned = ad.coral_align(Xs, Xt, eps=1e-9)
    assert np.allclose(aligned.mean(0), Xt.numpy().mean(0), atol=1e-8)
    assert np.allclose(np.cov(aligned, rowvar=False), np.cov(Xt.numpy(), rowvar=False), atol=1e-6)
    assert np.allclose(ad.coral_align(Xs, Xt, eps=0.1, apply_to=Xs), ad.coral_align(Xs, Xt, eps=0.1))
    assert ad.coral_align(Xs, Xt, apply_to=Xs[:7]).shape == (7, 3)


# --------------------------------------------------------------------------- importance weights
def test_importance_weights_normalised_without_shift():
    Xs, _ = _blobs(300, seed=0)
    Xt, _ = _blobs(300, seed=1)
    w = importance_weights(Xs, Xt)
    assert w.shape == (300,) and (w > 0).all()
    assert w.mean() == pytest.approx(1.0)
    assert np.std(w) < 0.5  # same distribution: weights close to 1


def test_importance_weights_favour_target_like_examples():
    g = torch.Generator().manual_seed(0)
    Xs = torch.randn(400, 2, generator=g)
    Xt = torch.randn(400, 2, generator=g) + torch.tensor([1.5, 0.0])
    w = importance_weights(Xs, Xt, clip=5.0, seed=0)
    assert np.corrcoef(Xs[:, 0].numpy(), w)[0, 1] > 0.8  # the further right, the more target-like
    assert w.mean() == pytest.approx(1.0)
    assert w.max() / np.median(w) <= 5.0 + 1e-9  # clipped at 5x the median


def test_domain_accuracy_separable_vs_identical():
    Xs, _ = _blobs(200, seed=0)
    assert domain_accuracy(Xs, _blobs(200, seed=1)[0]) < 0.65
    assert domain_accuracy(Xs, _blobs(200, shift=10.0, seed=1)[0]) > 0.95


def test_embed_2d_shapes_and_methods():
    a, b = torch.randn(30, 6), torch.randn(20, 6) + 1
    pa, pb = embed_2d(a, b)
    assert pa.shape == (30, 2) and pb.shape == (20, 2)
    with pytest.raises(ValueError):
        embed_2d(a, b, method="umap")


# --------------------------------------------------------------------------- training loops
def _shifted_problem():
    Xs, ys = _blobs(256, d=4, seed=0)
    Xt, yt = _blobs(256, d=4, shift=1.0, seed=1)
    return Xs, ys, Xt, yt


def _train_adapted(model, train, Xt, method, target_eval, epochs, seed=0):
    """What train_adapted(method=...) was: fit() with an adaptation loss hook."""
    Xv, yv = target_eval
    loss = {"source": lambda: AdaptationLoss(Xt),
            "coral": lambda: CORALLoss(Xt, weight=1.0),
            "dann": lambda: DANNLoss(Xt, feature_dim=model[1].in_features, weight=1.0, hidden=16)}[method]()
    return fit(model, train, epochs=epochs, lr=1e-2, weight_decay=1e-4, batch_size=64, schedule="dann", loss=loss,
               metrics=lambda m: {"target_accuracy": accuracy(m, Xv, yv)}, select_best=False, threads=1,
               seed=seed, progress=False)


@pytest.mark.parametrize("method", ["source", "coral", "dann"])
def test_train_adapted_runs_and_reports(method):
    Xs, ys, Xt, yt = _shifted_problem()
    torch.manual_seed(0)
    feat, head = nn.Sequential(nn.Linear(4, 16), nn.ReLU()), nn.Linear(16, 2)
    model = nn.Sequential(feat, head)
    res = _train_adapted(model, (Xs, ys), Xt, method, (Xt, yt), epochs=3)
    assert isinstance(res, History)
    assert len(res.rows) == 3 and all("target_accuracy" in r for r in res.rows)
    assert res.rows[-1]["class_loss"] < res.rows[0]["class_loss"]
    assert (res.rows[-1]["adapt_loss"] == 0.0) == (method == "source")
    assert res.best_epoch is None  # select_best=False: the last epoch's weights, no target labels used
    assert not model.training
    assert accuracy(model, Xs, ys) > 0.8


def test_train_adapted_is_deterministic_and_accepts_weights():
    Xs, ys, Xt, yt = _shifted_problem()

    def run(weights=None):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Linear(8, 2))
        train = (Xs, ys) if weights is None else (Xs, ys, torch.as_tensor(weights, dtype=torch.float32))
        return _train_adapted(model, train, Xt, "dann", (Xt, yt), epochs=2).column("target_accuracy")

    assert run() == run()
    assert run(np.ones(len(ys))) == pytest.approx(run())  # uniform weights = no weights
    assert run(np.r_[np.ones(128), np.zeros(128)]) != pytest.approx(run())  # weights do matter


def test_dann_loss_trains_its_domain_classifier():
    Xs, ys, Xt, yt = _shifted_problem()
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Linear(8, 2))
    loss = DANNLoss(Xt, feature_dim=8, hidden=16)
    before = [p.detach().clone() for p in loss.parameters()]
    assert before  # the domain classifier lives in the hook
    fit(model, (Xs, ys), epochs=1, batch_size=64, loss=loss, schedule="dann", progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, loss.parameters()))


def test_fit_multitask_trains_every_head():
    Xa, ya = _blobs(200, seed=0)
    Xb, yb = _blobs(20, seed=1)
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(5, 8), nn.ReLU())
    heads = {"a": nn.Linear(8, 2), "b": nn.Linear(8, 2)}
    before = {k: h.weight.detach().clone() for k, h in heads.items()}
    model = MultiTask(trunk, heads)
    history = fit_multitask(model, {"a": (Xa, ya), "b": (Xb, yb)}, steps=100, lr=1e-2)
    assert isinstance(history, History) and len(history.rows) == 2  # one row per 50 steps
    assert {"a_loss", "b_loss"} <= set(history.rows[0])
    assert all(not torch.equal(before[k], heads[k].weight) for k in heads)
    assert model.heads["a"] is heads["a"] and model(Xa[:3], "b").shape == (3, 2)
    assert accuracy(model.for_task("a"), Xa, ya) > 0.85
    with pytest.raises(ValueError, match="multiple of"):
        fit_multitask(model, {"a": (Xa, ya)}, steps=60)


def test_rotations_pretext():
    X = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    Xr, yr = rotations(X)
    assert Xr.shape == (8, 1, 3, 3)
    assert yr.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(Xr[3], torch.rot90(X[1], 1, (1, 2)))
    assert torch.equal(Xr[:2], X)


# --------------------------------------------------------------------------- backbone cut
def test_truncate_backbone_pooled_and_maps():
    from tl_course.models.backbones import load_backbone

    bb = load_backbone("efficientnet_lite0", image_size=32)
    cut = truncate_backbone(bb, 3)
    assert cut.name != bb.name and cut.cache_key() != bb.cache_key()
    assert len(cut.stages) == 3 and cut.num_parameters() < bb.num_parameters()
    x = torch.zeros(2, 3, 32, 32)
    with torch.no_grad():
        assert cut.model(x).shape == (2, cut.feature_dim)
        maps = truncate_backbone(bb, 3, pool=False)
        out = maps.model(x)
    assert out.dim() == 4 and out.shape[1] == cut.feature_dim
    assert maps.cache_key() != cut.cache_key()
    with pytest.raises(ValueError):
        truncate_backbone(bb, len(bb.stages) + 1)


# --------------------------------------------------------------------------- exercises 01-03
def test_exercises_registered_and_safe():
    from tl_course.course.exercises import get_exercise

    names = ["01.whole_backbone", "01.one_shot_nearest", "02.pca_self_taught", "02.reuse_new_labelling",
             "03.grl_gradient", "03.effective_sample_size", "03.coral_by_hand"]
    for name in names:
        ex = get_exercise(name)
        ok, message = ex.verdict(None)
        assert not ok and "not solved yet" in message
        ok, message = ex.verdict("a string")  # malformed answers never crash
        assert not ok


def test_exercise_grl_gradient():
    from tl_course.course.exercises import get_exercise

    ex = get_exercise("03.grl_gradient")
    assert ex.verdict(-ad.dann_lambda(0.5))[0]
    ok, message = ex.verdict(ad.dann_lambda(0.5))
    assert not ok and "sign" in message
    assert not ex.verdict(-0.5)[0]


def test_exercise_effective_sample_size():
    from tl_course.data import load_dataset
    from tl_course.course.exercises import get_exercise

    n = len(load_dataset("digits").train)
    w = np.linspace(0.5, 1.5, n)
    ess = w.sum() ** 2 / (w ** 2).sum()
    ex = get_exercise("03.effective_sample_size")
    assert ex.verdict(ess, weights=w)[0]
    assert not ex.verdict(ess / n, weights=w)[0]
    assert not ex.verdict(float(n), weights=w)[0]
    assert not ex.verdict(ess)[0], "without the notebook's weights the checker cannot compute the answer"


def test_fit_with_threads_runs_single_threaded_and_restores():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []

        def spy(model, batch, step):
            seen.append(torch.get_num_threads())
            return nn.functional.cross_entropy(model(batch[0]), batch[1])

        X, y = _blobs(32)
        fit(nn.Linear(5, 2), (X, y), epochs=1, batch_size=16, loss=spy, threads=1, progress=False)
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_interpolate_domains_goes_from_source_to_target():
    from tl_course.data import ImageDataset

    a = ImageDataset(np.zeros((4, 8, 8, 3), np.uint8), [0, 1, 0, 1], ["x", "y"])
    b = ImageDataset(np.full((4, 8, 8, 3), 200, np.uint8), [0, 1, 0, 1], ["x", "y"])
    assert np.array_equal(interpolate_domains(a, b, 0.0).samples, a.samples)
    assert np.array_equal(interpolate_domains(a, b, 1.0).samples, b.samples)
    half = interpolate_domains(a, b, 0.5)
    assert half.samples.dtype == np.uint8 and int(half.samples.max()) == 100
    assert list(half.targets) == [0, 1, 0, 1] and half.classes == ["x", "y"]
    with pytest.raises(ValueError, match="between 0 and 1"):
        interpolate_domains(a, b, 1.5)
    c = ImageDataset(np.zeros((4, 8, 8, 3), np.uint8), [1, 1, 0, 1], ["x", "y"])
    with pytest.raises(ValueError, match="not aligned"):
        interpolate_domains(a, c, 0.5)
