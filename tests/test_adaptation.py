"""Unit tests of tl_course.adaptation (the building blocks of notebooks 01-03) and of the
exercises of those notebooks. Synthetic data only, except one test that cuts the offline
EfficientNet-Lite0: the whole file runs in seconds on a CPU."""
import numpy as np
import pytest
import torch
from torch import nn

from tl_course import adaptation as ad
from tl_course.training import History


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
    X, y = ad.image_tensors(ds)
    assert X.shape == (6, 3, 8, 8) and X.dtype == torch.float32
    assert y.tolist() == [0, 1, 2, 0, 1, 2]
    expected = (torch.as_tensor(ds.samples[0, 0, 0, 0]).float() / 255 - 0.5) / 0.25
    assert torch.isclose(X[0, 0, 0, 0], expected)
    assert X.min() >= -2 and X.max() <= 2
    G, _ = ad.image_tensors(ds, grayscale=True, size=4)
    assert G.shape == (6, 1, 4, 4)
    assert torch.allclose(G.mean(), X.mean(), atol=1e-5)  # area resize and channel mean keep the mean


def test_split_indices_disjoint_stratified_complete():
    y = np.repeat(np.arange(4), 25)
    a, b = ad.split_indices(y, 0.2, seed=0)
    assert len(a) == 80 and len(b) == 20
    assert set(a).isdisjoint(b) and set(a) | set(b) == set(range(100))
    assert np.bincount(y[b]).tolist() == [5, 5, 5, 5]
    assert np.array_equal(ad.split_indices(y, 0.2, seed=0)[1], b)


def test_epochs_for_steps():
    assert ad.epochs_for_steps(10, 64, 176) == 176      # one step per epoch
    assert ad.epochs_for_steps(1347, 64, 176) == 8      # 22 steps per epoch
    assert ad.epochs_for_steps(1000, 64, 1) == 1


def test_first_epoch_reaching_and_seconds():
    h = History(rows=[{"epoch": i + 1, "val_accuracy": a, "seconds": 0.5}
                      for i, a in enumerate([0.2, 0.55, 0.61, 0.7])])
    assert ad.first_epoch_reaching(h, 0.6) == 3
    assert ad.first_epoch_reaching(h, 0.2) == 1
    assert ad.first_epoch_reaching(h, 0.9) is None
    assert ad.seconds_to_epoch(h, 3) == pytest.approx(1.5)
    assert ad.seconds_to_epoch(h, None) is None


# --------------------------------------------------------------------------- models
def test_conv_trunk_and_small_cnn_seeded_without_touching_global_rng():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = ad.SmallCNN(seed=0), ad.SmallCNN(seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = ad.SmallCNN(seed=1)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    assert a(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert ad.SmallCNN(1, 4, width=8)(torch.zeros(2, 1, 16, 16)).shape == (2, 4)
    trunk = ad.conv_trunk(24, (32, 64), seed=0, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in trunk.modules())
    assert trunk(torch.zeros(2, 24, 8, 8)).shape == (2, 64)


def test_mlp_and_embed():
    net = ad.mlp([5, 7, 3])
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear]
    net.train()
    out = ad.embed(net, torch.randn(1030, 5), batch_size=512)
    assert out.shape == (1030, 3) and not out.requires_grad
    assert net.training  # embed restores the mode


def test_accuracy_and_linear_probe():
    X, y = _blobs(200)
    assert ad.linear_probe_accuracy(X, y, X, y) > 0.9
    w = np.ones(len(y))
    assert ad.linear_probe_accuracy(X, y, X, y, sample_weight=w) == pytest.approx(ad.linear_probe_accuracy(X, y, X, y))
    model = nn.Linear(5, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.0, 1.0]))  # always predicts class 1
    assert ad.accuracy(model, X, y) == pytest.approx(float((y == 1).float().mean()))


