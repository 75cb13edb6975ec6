"""tl_course.efficient: the distillation loss, LoRA wrappers, BitFit-style freezing, the small
student CNN and its training loop, on tiny inputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tl_course import efficient as E
from tl_course.transfer import TransferModel, count_parameters, freeze


def _logits(n=8, c=5, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * scale


# --------------------------------------------------------------------------- distillation loss
def test_alpha_zero_is_cross_entropy():
    s, t = _logits(seed=0), _logits(seed=1)
    y = torch.arange(8) % 5
    for T in (1.0, 4.0):
        assert torch.allclose(E.distillation_loss(s, t, y, temperature=T, alpha=0.0), F.cross_entropy(s, y))


def test_alpha_one_is_scaled_kl_and_needs_no_labels():
    s, t = _logits(seed=0), _logits(seed=1)
    T = 3.0
    p_t = (t / T).softmax(-1)
    kl = (p_t * (p_t.log() - (s / T).log_softmax(-1))).sum(-1).mean()
    assert torch.allclose(E.distillation_loss(s, t, None, temperature=T, alpha=1.0), T * T * kl, atol=1e-6)


def test_mixture_is_the_weighted_sum():
    s, t = _logits(seed=2), _logits(seed=3)
    y = torch.arange(8) % 5
    ce = E.distillation_loss(s, t, y, 2.0, 0.0)
    kd = E.distillation_loss(s, t, y, 2.0, 1.0)
    assert torch.allclose(E.distillation_loss(s, t, y, 2.0, 0.3), 0.7 * ce + 0.3 * kd, atol=1e-6)


def test_zero_when_student_matches_teacher():
    t = _logits(seed=4)
    assert float(E.distillation_loss(t.clone(), t, None, 4.0, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_temperature_softens_the_targets():
    t = torch.tensor([[4.0, 1.0, 0.0]])
    p1, p4 = E.soft_targets(t, 1.0), E.soft_targets(t, 4.0)
    entropy = lambda p: float(-(p * p.log()).sum())  # noqa: E731
    assert entropy(p4) > entropy(p1)                      # flatter at higher T
    assert p4.argmax() == p1.argmax() == 0                # same ranking
    assert float(p4[0, 1]) > float(p1[0, 1])              # the wrong classes gain weight


def test_t_squared_keeps_gradients_on_scale():
    """Without T**2 the KL gradients would shrink like 1/T**2; with it they stay comparable."""
    t = _logits(n=64, c=10, seed=5, scale=2.0)
    norms = []
    for T in (2.0, 8.0):
        s = _logits(n=64, c=10, seed=6, scale=2.0).requires_grad_()
        E.distillation_loss(s, t, None, T, 1.0).backward()
        norms.append(float(s.grad.norm()))
    assert 0.2 < norms[1] / norms[0] < 5  # 1/16 without the factor


def test_teacher_gets_no_gradient_and_bad_arguments_are_refused():
    s, t = _logits(seed=0).requires_grad_(), _logits(seed=1).requires_grad_()
    E.distillation_loss(s, t, torch.zeros(8, dtype=torch.long), 4.0, 0.5).backward()
    assert s.grad is not None and t.grad is None
    with pytest.raises(ValueError):
        E.distillation_loss(s, t, None, 4.0, 0.5)      # labels needed for the CE part
    with pytest.raises(ValueError):
        E.distillation_loss(s, t, None, 0.0, 1.0)
    with pytest.raises(ValueError):
        E.distillation_loss(s, t, None, 2.0, 1.5)


# --------------------------------------------------------------------------- LoRA
def test_lora_conv_identical_at_init_and_only_lora_trains():
    torch.manual_seed(0)
    base = nn.Conv2d(6, 10, 1)
    x = torch.randn(2, 6, 5, 5)
    ref = base(x).detach()
    layer = E.LoRAConv2d(base, rank=2)
    assert torch.equal(layer(x), ref)
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"down.weight", "up.weight"}
    assert E.trainable_count(layer) == 2 * 6 + 10 * 2


def test_lora_conv_with_kernel_and_stride_merges_exactly():
    torch.manual_seed(1)
    base = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=True)
    layer = E.LoRAConv2d(base, rank=3, alpha=6)
    with torch.no_grad():
        layer.up.weight.normal_()
    x = torch.randn(2, 4, 9, 9)
    out = layer(x)
    assert not torch.allclose(out, base(x))                       # the update changes the output
    assert torch.allclose(layer.merged()(x), out, atol=1e-5)      # and folds into one conv


def test_lora_linear_identical_at_init_merge_and_grads():
    torch.manual_seed(2)
    base = nn.Linear(7, 3)
    x = torch.randn(4, 7)
    layer = E.LoRALinear(base, rank=2)
    assert torch.equal(layer(x), base(x))
    layer(x).sum().backward()
    assert base.weight.grad is None and base.bias.grad is None
    assert layer.up.weight.grad is not None and layer.up.weight.grad.abs().sum() > 0
    # B starts at zero, so A's first gradient is zero: LoRA's usual start
    assert layer.down.weight.grad.abs().sum() == 0
    with torch.no_grad():
        layer.up.weight.normal_()
    assert torch.allclose(layer.merged()(x), layer(x), atol=1e-5)


def test_lora_refuses_what_it_cannot_wrap():
    with pytest.raises(ValueError):
        E.LoRAConv2d(nn.Conv2d(4, 4, 3, groups=4), rank=2)
    with pytest.raises(TypeError):
        E.LoRALinear(nn.Conv2d(4, 4, 1))
    with pytest.raises(ValueError):
        E.LoRALinear(nn.Linear(4, 4), rank=0)


def _block():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 1), nn.Conv2d(16, 16, 3, padding=1, groups=16),
                         nn.BatchNorm2d(16), nn.Conv2d(16, 8, 1))


def test_add_lora_wraps_pointwise_convs_and_linears_only():
    torch.manual_seed(3)
    net = nn.Sequential(_block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    x = torch.randn(2, 3, 6, 6)
    net.eval()
    ref = net(x).detach()
    names = E.add_lora(net, rank=2)
    assert names == ["0.3", "0.6", "3"]                 # two 1x1 convs and the linear layer
    assert torch.equal(net(x), ref)                     # identical at initialisation
    assert all(("down" in n or "up" in n) for n, p in net.named_parameters() if p.requires_grad)
    expected = 2 * (8 + 16) + 2 * (16 + 8) + 2 * (8 + 4)
    assert E.trainable_count(net) == expected == sum(p.numel() for p in E.lora_parameters(net))
    assert E.add_lora(net, rank=2) == []                # wrapping again adds nothing
    assert len(E.add_lora(_block(), rank=2, pointwise_only=False)) == 3  # the 3x3 ungrouped conv too


def test_add_lora_on_stages_gradients_flow_only_where_intended():
    torch.manual_seed(4)
    bottom = _block()
    top = nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 1))
    head = nn.Linear(16, 2)
    model = nn.Sequential(bottom, top, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    freeze(bottom)
    E.add_lora([top], rank=2)
    model.train()
    F.cross_entropy(model(torch.randn(4, 3, 6, 6)), torch.tensor([0, 1, 0, 1])).backward()
    for name, p in model.named_parameters():
        should = ".down." in name or ".up." in name or name.startswith("4.")
        assert (p.grad is not None) == should, name
        assert p.requires_grad == should, name


def test_merge_lora_keeps_the_function():
    torch.manual_seed(5)
    net = nn.Sequential(_block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    E.add_lora(net, rank=2)
    for p in E.lora_parameters(net):
        with torch.no_grad():
            p.normal_(std=0.1)
    x = torch.randn(2, 3, 6, 6)
    before = net(x).detach()
    assert E.merge_lora(net) == 3
    assert not any(isinstance(m, (E.LoRAConv2d, E.LoRALinear)) for m in net.modules())
    assert torch.allclose(net(x), before, atol=1e-5)


# --------------------------------------------------------------------------- BitFit-style
def test_train_batchnorm_only_counts_and_trains_only_bn():
    net = _block()
    n = E.train_batchnorm_only(net)
    assert n == 2 * 8 + 2 * 16
    assert {name for name, p in net.named_parameters() if p.requires_grad} == \
        {"1.weight", "1.bias", "5.weight", "5.bias"}


def test_bitfit_unfreezes_every_bias():
    net = _block()
    n = E.bitfit(net)
    biases = sum(p.numel() for name, p in net.named_parameters() if name.endswith("bias"))
    assert n == biases == 8 + 8 + 16 + 16 + 16 + 8
    assert all(name.endswith("bias") == p.requires_grad for name, p in net.named_parameters())


def test_batchnorm_tuning_with_frozen_statistics():
    """Training BN affine parameters inside a TransferModel with bn_stats='frozen' changes the
    affine parameters but never the running statistics."""
    torch.manual_seed(6)
    body = nn.Sequential(_block(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    E.train_batchnorm_only(body)
    model = TransferModel(body, 2, head=nn.Linear(8, 2), bn_stats="frozen")
    stats = {k: v.clone() for k, v in body.state_dict().items() if "running" in k}
    weight = body[0][1].weight.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(8, 3, 6, 6)), torch.arange(8) % 2).backward()
        opt.step()
    assert not torch.equal(body[0][1].weight, weight)
    assert all(torch.equal(body.state_dict()[k], v) for k, v in stats.items())
    trainable, _ = count_parameters(model)
    assert trainable == 2 * 8 + 2 * 16 + 8 * 2 + 2


# --------------------------------------------------------------------------- student
def test_small_cnn_shapes_and_size():
    net = E.small_cnn(3, width=8, depth=3)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert net(torch.randn(2, 3, 20, 24)).shape == (2, 3)
    convs = 3 * 8 * 9 + 8 * 16 * 9 + 16 * 32 * 9
    assert E.trainable_count(net) == convs + 2 * (8 + 16 + 32) + 32 * 3 + 3


def _toy_images(n=64, seed=0):
    """Two classes: bright left half vs bright right half."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 12, 12, generator=g) * 0.3
    y = torch.arange(n) % 2
    x[y == 0, :, :, :6] += 1.0
    x[y == 1, :, :, 6:] += 1.0
    return x, y


