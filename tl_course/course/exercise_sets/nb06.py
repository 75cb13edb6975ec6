"""Exercises of notebook 06 (inside a pretrained network, and how to choose one)."""
from .. import asserts
from ..exercises import checker, trivial_answers


def _lite0_stage_heights(size: int) -> list[int]:
    import torch

    from ...models.backbones import load_backbone
    from ...models.stages import stage_outputs

    return [int(m.shape[-2]) for m in stage_outputs(load_backbone("efficientnet_lite0"),
                                                    torch.zeros(1, 3, size, size))]


@checker("06.stage_heights")
def _stage_heights(answer):
    expected = _lite0_stage_heights(96)
    assert isinstance(answer, (list, tuple)), f"expected a list of ints, got {type(answer).__name__}."
    assert len(answer) == len(expected), f"Lite0 has {len(expected)} stages; you gave {len(answer)} numbers."
    got = [asserts.integer(a, "a list of ints") for a in answer]
    assert got != _lite0_stage_heights(224), ("these are the heights for 224x224 inputs, printed at the top "
                                              "of the notebook; feed 96x96 inputs.")
    wrong = [i for i, (a, e) in enumerate(zip(got, expected)) if a != e]
    assert not wrong, (f"stage {wrong[0]} is wrong ({got[wrong[0]]}). Did you feed 96x96 inputs and "
                       "read the height (shape[-2]) of each stage's output?")


@trivial_answers("06.stage_heights")
def _():
    return [([], {}), ([96] * 9, {}), ([0] * 9, {}), (_lite0_stage_heights(224), {}),
            (_lite0_stage_heights(64), {})]


def _stage_parameter_counts() -> list[int]:
    from ...models.backbones import load_backbone

    return [sum(p.numel() for p in s.parameters()) for s in load_backbone("efficientnet_lite0").stages]


@checker("06.cut_keeps")
def _cut_keeps(answer, best=None):
    counts = _stage_parameter_counts()
    best = asserts.integer(best, "the index of the best stage, passed as ex.check(answer, best=best)")
    assert 0 <= best < len(counts), f"best={best} is not a stage index (0-{len(counts) - 1})."
    value = asserts.number(answer, "a fraction between 0 and 1")
    kept, total = sum(counts[:best + 1]), sum(counts)
    expected = kept / total
    mistakes = {1 - expected: "that is the fraction you *drop* (the stages after the cut).",
                sum(counts[:best]) / total: f"stage {best} itself is kept: sum the stages 0 to {best}, inclusive.",
                kept: "give a fraction of all parameters, not a count.",
                counts[best] / total: "keep every stage up to the cut, not only the best one."}
    for wrong, message in mistakes.items():
        if abs(value - wrong) <= 1e-3 and abs(wrong - expected) > 1e-3:
            raise AssertionError(message)
    asserts.close(value, expected, 1e-3, "sum the parameters of stages 0 to best and divide by the total.")


@trivial_answers("06.cut_keeps")
def _():
    counts = _stage_parameter_counts()
    best = 5  # the notebook's best stage on digits_m
    total = sum(counts)
    return [(0, {"best": best}), (1, {"best": best}), (0.5, {"best": best}),
            (1 - sum(counts[:best + 1]) / total, {"best": best}),
            (max(counts) / total, {"best": best}), (sum(counts[:best + 1]), {"best": best})]