def test_fit_cosine_learns_and_keeps_the_last_epoch():
    X, y = _blobs(128)
    model = nn.Linear(5, 2)
    torch.manual_seed(0)
    h = ad.fit_cosine(model, (X, y), (X, y), epochs=10, lr=0.2, batch_size=32)
    assert len(h.rows) == 10 and h.best_epoch is None  # nothing selected on validation data
    assert h.rows[-1]["val_accuracy"] > 0.9
    assert ad.accuracy(model, X, y) == pytest.approx(h.rows[-1]["val_accuracy"])


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
def test_domain_classifier_weights_normalised_and_clipped():
    Xs, _ = _blobs(300, seed=0)
    Xt, _ = _blobs(300, seed=1)
    w = ad.domain_classifier_weights(Xs, Xt)
    assert w.shape == (300,) and (w > 0).all()
    assert w.mean() == pytest.approx(1.0)
    assert np.std(w) < 0.5  # same distribution: weights close to 1


def test_domain_classifier_weights_favour_target_like_examples():
    g = torch.Generator().manual_seed(0)
    Xs = torch.randn(400, 2, generator=g)
    Xt = torch.randn(400, 2, generator=g) + torch.tensor([1.5, 0.0])
    w = ad.domain_classifier_weights(Xs, Xt, clip=5.0)
    assert np.corrcoef(Xs[:, 0].numpy(), w)[0, 1] > 0.8  # the further right, the more target-like
    assert w.max() / np.median(w) <= 5.0 + 1e-9  # clipped at 5x the median


def test_domain_accuracy_separable_vs_identical():
    Xs, _ = _blobs(200, seed=0)
    assert ad.domain_accuracy(Xs, _blobs(200, seed=1)[0]) < 0.65
    assert ad.domain_accuracy(Xs, _blobs(200, shift=10.0, seed=1)[0]) > 0.95


def test_embed_2d_shapes_and_methods():
    a, b = torch.randn(30, 6), torch.randn(20, 6) + 1
    pa, pb = ad.embed_2d(a, b)
    assert pa.shape == (30, 2) and pb.shape == (20, 2)
    with pytest.raises(ValueError):
        ad.embed_2d(a, b, method="umap")


# --------------------------------------------------------------------------- training loops
def _shifted_problem():
    Xs, ys = _blobs(256, d=4, seed=0)
    Xt, yt = _blobs(256, d=4, shift=1.0, seed=1)
    return Xs, ys, Xt, yt


@pytest.mark.parametrize("method", ["source", "coral", "dann"])
def test_train_adapted_runs_and_reports(method):
    Xs, ys, Xt, yt = _shifted_problem()
    torch.manual_seed(0)
    feat, head = nn.Sequential(nn.Linear(4, 16), nn.ReLU()), nn.Linear(16, 2)
    res = ad.train_adapted(feat, head, (Xs, ys), Xt, method=method, epochs=3, batch_size=64,
                           lr=1e-2, target_eval=(Xt, yt), seed=0)
    assert len(res.rows) == 3 and all("target_accuracy" in r for r in res.rows)
    assert res.rows[-1]["class_loss"] < res.rows[0]["class_loss"]
    assert (res.rows[-1]["adapt_loss"] == 0.0) == (method == "source")
    assert not res.model.training
    assert ad.accuracy(res.model, Xs, ys) > 0.8


def test_train_adapted_is_deterministic_and_accepts_weights():
    Xs, ys, Xt, yt = _shifted_problem()

    def run(weights=None):
        torch.manual_seed(0)
        feat, head = nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Linear(8, 2)
        return ad.train_adapted(feat, head, (Xs, ys), Xt, method="dann", epochs=2, seed=0,
                                source_weights=weights, target_eval=(Xt, yt)).column("target_accuracy")

    assert run() == run()
    assert run(np.ones(len(ys))) == pytest.approx(run())  # uniform weights = no weights
    with pytest.raises(ValueError):
        ad.train_adapted(nn.Identity(), nn.Linear(4, 2), (Xs, ys), Xt, method="mmd")


def test_fit_multitask_trains_every_head():
    Xa, ya = _blobs(200, seed=0)
    Xb, yb = _blobs(20, seed=1)
    trunk = nn.Sequential(nn.Linear(5, 8), nn.ReLU())
    heads = {"a": nn.Linear(8, 2), "b": nn.Linear(8, 2)}
    before = {k: h.weight.detach().clone() for k, h in heads.items()}
    rows = ad.fit_multitask(trunk, heads, {"a": (Xa, ya), "b": (Xb, yb)}, steps=60, lr=1e-2)
    assert [r["step"] for r in rows] == [50, 60]
    assert set(rows[0]) == {"step", "a_loss", "b_loss"}
    assert all(not torch.equal(before[k], heads[k].weight) for k in heads)
    assert ad.accuracy(nn.Sequential(trunk, heads["a"]), Xa, ya) > 0.85