def test_fit_student_learns_and_is_repeatable():
    X, y = _toy_images()
    Xv, yv = _toy_images(32, seed=1)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        net = E.small_cnn(2, width=4, depth=2)
        rows = E.fit_student(net, X, y, epochs=6, lr=1e-2, batch_size=16, flip=False, val=(Xv, yv),
                             progress=False)
        runs.append((rows[-1]["train_loss"], E.accuracy(net, Xv, yv)))
    assert runs[0] == runs[1]
    assert runs[0][1] >= 0.9


def test_fit_student_with_teacher_logits():
    X, y = _toy_images()
    teacher = F.one_hot(y, 2).float() * 4.0 - 2.0
    torch.manual_seed(0)
    net = E.small_cnn(2, width=4, depth=2)
    rows = E.fit_student(net, X, y, teacher, temperature=2.0, alpha=1.0, epochs=6, lr=1e-2,
                         batch_size=16, flip=False, progress=False)
    assert len(rows) == 6 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert E.accuracy(net, X, y) >= 0.9
    with pytest.raises(ValueError):
        E.fit_student(net, X, y, None, alpha=0.5, epochs=1, progress=False)


def test_images_per_second_is_positive():
    assert E.images_per_second(E.small_cnn(2, width=4, depth=2), (3, 16, 16), batch_size=4, batches=1) > 0


