"""Exercises of notebook 08 (fine-tuning): write step 6's optimizer groups and the training step."""
from ..asserts import NotSolvedYet
from ..exercises import checker, trivial_answers


@checker("08.param_groups")
def _param_groups(answer, model=None):
    assert isinstance(answer, list) and answer and all(isinstance(g, dict) and "params" in g and "lr" in g
                                                       for g in answer), \
        "expected a non-empty list of dicts, each with 'params' and 'lr'."
    head_ids = {id(p) for p in model.head.parameters()}
    body_ids = {id(p) for p in model.backbone.parameters() if p.requires_grad}
    assert body_ids, "no backbone parameter is trainable: unfreeze the top 2 stages of ex_backbone first."
    stages = getattr(model.backbone, "__len__", None) and list(model.backbone)
    if stages:  # the backbone's own stages, without its pooling layer
        with_params = [s for s in stages if any(True for _ in s.parameters())]
        trainable = [any(p.requires_grad for p in s.parameters()) for s in with_params]
        assert trainable == [False] * (len(trainable) - 2) + [True, True], (
            f"{sum(trainable)} stage(s) are trainable, not just the top 2: freeze everything, then unfreeze the top 2.")
    lr_of: dict[int, float] = {}
    for group in answer:
        for p in group["params"]:
            assert id(p) not in lr_of, "a parameter appears in two groups."
            lr_of[id(p)] = group["lr"]
    assert head_ids <= set(lr_of), "every head parameter must be in a group."
    assert all(lr_of[i] == 1e-3 for i in head_ids), "every head parameter needs lr 1e-3."
    assert body_ids <= set(lr_of), "every unfrozen backbone parameter must be in a group."
    assert all(lr_of[i] == 1e-4 for i in body_ids), "every unfrozen backbone parameter needs lr 1e-4."
    frozen = {id(p) for p in model.backbone.parameters() if not p.requires_grad}
    assert not frozen & set(lr_of), "frozen parameters should not be given to the optimizer."


def _small_model(seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


@checker("08.training_step")
def _training_step(answer):
    import copy

    import torch
    import torch.nn.functional as F

    assert callable(answer), "expected your function training_step itself (no parentheses)."
    torch.manual_seed(1)
    batches = [(torch.randn(16, 6), torch.randint(0, 3, (16,))) for _ in range(2)]
    mine, ref = _small_model(0), _small_model(0)
    opt_mine = torch.optim.SGD(mine.parameters(), lr=0.1, momentum=0.0)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.0)
    before = copy.deepcopy(mine.state_dict())
    for step, (x, y) in enumerate(batches):
        opt_ref.zero_grad()
        loss = F.cross_entropy(ref(x), y)
        loss.backward()
        expected = loss.item()
        opt_ref.step()
        got = answer(mine, opt_mine, x.clone(), y.clone())
        if got is None and step == 0 and all(torch.equal(before[k], v) for k, v in mine.state_dict().items()):
            raise NotSolvedYet  # the student edition's stub: nothing done, nothing returned
        assert got is not None, "training_step returned None: return the loss as a float (loss.item())."
        assert isinstance(got, (float, int)) or (isinstance(got, torch.Tensor) and got.numel() == 1), \
            f"return the loss as a float, got {type(got).__name__}."
        got = float(got.detach()) if isinstance(got, torch.Tensor) else float(got)
        assert abs(got - expected) < 1e-5, (
            f"step {step + 1}: returned loss {got:.4f}, the cross-entropy of this batch is {expected:.4f} "
            "(compute it before the optimizer step).")
        if step == 0:
            moved = any(not torch.equal(before[k], v) for k, v in mine.state_dict().items())
            assert moved, "the weights did not change: call loss.backward() and optimizer.step()."
        for (k, a), b in zip(mine.state_dict().items(), ref.state_dict().values()):
            assert torch.allclose(a, b, atol=1e-6), (
                f"after step {step + 1} the weights differ from one correct step"
                + (" (gradients of the previous batch were added: call optimizer.zero_grad() first)." if step else "."))


@trivial_answers("08.param_groups")
def _():
    import torch

    from ...models import transfer
    from ...models.backbones import load_backbone

    bb = load_backbone("efficientnet_lite0", image_size=32)
    transfer.freeze_backbone(bb)
    model = transfer.TransferModel(bb, 2)
    everything = [{"params": list(model.parameters()), "lr": 1e-3}]
    frozen_only = [{"params": list(model.head.parameters()), "lr": 1e-3}]
    transfer.unfreeze_top(bb, 2)
    one_lr = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": 1e-3}]
    swapped = transfer.param_groups(model, head_lr=1e-4, backbone_lr=1e-3)
    ctx = {"model": model}
    return [([], ctx), (everything, ctx), (frozen_only, ctx), (one_lr, ctx), (swapped, ctx),
            (torch.optim.AdamW(model.parameters()).param_groups, ctx)]


@trivial_answers("08.training_step")
def _():
    import torch.nn.functional as F

    def does_nothing(model, optimizer, x, y):
        return 0.0

    def loss_only(model, optimizer, x, y):
        return F.cross_entropy(model(x), y).item()

    def no_zero_grad(model, optimizer, x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    def loss_after_step(model, optimizer, x, y):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        return F.cross_entropy(model(x), y).item()

    return [(f, {}) for f in (does_nothing, loss_only, no_zero_grad, loss_after_step)] + [(0.5, {})]
