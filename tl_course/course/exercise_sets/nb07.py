"""Exercises of notebook 07 (the frozen-backbone classifier)."""
from .. import asserts
from ..exercises import checker, trivial_answers


@checker("07.head_parameters")
def _head_parameters(answer):
    from torch import nn

    expected = sum(p.numel() for p in nn.Linear(1280, 5).parameters())
    asserts.exact(asserts.integer(answer), expected, "the number of parameters of nn.Linear(1280, 5)",
                  {1280 * 5: "you counted the weights but not the biases."})


@trivial_answers("07.head_parameters")
def _():
    from torch import nn

    printed = sum(p.numel() for p in nn.Linear(1280, 2).parameters())  # the 2-class head printed in step 4
    return [(0, {}), (5, {}), (1280, {}), (1280 * 5, {}), (printed, {})]


def _bn_in_train_mode(unfrozen: int) -> tuple[int, int]:
    """(BatchNorm layers in training mode, all BatchNorm layers) after model.train() with the top
    ``unfrozen`` stages of a frozen Lite0 unfrozen."""
    import torch

    from ...models import transfer
    from ...models.backbones import load_backbone

    bb = load_backbone("efficientnet_lite0", image_size=64)
    model = transfer.TransferModel(bb, 2)
    transfer.unfreeze_top(bb, unfrozen)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    return sum(m.training for m in bns), len(bns)


@checker("07.bn_in_train_mode")
def _bn_in_train_mode_checker(answer):
    expected, total = _bn_in_train_mode(2)
    answer = asserts.integer(answer)
    mistakes = {0: "0 is the count with the whole backbone frozen; after unfreeze_top(bb, 2) some layers "
                   "are trainable again. Did you call unfreeze_top before model.train()?",
                total: f"{total} is every BatchNorm layer of the model: the frozen ones stay in eval mode "
                       "(TransferModel's fix). Count only the layers with .training == True."}
    asserts.exact(answer, expected, "the number of BatchNorm layers in training mode", mistakes)


@trivial_answers("07.bn_in_train_mode")
def _():
    _, total = _bn_in_train_mode(2)
    return [(0, {}), (total, {}), (2, {}), (1, {})]


def _imagenet_lite0():
    from ...models.backbones import load_imagenet_classifier

    return load_imagenet_classifier("efficientnet_lite0")[0]


@checker("07.freeze_and_replace_head")
def _freeze_and_replace_head(answer, num_classes=None):
    import torch
    from torch import nn

    num_classes = asserts.integer(num_classes, "the number of classes, passed as ex.check(net, num_classes=...)")
    assert num_classes >= 2, f"a classifier needs at least 2 classes, got num_classes={num_classes}."
    net = asserts.one_of(answer, (nn.Module,), "the network net (an nn.Module)")
    reference = _imagenet_lite0()
    old_head = reference.get_classifier()
    body = [(n, p) for n, p in net.named_parameters() if not n.startswith("classifier.")]
    trainable = [n for n, p in body if p.requires_grad]
    assert not trainable, (f"{len(trainable)} of the {len(body)} pretrained parameter tensors are still trainable "
                           f"(the first is {trainable[0]}): set requires_grad = False on every one of them.")
    head = getattr(net, "classifier", None)
    assert isinstance(head, nn.Linear), (f"net.classifier should be a new nn.Linear, got "
                                         f"{type(head).__name__}: the head is what turns features into class scores.")
    assert head.out_features != old_head.out_features or num_classes == old_head.out_features, \
        (f"net.classifier still has {head.out_features} outputs, one per ImageNet class: replace it by a new "
         f"nn.Linear with one output per class of our task ({num_classes}).")
    assert head.in_features == old_head.in_features, \
        (f"the new head takes {head.in_features} inputs, but the network gives it {old_head.in_features} "
         "features: read them from the old head's in_features.")
    assert head.out_features == num_classes, (f"the new head has {head.out_features} outputs; our task has "
                                              f"{num_classes} classes.")
    assert all(p.requires_grad for p in head.parameters()), \
        "the new head is frozen too: create it after freezing the network, so its parameters stay trainable."
    ref = {n: t for n, t in reference.state_dict().items() if not n.startswith("classifier.")}
    got = {n: t for n, t in net.state_dict().items() if not n.startswith("classifier.")}
    assert ref.keys() == got.keys(), "the pretrained layers have changed: replace only net.classifier."
    changed = [n for n in ref if not torch.equal(ref[n], got[n])]
    assert not changed, (f"the pretrained weights have changed ({changed[0]}): freezing keeps them exactly "
                         "as they are; start again from a freshly loaded net.")
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, 3, 64, 64))
    assert tuple(out.shape) == (1, num_classes), f"net gives outputs of shape {tuple(out.shape)}, not (1, {num_classes})."


@trivial_answers("07.freeze_and_replace_head")
def _():
    from torch import nn

    def net(freeze_body=True, head="new", head_trainable=True):
        model = _imagenet_lite0()
        if freeze_body:
            for p in model.parameters():
                p.requires_grad = False
        if head == "identity":
            model.classifier = nn.Identity()
        elif head == "new":
            model.classifier = nn.Linear(model.classifier.in_features, 2)
        elif head == "new-1000":
            model.classifier = nn.Linear(model.classifier.in_features, 1000)
        for p in model.classifier.parameters():
            p.requires_grad = head_trainable
        return model

    context = {"num_classes": 2}
    return [(_imagenet_lite0(), context),                                   # untouched
            (net(head="identity"), context),                                # no head at all
            (net(head_trainable=False), context),                           # everything frozen, head too
            (net(freeze_body=False), context),                              # head replaced, body not frozen
            (net(head="imagenet", head_trainable=False), context),          # frozen, old ImageNet head
            (net(head="new-1000"), context),                                # a new head of the wrong size
            (net().classifier, context)]                                    # only the head handed in
