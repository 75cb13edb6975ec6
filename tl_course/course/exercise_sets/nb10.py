"""Exercises of notebook 10 (distillation and parameter-efficient fine-tuning)."""
from .. import asserts
from ..exercises import checker


@checker("10.lora_parameters")
def _lora_parameters(answer):
    from torch import nn

    from ...models.peft import LoRAConv2d
    from ...models.transfer import count_parameters

    expected = count_parameters(LoRAConv2d(nn.Conv2d(192, 1152, 1, bias=False), rank=8))[0]
    asserts.exact(asserts.integer(answer), expected, "the number of parameters in A and B",
                  {192 * 1152: "that is the size of the frozen convolution, not of its low-rank update."})


@checker("10.soft_target")
def _soft_target(answer):
    import torch

    expected = float((torch.tensor([3.0, 1.0, -1.0]) / 4.0).softmax(-1)[1])
    answer = asserts.number(answer)
    at_t1 = float(torch.tensor([3.0, 1.0, -1.0]).softmax(-1)[1])
    if abs(answer - at_t1) < 1e-3:
        raise AssertionError("that is the probability at temperature 1: divide the logits by T first.")
    assert abs(answer - expected) < 1e-3, f"{answer:.4f} is not softmax(logits / 4)[1]."


@checker("10.batchnorm_parameters")
def _batchnorm_parameters(answer):
    import copy

    from ...models.backbones import load_backbone
    from ...models.peft import train_batchnorm_only

    stage = copy.deepcopy(load_backbone("efficientnet_lite0", image_size=64).model.head_conv)
    expected = train_batchnorm_only(stage)
    answer = asserts.integer(answer)
    if answer == expected // 2:
        raise AssertionError("count both the scale (weight) and the shift (bias) of each channel.")
    assert answer == expected, f"{answer} is not the number of BatchNorm affine parameters in head_conv."
