"""Exercises of notebook 06 (inside a pretrained network, and how to choose one)."""
from ..exercises import checker


@checker("06.stage_heights")
def _stage_heights(answer):
    import torch

    from ...models.backbones import load_backbone
    from ...models.stages import stage_outputs

    expected = [int(m.shape[-2]) for m in stage_outputs(load_backbone("efficientnet_lite0"),
                                                        torch.zeros(1, 3, 96, 96))]
    assert isinstance(answer, (list, tuple)), f"expected a list of ints, got {type(answer).__name__}."
    assert len(answer) == len(expected), f"Lite0 has {len(expected)} stages; you gave {len(answer)} numbers."
    got = [int(a) for a in answer]
    wrong = [i for i, (a, e) in enumerate(zip(got, expected)) if a != e]
    assert not wrong, (f"stage {wrong[0]} is wrong ({got[wrong[0]]}). Did you feed 96x96 inputs and "
                       "read the height (shape[-2]) of each stage's output?")


@checker("06.heaviest_stage")
def _heaviest_stage(answer):
    from ...models.backbones import load_backbone

    stages = load_backbone("efficientnet_lite0").stages
    counts = [sum(p.numel() for p in s.parameters()) for s in stages]
    expected = max(range(len(counts)), key=counts.__getitem__)
    assert isinstance(answer, int) and not isinstance(answer, bool), \
        f"expected an int (a stage index), got {type(answer).__name__}."
    assert 0 <= answer < len(counts), f"{answer} is not a stage index (0-{len(counts) - 1})."
    assert answer == expected, (f"stage {answer} has {counts[answer]:,} parameters; another stage has more.")
