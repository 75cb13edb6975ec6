"""Exercises of notebook 08 (fine-tuning)."""
from .. import asserts
from ..exercises import checker


@checker("08.param_groups")
def _param_groups(answer, model=None):
    assert isinstance(answer, list) and all(isinstance(g, dict) and "params" in g and "lr" in g for g in answer), \
        "expected a list of dicts with 'params' and 'lr'."
    head_ids = {id(p) for p in model.head.parameters()}
    body_ids = {id(p) for p in model.backbone.parameters() if p.requires_grad}
    assert body_ids, "no backbone parameter is trainable: unfreeze the top 2 stages first."
    lr_of = {}
    for group in answer:
        for p in group["params"]:
            lr_of[id(p)] = group["lr"]
    assert all(lr_of.get(i) == 1e-3 for i in head_ids), "every head parameter needs lr 1e-3."
    assert all(lr_of.get(i) == 1e-4 for i in body_ids), "every trainable backbone parameter needs lr 1e-4."
    frozen = {id(p) for p in model.backbone.parameters() if not p.requires_grad}
    assert not frozen & set(lr_of), "frozen parameters should not be given to the optimizer."


@checker("08.trainable_after_unfreeze")
def _trainable(answer, model=None, backbone=None):
    from ...models import transfer

    transfer.unfreeze_top(backbone, 2)
    trainable, total = transfer.count_parameters(model)
    answer = asserts.integer(answer)
    assert answer != total, "that is the total number of parameters, frozen ones included."
    assert answer == trainable, f"{answer:,} is not the number of trainable parameters."
