"""tl_course.models.transfer: freezing, unfreezing the top N stages, heads, the frozen-BatchNorm fix,
parameter tables and per-part learning rates."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tl_course.models.backbones import Backbone, Preprocessing
from tl_course.models.transfer import (TransferModel, count_parameters, format_parameter_table, freeze,
                                       freeze_backbone, make_head, param_groups, parameter_table, unfreeze,
                                       unfreeze_top)


def _tiny_backbone() -> Backbone:
    """A 3-stage conv net with BatchNorm, shaped like a real Backbone (8-d features)."""
    torch.manual_seed(0)
    s1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    s2 = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
    s3 = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    model = nn.Sequential(s1, s2, s3, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Backbone("tiny", model.eval(), 8, Preprocessing(), [s1, s2, s3], "random", "0" * 64)


def _n(module):
    return sum(p.numel() for p in module.parameters())


def _trainable(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_freeze_and_unfreeze():
    bb = _tiny_backbone()
    assert freeze(bb.model) is bb.model
    assert _trainable(bb.model) == 0
    assert unfreeze(bb.model) is bb.model
    assert _trainable(bb.model) == _n(bb.model)
    freeze_backbone(bb)
    assert _trainable(bb.model) == 0


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_unfreeze_top_counts(n):
    bb = _tiny_backbone()
    top = unfreeze_top(bb, n)
    expected = bb.stages[3 - n:] if n else []
    assert top == expected
    assert _trainable(bb.model) == sum(_n(s) for s in expected)
    for stage in bb.stages[: 3 - n]:
        assert _trainable(stage) == 0


def test_unfreeze_top_refreezes_lower_stages():
    bb = _tiny_backbone()
    unfreeze(bb.model)
    unfreeze_top(bb, 1)
    assert _trainable(bb.model) == _n(bb.stages[-1])


@pytest.mark.parametrize("n", [-1, 4, 100])
def test_unfreeze_top_invalid_n(n):
    bb = _tiny_backbone()
    with pytest.raises(ValueError, match="between 0 and 3"):
        unfreeze_top(bb, n)


def test_unfreeze_top_on_lite0():
    from tl_course.models.backbones import load_backbone

    bb = load_backbone("efficientnet_lite0", image_size=64)
    unfreeze_top(bb, 2)
    expected = sum(_n(s) for s in bb.stages[-2:])
    assert count_parameters(bb.model) == (expected, bb.num_parameters())
    unfreeze_top(bb, len(bb.stages))
    assert count_parameters(bb.model) == (bb.num_parameters(), bb.num_parameters())


def test_make_head_kinds():
    linear = make_head(8, 3)
    assert [type(m) for m in linear] == [nn.Dropout, nn.Linear]
    assert linear(torch.randn(5, 8)).shape == (5, 3)
    mlp = make_head(8, 4, "mlp", hidden=16, dropout=0.0)
    assert _n(mlp) == 8 * 16 + 16 + 16 * 4 + 4
    assert mlp(torch.randn(5, 8)).shape == (5, 4)


def test_make_head_bad_input():
    with pytest.raises(ValueError, match="Unknown head kind 'cnn'"):
        make_head(8, 3, "cnn")
    with pytest.raises(ValueError, match="at least 2 classes"):
        make_head(8, 1)


def test_transfer_model_forward_and_custom_head():
    bb = _tiny_backbone()
    model = TransferModel(bb, num_classes=3)
    assert model(torch.randn(2, 3, 12, 12)).shape == (2, 3)
    head = nn.Linear(8, 5)
    assert TransferModel(bb, 5, head=head).head is head
    with pytest.raises(ValueError, match="bn_stats"):
        TransferModel(bb, 3, bn_stats="sometimes")


def _bn_layers(model):
    return [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]


def _running_means(model):
    return [m.running_mean.clone() for m in _bn_layers(model)]


def _forward_in_train_mode(model):
    model.train()
    torch.manual_seed(1)
    model(torch.randn(4, 3, 12, 12) * 3 + 2)


def test_frozen_batchnorm_stays_in_eval_mode():
    bb = _tiny_backbone()
    freeze_backbone(bb)
    model = TransferModel(bb, 3)
    before = _running_means(model)
    _forward_in_train_mode(model)
    assert model.training and model.head.training
    assert all(not m.training for m in _bn_layers(model))
    for a, b in zip(before, _running_means(model)):
        assert torch.equal(a, b)


def test_frozen_bn_eval_false_lets_statistics_drift():
    bb = _tiny_backbone()
    freeze_backbone(bb)
    model = TransferModel(bb, 3, frozen_bn_eval=False)
    before = _running_means(model)
    _forward_in_train_mode(model)
    assert all(m.training for m in _bn_layers(model))
    assert all(not torch.equal(a, b) for a, b in zip(before, _running_means(model)))


def test_unfrozen_stage_batchnorm_updates_in_auto_mode():
    bb = _tiny_backbone()
    unfreeze_top(bb, 1)
    model = TransferModel(bb, 3)
    before = _running_means(model)
    _forward_in_train_mode(model)
    after = _running_means(model)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert not torch.equal(before[2], after[2])


def test_bn_stats_frozen_and_train():
    bb = _tiny_backbone()
    unfreeze_top(bb, 3)
    frozen = TransferModel(bb, 3, bn_stats="frozen")
    before = _running_means(frozen)
    _forward_in_train_mode(frozen)
    assert all(torch.equal(a, b) for a, b in zip(before, _running_means(frozen)))

    bb2 = _tiny_backbone()
    freeze_backbone(bb2)
    train = TransferModel(bb2, 3, bn_stats="train")
    before = _running_means(train)
    _forward_in_train_mode(train)
    assert all(not torch.equal(a, b) for a, b in zip(before, _running_means(train)))


def test_eval_mode_puts_everything_in_eval():
    bb = _tiny_backbone()
    model = TransferModel(bb, 3, frozen_bn_eval=False)
    model.train()
    model.eval()
    assert not any(m.training for m in model.modules())


def test_parameter_table_totals_match_count_parameters():
    bb = _tiny_backbone()
    unfreeze_top(bb, 1)
    model = TransferModel(bb, 3, head="mlp")
    trainable, total = count_parameters(model)
    for depth in (1, 2, 3):
        rows = parameter_table(model, depth)
        assert rows[-1]["module"] == "TOTAL"
        assert rows[-1]["trainable"] == trainable
        assert rows[-1]["trainable"] + rows[-1]["frozen"] == total
    rows = {r["module"]: r for r in parameter_table(model, 1)}
    assert set(rows) == {"backbone", "head", "TOTAL"}
    assert rows["head"] == {"module": "head", "trainable": _n(model.head), "frozen": 0}
    assert rows["backbone"]["trainable"] == _n(bb.stages[-1])
    text = format_parameter_table(model)
    assert "TOTAL" in text and f"{total - trainable:,}" in text


def test_parameter_table_top_level_parameters():
    model = nn.Linear(3, 2)  # parameters without a submodule prefix
    rows = parameter_table(model)
    assert [r["module"] for r in rows] == ["weight", "bias", "TOTAL"]
    assert rows[-1]["trainable"] == 8


def test_param_groups_learning_rates():
    bb = _tiny_backbone()
    freeze_backbone(bb)
    model = TransferModel(bb, 3)
    groups = param_groups(model, head_lr=1e-3, backbone_lr=1e-5)
    assert [g["name"] for g in groups] == ["head"]  # frozen backbone: left out
    unfreeze_top(bb, 2)
    groups = param_groups(model, head_lr=1e-3, backbone_lr=1e-5, weight_decay=0.01)
    by_name = {g["name"]: g for g in groups}
    assert by_name["head"]["lr"] == 1e-3 and by_name["backbone"]["lr"] == 1e-5
    assert sum(p.numel() for p in by_name["backbone"]["params"]) == sum(_n(s) for s in bb.stages[-2:])
    assert all(g["weight_decay"] == 0.01 for g in groups)
    opt = torch.optim.AdamW(groups)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-5]


def test_training_step_only_changes_trainable_parameters():
    bb = _tiny_backbone()
    unfreeze_top(bb, 1)
    model = TransferModel(bb, 3)
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(param_groups(model, 0.1, 0.1))
    model.train()
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 12, 12)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    after = model.state_dict()
    assert torch.equal(before["backbone.0.0.weight"], after["backbone.0.0.weight"])
    assert not torch.equal(before["backbone.2.0.weight"], after["backbone.2.0.weight"])
    assert not torch.equal(before["head.1.weight"], after["head.1.weight"])
