"""Exercises of notebook 10 (distillation and parameter-efficient fine-tuning)."""
from .. import asserts
from ..exercises import register


@register("10.lora_parameters",
          "How many trainable parameters does a rank-8 LoRA update add to a 1x1 convolution from 192 "
          "to 1152 channels?",
          "an int: the parameters of the two low-rank factors A (down) and B (up)",
          "A maps 192 channels to 8, B maps 8 channels to 1152; a 1x1 convolution without bias has "
          "in x out weights. Or wrap the layer with LoRAConv2d and count what trains.",
          "Compare with the 192 x 1152 = 221,184 weights of the convolution itself: LoRA trains ~5% of them.")
def _lora_parameters(answer):
    from torch import nn

    from ...models.peft import LoRAConv2d
    from ...models.transfer import count_parameters

    expected = count_parameters(LoRAConv2d(nn.Conv2d(192, 1152, 1, bias=False), rank=8))[0]
    asserts.exact(asserts.integer(answer), expected, "the number of parameters in A and B",
                  {192 * 1152: "that is the size of the frozen convolution, not of its low-rank update."})


@register("10.soft_target",
          "A teacher outputs the logits [3.0, 1.0, -1.0]. What probability does it give to class 1 at "
          "temperature 4?",
          "a float between 0 and 1: softmax(logits / T)[1]",
          "Divide the logits by T before the softmax: soft_targets(torch.tensor([...]), 4.0).",
          "At T=1 the same class gets only 0.117: the temperature lets the wrong classes speak.")
def _soft_target(answer):
    import torch

    expected = float((torch.tensor([3.0, 1.0, -1.0]) / 4.0).softmax(-1)[1])
    answer = asserts.number(answer)
    at_t1 = float(torch.tensor([3.0, 1.0, -1.0]).softmax(-1)[1])
    if abs(answer - at_t1) < 1e-3:
        raise AssertionError("that is the probability at temperature 1: divide the logits by T first.")
    assert abs(answer - expected) < 1e-3, f"{answer:.4f} is not softmax(logits / 4)[1]."


@register("10.batchnorm_parameters",
          "How many parameters does train_batchnorm_only leave trainable in Lite0's last stage, head_conv?",
          "an int: the BatchNorm scale and shift of every channel of that stage",
          "head_conv is a 1x1 convolution to 1280 channels followed by one BatchNorm; a BatchNorm has a "
          "weight and a bias per channel. Or call train_batchnorm_only on (a copy of) it.",
          "A few thousand numbers per stage, against 410 k weights in its convolution.")
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
