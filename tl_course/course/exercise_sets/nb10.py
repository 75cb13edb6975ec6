"""Exercises of notebook 10 (distillation and parameter-efficient fine-tuning)."""
from .. import asserts
from ..exercises import checker, trivial_answers


@checker("10.lora_parameters")
def _lora_parameters(answer):
    from torch import nn

    from ...models.peft import LoRAConv2d
    from ...models.transfer import count_parameters

    expected = count_parameters(LoRAConv2d(nn.Conv2d(192, 1152, 1, bias=False), rank=8))[0]
    asserts.exact(asserts.integer(answer), expected, "the number of parameters in A and B",
                  {192 * 1152: "that is the size of the frozen convolution, not of its low-rank update.",
                   192 * 8: "that is A alone; B (8 -> 1152 channels) trains too.",
                   8 * 1152: "that is B alone; A (192 -> 8 channels) trains too."})


@trivial_answers("10.lora_parameters")
def _lora_parameters_trivial():
    # 35,328 is what the notebook prints for the three wrapped layers of the top stages together
    return [(0, {}), (8, {}), (192 * 1152, {}), (192 * 8, {}), (8 * 1152, {}), (35_328, {}), (10_752.0, {})]


def _reference_loss(student, teacher, labels, temperature, alpha, square=True, reverse=False):
    """The distillation loss computed here, independently of the learner's code (and of the
    library's), plus the common mistakes: without T**2 (``square=False``), KL the wrong way round."""
    import torch.nn.functional as F

    t = temperature
    log_p_teacher, log_p_student = F.log_softmax(teacher / t, -1), F.log_softmax(student / t, -1)
    if reverse:
        kl = (log_p_student.exp() * (log_p_student - log_p_teacher)).sum(-1).mean()
    else:
        kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean()
    return (1 - alpha) * F.cross_entropy(student, labels) + alpha * (t * t if square else 1.0) * kl


@checker("10.distillation_loss")
def _distillation_loss(answer):
    import torch

    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ())))   # fresh inputs every check
    cases = [(8, 3, 4.0, 0.9), (5, 10, 2.0, 0.5), (16, 2, 1.0, 0.3), (4, 5, 6.0, 1.0)]
    for n, c, t, alpha in cases:
        student = torch.randn(n, c, generator=generator) * 3
        teacher = torch.randn(n, c, generator=generator) * 3
        labels = torch.randint(0, c, (n,), generator=generator)
        args = (student.clone(), teacher.clone(), labels.clone(), t, alpha)
        got = asserts.call(answer, *args, what="a function (student_logits, teacher_logits, labels, temperature, alpha)")
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            raise AssertionError(f"expected a one-element tensor (the loss averaged over the batch), got {type(got).__name__}"
                                 + (f" of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else "") + ".")
        got = float(got.detach().reshape(()))
        expected = float(_reference_loss(student, teacher, labels, t, alpha))
        if abs(got - expected) <= 1e-4 * max(1.0, abs(expected)):
            continue
        case = f"(T={t:g}, alpha={alpha:g})"
        mistakes = [(_reference_loss(student, teacher, labels, t, alpha, square=False), "multiply the KL term by T**2."),
                    (_reference_loss(student, teacher, labels, t, alpha, reverse=True),
                     "the KL is the wrong way round: KL(teacher || student) = sum p_teacher * (log p_teacher - log p_student)."),
                    (_reference_loss(student, teacher, labels, 1.0, alpha), "divide both logits by T before the softmax."),
                    (torch.nn.functional.cross_entropy(student, labels), "that is plain cross-entropy: add the KL term."),
                    (_reference_loss(student, teacher, labels, t, 1 - alpha), "alpha weighs the KL term, 1 - alpha the cross-entropy.")]
        for value, message in mistakes:
            if abs(got - float(value)) <= 1e-4 * max(1.0, abs(float(value))):
                raise AssertionError(f"{case}: {message}")
        raise AssertionError(f"{case}: your loss is {got:.4f}, expected {expected:.4f}.")


@trivial_answers("10.distillation_loss")
def _distillation_loss_trivial():
    import torch
    import torch.nn.functional as F

    from ...methods.distillation import soft_targets

    def forward_kl_no_square(s, t, y, temperature, alpha):
        return _reference_loss(s, t, y, temperature, alpha, square=False)

    def reverse_kl(s, t, y, temperature, alpha):
        return _reference_loss(s, t, y, temperature, alpha, reverse=True)

    return [(lambda s, t, y, temperature, alpha: 0, {}),
            (lambda s, t, y, temperature, alpha: torch.tensor(0.0), {}),
            (lambda s, t, y, temperature, alpha: None, {}),
            (lambda s, t, y, temperature, alpha: F.cross_entropy(s, y), {}),
            (lambda s, t, y, temperature, alpha: soft_targets(t, temperature), {}),
            (lambda s, t, y, temperature, alpha: F.kl_div(F.log_softmax(s, -1), F.softmax(t, -1), reduction="batchmean"), {}),
            (forward_kl_no_square, {}), (reverse_kl, {}), (0.3072, {}), (None, {})]


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


@trivial_answers("10.batchnorm_parameters")
def _batchnorm_parameters_trivial():
    return [(0, {}), (1280, {}), (320 * 1280, {}), (1280 * 4, {}), (2 * 1280.0, {})]
