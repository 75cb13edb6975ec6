"""Exercises of notebook 07 (the frozen-backbone classifier)."""
from .. import asserts
from ..exercises import register


@register("07.head_parameters",
          "How many trainable parameters does a linear head have on 1280 features for 5 classes?",
          "an int: weights plus biases of nn.Linear(1280, 5)",
          "A linear layer has one weight per (input, output) pair and one bias per output.",
          "That is all a frozen-backbone classifier learns: a few thousand numbers, hence seconds.")
def _head_parameters(answer):
    from torch import nn

    expected = sum(p.numel() for p in nn.Linear(1280, 5).parameters())
    asserts.exact(asserts.integer(answer), expected, "the number of parameters of nn.Linear(1280, 5)",
                  {1280 * 5: "you counted the weights but not the biases."})


@register("07.bn_in_train_mode",
          "With the backbone frozen and the default TransferModel, how many BatchNorm layers are in "
          "training mode after model.train()?",
          "an int: count modules that are BatchNorm2d and have .training == True",
          "Iterate over model.modules(), keep isinstance(m, torch.nn.BatchNorm2d) and m.training.",
          "Frozen BatchNorm layers stay in eval mode, so their pretrained statistics do not drift.")
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