def test_rotations_pretext():
    X = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    Xr, yr = ad.rotations(X)
    assert Xr.shape == (8, 1, 3, 3)
    assert yr.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(Xr[3], torch.rot90(X[1], 1, (1, 2)))
    assert torch.equal(Xr[:2], X)


# --------------------------------------------------------------------------- backbone cut
def test_truncate_backbone_pooled_and_maps():
    from tl_course.backbones import load_backbone

    bb = load_backbone("efficientnet_lite0", image_size=32)
    cut = ad.truncate_backbone(bb, 3)
    assert cut.name != bb.name and cut.cache_key() != bb.cache_key()
    assert len(cut.stages) == 3 and cut.num_parameters() < bb.num_parameters()
    x = torch.zeros(2, 3, 32, 32)
    with torch.no_grad():
        assert cut.model(x).shape == (2, cut.feature_dim)
        maps = ad.truncate_backbone(bb, 3, pool=False)
        out = maps.model(x)
    assert out.dim() == 4 and out.shape[1] == cut.feature_dim
    assert maps.cache_key() != cut.cache_key()
    with pytest.raises(ValueError):
        ad.truncate_backbone(bb, len(bb.stages) + 1)


# --------------------------------------------------------------------------- exercises 01-03
def test_exercises_registered_and_safe():
    from tl_course.exercises import get_exercise

    names = ["01.whole_backbone", "01.one_shot_nearest", "02.pca_self_taught", "02.reuse_new_labelling",
             "03.grl_gradient", "03.effective_sample_size", "03.coral_by_hand"]
    for name in names:
        ex = get_exercise(name)
        ok, message = ex.verdict(None)
        assert not ok and "not solved yet" in message
        ok, message = ex.verdict("a string")  # malformed answers never crash
        assert not ok


def test_exercise_grl_gradient():
    from tl_course.exercises import get_exercise

    ex = get_exercise("03.grl_gradient")
    assert ex.verdict(-ad.dann_lambda(0.5))[0]
    ok, message = ex.verdict(ad.dann_lambda(0.5))
    assert not ok and "sign" in message
    assert not ex.verdict(-0.5)[0]


def test_exercise_effective_sample_size():
    from tl_course.datasets import load_dataset
    from tl_course.exercises import get_exercise

    n = len(load_dataset("digits").train)
    w = np.linspace(0.5, 1.5, n)
    ess = w.sum() ** 2 / (w ** 2).sum()
    ex = get_exercise("03.effective_sample_size")
    assert ex.verdict((w, ess))[0]
    assert not ex.verdict((w, ess / n))[0]
    assert not ex.verdict((w, float(n)))[0]


def test_torch_threads_restores_and_training_loops_are_single_threaded():
    previous = torch.get_num_threads()
    with ad.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == previous
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x

    ad.embed(Spy(), torch.zeros(3, 2))
    assert seen == [1] and torch.get_num_threads() == previous


def test_interpolate_domains_goes_from_source_to_target():
    from tl_course.datasets import ImageDataset

    a = ImageDataset(np.zeros((4, 8, 8, 3), np.uint8), [0, 1, 0, 1], ["x", "y"])
    b = ImageDataset(np.full((4, 8, 8, 3), 200, np.uint8), [0, 1, 0, 1], ["x", "y"])
    assert np.array_equal(ad.interpolate_domains(a, b, 0.0).samples, a.samples)
    assert np.array_equal(ad.interpolate_domains(a, b, 1.0).samples, b.samples)
    half = ad.interpolate_domains(a, b, 0.5)
    assert half.samples.dtype == np.uint8 and int(half.samples.max()) == 100
    assert list(half.targets) == [0, 1, 0, 1] and half.classes == ["x", "y"]
    with pytest.raises(ValueError, match="between 0 and 1"):
        ad.interpolate_domains(a, b, 1.5)
    c = ImageDataset(np.zeros((4, 8, 8, 3), np.uint8), [1, 1, 0, 1], ["x", "y"])
    with pytest.raises(ValueError, match="not aligned"):
        ad.interpolate_domains(a, c, 0.5)