# --------------------------------------------------------------------------- cached views
def _tiny_backbone():
    from collections import OrderedDict

    from tl_course.backbones import Backbone, Preprocessing

    torch.manual_seed(7)
    stages = [("stem", nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU())),
              ("block", nn.Sequential(nn.Conv2d(4, 6, 1), nn.BatchNorm2d(6), nn.ReLU()))]
    model = nn.Sequential(OrderedDict(stages + [("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)))]))
    return Backbone("tiny", model.eval(), 6, Preprocessing(resize=36, crop=32, interpolation="bilinear"),
                    [model.stem, model.block], "random", "tiny-weights")


def _tiny_dataset(n=6):
    import numpy as np

    from tl_course.datasets import ImageDataset

    rng = np.random.default_rng(0)
    return ImageDataset(rng.integers(0, 255, (n, 40, 48, 3), dtype=np.uint8), np.arange(n) % 2, ["a", "b"])


def test_cached_views_shapes_view0_and_cache(isolated_env):
    bb, ds = _tiny_backbone(), _tiny_dataset()
    v = E.cached_views(bb, ds, 1, views=3, student_size=8, seed=0, progress=False)
    assert v.acts.shape == (3, 6, 4, 16, 16) and v.images.shape == (3, 6, 3, 8, 8)
    assert v.images.dtype == torch.uint8 and torch.equal(v.labels, torch.tensor([0, 1, 0, 1, 0, 1]))
    with torch.no_grad():   # view 0 is exactly the evaluation crop through the frozen bottom
        ref = bb.model[:1](torch.stack([bb.transform(ds.image(i)) for i in range(len(ds))]))
    assert torch.allclose(v.acts[0], ref, atol=1e-2)
    assert not torch.allclose(v.acts[1], v.acts[0])           # random crops differ from view 0
    assert v.student_inputs().shape == (18, 3, 8, 8) and v.all_labels().shape == (18,)
    assert v.activations().shape == (18, 4, 16, 16)
    files = list((isolated_env / "features").glob("tiny-views1-*.pt"))
    assert len(files) == 1
    again = E.cached_views(bb, ds, 1, views=3, student_size=8, seed=0, progress=False)
    assert torch.equal(again.acts, v.acts) and torch.equal(again.images, v.images)
    fresh = E.cached_views(bb, ds, 1, views=3, student_size=8, seed=0, cache=False, progress=False)
    assert torch.allclose(fresh.acts, v.acts, atol=1e-2) and torch.equal(fresh.images, v.images)  # reproducible
    other = E.cached_views(bb, ds, 1, views=3, student_size=8, seed=1, progress=False)
    assert torch.allclose(other.acts[0], v.acts[0]) and not torch.allclose(other.acts[1], v.acts[1])
    assert len(list((isolated_env / "features").glob("tiny-views1-*.pt"))) == 2


def test_cached_views_leaves_global_rng_alone(isolated_env):
    bb, ds = _tiny_backbone(), _tiny_dataset(2)
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    E.cached_views(bb, ds, 1, views=2, student_size=8, cache=False, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_cached_views_recomputes_a_corrupt_cache(isolated_env):
    bb, ds = _tiny_backbone(), _tiny_dataset(2)
    v = E.cached_views(bb, ds, 1, views=2, student_size=8, progress=False)
    (path,) = list((isolated_env / "features").glob("tiny-views1-*.pt"))
    path.write_bytes(b"not a torch file")
    again = E.cached_views(bb, ds, 1, views=2, student_size=8, progress=False)
    assert torch.equal(again.acts, v.acts)


def test_cached_views_restores_every_module_mode(isolated_env):
    bb, ds = _tiny_backbone(), _tiny_dataset(2)
    bb.model.stem[1].train()                      # a mixed state, restored as it was
    before = [m.training for m in bb.model.modules()]
    E.cached_views(bb, ds, 2, views=1, student_size=8, cache=False, progress=False)
    assert [m.training for m in bb.model.modules()] == before
