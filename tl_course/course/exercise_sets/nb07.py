"""Exercises of notebook 07 (the frozen-backbone classifier)."""
from .. import asserts
from ..exercises import checker


@checker("07.head_parameters")
def _head_parameters(answer):
    from torch import nn

    expected = sum(p.numel() for p in nn.Linear(1280, 5).parameters())
    asserts.exact(asserts.integer(answer), expected, "the number of parameters of nn.Linear(1280, 5)",
                  {1280 * 5: "you counted the weights but not the biases."})


@checker("07.bn_in_train_mode")
def _bn_in_train_mode(answer):
    import torch

    from ...models import transfer
    from ...models.backbones import load_backbone

    bb = load_backbone("efficientnet_lite0", image_size=64)
    model = transfer.TransferModel(bb, 2)
    transfer.freeze_backbone(bb)
    model.train()
    expected = sum(isinstance(m, torch.nn.BatchNorm2d) and m.training for m in model.modules())
    answer = asserts.integer(answer)
    assert answer == expected, (f"{answer} is not what model.train() leaves in training mode; "
                                "did you freeze the backbone before calling model.train()?")
