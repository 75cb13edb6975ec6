"""tl_course.models.peft: LoRA wrappers and BitFit-style freezing, on tiny inputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tl_course.models.peft import (LoRAConv2d, LoRALinear, add_lora, bitfit, lora_parameters, merge_lora,
                                   train_batchnorm_only)
from tl_course.models.transfer import BATCHNORM, TransferModel, count_parameters, freeze


def n_trainable(module: nn.Module) -> int:
    return count_parameters(module)[0]


# --------------------------------------------------------------------------- LoRA
def test_lora_conv_identical_at_init_and_only_lora_trains():
    torch.manual_seed(0)
    base = nn.Conv2d(6, 10, 1)
    x = torch.randn(2, 6, 5, 5)
    ref = base(x).detach()
    layer = LoRAConv2d(base, rank=2)
    assert torch.equal(layer(x), ref)
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"down.weight", "up.weight"}
    assert n_trainable(layer) == 2 * 6 + 10 * 2


def test_lora_conv_with_kernel_and_stride_merges_exactly():
    torch.manual_seed(1)
    base = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=True)
    layer = LoRAConv2d(base, rank=3, alpha=6)
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
    layer = LoRALinear(base, rank=2)
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
        LoRAConv2d(nn.Conv2d(4, 4, 3, groups=4), rank=2)
    with pytest.raises(TypeError):
        LoRALinear(nn.Conv2d(4, 4, 1))
    with pytest.raises(ValueError):
        LoRALinear(nn.Linear(4, 4), rank=0)


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
    names = add_lora(net, rank=2)
    assert names == ["0.3", "0.6", "3"]                 # two 1x1 convs and the linear layer
    assert torch.equal(net(x), ref)                     # identical at initialisation
    assert all(("down" in n or "up" in n) for n, p in net.named_parameters() if p.requires_grad)
    expected = 2 * (8 + 16) + 2 * (16 + 8) + 2 * (8 + 4)
    assert n_trainable(net) == expected == sum(p.numel() for p in lora_parameters(net))
    assert add_lora(net, rank=2) == []                # wrapping again adds nothing
    assert len(add_lora(_block(), rank=2, pointwise_only=False)) == 3  # the 3x3 ungrouped conv too


def test_add_lora_on_stages_gradients_flow_only_where_intended():
    torch.manual_seed(4)
    bottom = _block()
    top = nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 1))
    head = nn.Linear(16, 2)
    model = nn.Sequential(bottom, top, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    freeze(bottom)
    add_lora([top], rank=2)
    model.train()
    F.cross_entropy(model(torch.randn(4, 3, 6, 6)), torch.tensor([0, 1, 0, 1])).backward()
    for name, p in model.named_parameters():
        should = ".down." in name or ".up." in name or name.startswith("4.")
        assert (p.grad is not None) == should, name
        assert p.requires_grad == should, name


def test_merge_lora_keeps_the_function():
    torch.manual_seed(5)
    net = nn.Sequential(_block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    add_lora(net, rank=2)
    for p in lora_parameters(net):
        with torch.no_grad():
            p.normal_(std=0.1)
    x = torch.randn(2, 3, 6, 6)
    before = net(x).detach()
    assert merge_lora(net) == 3
    assert not any(isinstance(m, (LoRAConv2d, LoRALinear)) for m in net.modules())
    assert torch.allclose(net(x), before, atol=1e-5)

# --------------------------------------------------------------------------- BitFit-style
def test_train_batchnorm_only_counts_and_trains_only_bn():
    net = _block()
    n = train_batchnorm_only(net)
    assert n == 2 * 8 + 2 * 16
    assert {name for name, p in net.named_parameters() if p.requires_grad} == \
        {"1.weight", "1.bias", "5.weight", "5.bias"}


def test_train_batchnorm_only_counts_every_batchnorm_kind():
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    assert isinstance(net[1], BATCHNORM)
    assert train_batchnorm_only(net) == 12 == n_trainable(net)


def test_bitfit_unfreezes_every_bias():
    net = _block()
    n = bitfit(net)
    biases = sum(p.numel() for name, p in net.named_parameters() if name.endswith("bias"))
    assert n == biases == 8 + 8 + 16 + 16 + 16 + 8
    assert all(name.endswith("bias") == p.requires_grad for name, p in net.named_parameters())


def test_batchnorm_tuning_with_frozen_statistics():
    """Training BN affine parameters inside a TransferModel with bn_stats='frozen' changes the
    affine parameters but never the running statistics."""
    torch.manual_seed(6)
    body = nn.Sequential(_block(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    train_batchnorm_only(body)
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
