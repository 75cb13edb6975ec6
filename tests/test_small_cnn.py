"""tl_course.models.small_cnn: the from-scratch baselines, students and MLPs."""
from __future__ import annotations

import torch
from torch import nn

from tl_course.models.small_cnn import SmallCNN, conv_trunk, mlp
from tl_course.models.transfer import count_parameters


def test_small_cnn_shapes_and_size():
    net = SmallCNN(in_channels=3, num_classes=3, width=8, depth=3, dropout=0.2)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert net(torch.randn(2, 3, 20, 24)).shape == (2, 3)
    convs = 3 * 8 * 9 + 8 * 16 * 9 + 16 * 32 * 9
    assert count_parameters(net)[0] == convs + 2 * (8 + 16 + 32) + 32 * 3 + 3
    assert net.feature_dim == 32 and net.features(torch.randn(2, 3, 16, 16)).shape == (2, 32)
    assert isinstance(net.head[0], nn.Dropout) and isinstance(SmallCNN(dropout=0.0).head, nn.Linear)


def test_small_cnn_seed_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    a = SmallCNN(in_channels=1, num_classes=4, seed=5)
    assert torch.equal(torch.rand(2), expected)
    b = SmallCNN(in_channels=1, num_classes=4, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c = SmallCNN(in_channels=1, num_classes=4, seed=6)
    assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


def test_conv_trunk_and_mlp():
    trunk = conv_trunk(1, (4, 8), seed=0)
    assert trunk(torch.randn(3, 1, 12, 12)).shape == (3, 8)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in conv_trunk(1, (4,), batch_norm=False).modules())
    net = mlp([10, 6, 3], dropout=0.1)
    assert net(torch.randn(5, 10)).shape == (5, 3)
    assert isinstance(net[-1], nn.Linear) and sum(isinstance(m, nn.ReLU) for m in net) == 1
