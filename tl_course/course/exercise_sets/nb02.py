"""Exercises of notebook 02 (inductive transfer: reuse, multi-task, self-taught learning)."""
from .. import asserts
from ..exercises import checker, trivial_answers
from ...probe import few_shot_accuracy, probe_accuracy
from ...data import image_tensors, split_indices
from ...train import predict

IMAGE_SIZE = 16
DIGIT_MARGIN = 0.05
"""How far above raw pixels a trunk trained on digit identity must lift a 5-label digit probe."""


def _digits_16():
    """The notebook's data: 16x16 grayscale digits, and the pool A / pool B split."""
    from ...data import load_dataset

    data = load_dataset("digits")
    X_train, y_train = image_tensors(data.train, grayscale=True, size=IMAGE_SIZE)
    X_val, y_val = image_tensors(data.val, grayscale=True, size=IMAGE_SIZE)
    pool_a, pool_b = split_indices(y_train, 0.3, seed=0)
    return X_train, y_train, X_val, y_val, pool_a, pool_b


def _pca_accuracy(X_train, y_train, X_val, y_val, pool_a, pool_b):
    from sklearn.decomposition import PCA

    pca = PCA(n_components=32, random_state=0).fit(X_train[pool_a].flatten(1).numpy())
    P_train, P_val = pca.transform(X_train.flatten(1).numpy()), pca.transform(X_val.flatten(1).numpy())
    return few_shot_accuracy(P_train, y_train, P_val, y_val, per_class=5, seed=0, pool=pool_b)


@checker("02.pca_self_taught")
def _pca_self_taught(answer):
    value = asserts.accuracy_value(answer)
    X_train, y_train, X_val, y_val, pool_a, pool_b = _digits_16()
    expected = _pca_accuracy(X_train, y_train, X_val, y_val, pool_a, pool_b)
    raw = few_shot_accuracy(X_train.flatten(1), y_train, X_val.flatten(1), y_val, per_class=5, seed=0, pool=pool_b)
    if abs(value - raw) < 1e-9 and abs(raw - expected) > 0.01:
        raise AssertionError(f"{value:.3f} is the raw-pixel accuracy from the table, not PCA's.")
    asserts.close(value, expected, 0.005, (
        f"it is not what PCA-32 gives here; fit the PCA on pool A only, with 32 components "
        "and random_state=0, and draw 5 examples per digit from pool B with seed 0."))


@trivial_answers("02.pca_self_taught")
def _pca_self_taught_trivial():
    X_train, y_train, X_val, y_val, pool_a, pool_b = _digits_16()
    raw = few_shot_accuracy(X_train.flatten(1), y_train, X_val.flatten(1), y_val, per_class=5, seed=0, pool=pool_b)
    return [(0, {}), (0.0, {}), (0.1, {}), (1.0, {}), (raw, {}), (round(raw, 3), {})]


def _digit_probe(trunk, X_train, y_train, X_val, y_val, pool_b):
    """5-label digit-identity accuracy of a linear probe on ``trunk``'s features of the images."""
    F_train, F_val = predict(trunk, X_train).flatten(1), predict(trunk, X_val).flatten(1)
    return few_shot_accuracy(F_train, y_train, F_val, y_val, per_class=5, seed=0, pool=pool_b), F_train, F_val


@checker("02.reuse_new_labelling")
def _reuse_new_labelling(answer):
    from torch import nn

    from ...data import few_shot_indices

    assert isinstance(answer, dict) and {"trunk", "accuracy"} <= set(answer), \
        'expected a dict with the keys "trunk" and "accuracy".'
    trunk = asserts.one_of(answer["trunk"], (nn.Module,), "the trunk module (digit_model.features)")
    value = asserts.accuracy_value(answer["accuracy"])
    X_train, y_train, X_val, y_val, pool_a, pool_b = _digits_16()
    trunk.eval()
    # the trunk must be a representation *learned for digits*, not pixels nor an untrained network:
    # on digit identity from 5 labels per class, its features must beat raw pixels clearly
    raw = few_shot_accuracy(X_train.flatten(1), y_train, X_val.flatten(1), y_val, per_class=5, seed=0, pool=pool_b)
    learned, F_train, F_val = _digit_probe(trunk, X_train, y_train, X_val, y_val, pool_b)
    if learned <= raw + DIGIT_MARGIN:
        raise AssertionError(
            "answer['trunk'] gives back the pixels: use the trunk trained on digit identity, digit_model.features."
            if F_train.shape[1] == X_train[0].numel() else
            f"answer['trunk'] is not the trained digit trunk: a 5-label digit probe on its features reaches "
            f"{learned:.3f}, not clearly better than raw pixels ({raw:.3f}). Use digit_model.features.")
    big_train, big_val = (y_train >= 5).long(), (y_val >= 5).long()
    idx = pool_b[few_shot_indices(big_train[pool_b], 5, seed=0)]
    expected = probe_accuracy(F_train[idx], big_train[idx], F_val, big_val)
    assert abs(value - expected) < 0.005, (
        f"{value:.3f} is not what a linear probe on this trunk's features gives ({expected:.3f}); "
        "check the labels (digit >= 5), the 5 examples per class from pool B with seed 0, and that "
        "you used the trunk's features rather than pixels.")


@trivial_answers("02.reuse_new_labelling")
def _reuse_new_labelling_trivial():
    from torch import nn

    from ...data import few_shot_indices
    from ...models.small_cnn import SmallCNN

    X_train, y_train, X_val, y_val, pool_a, pool_b = _digits_16()
    big_train, big_val = (y_train >= 5).long(), (y_val >= 5).long()
    idx = pool_b[few_shot_indices(big_train[pool_b], 5, seed=0)]
    cases = []
    for trunk in (nn.Flatten(), nn.Identity(), SmallCNN(in_channels=1, num_classes=10, seed=0).features.eval()):
        F_train, F_val = predict(trunk, X_train).flatten(1), predict(trunk, X_val).flatten(1)
        honest = probe_accuracy(F_train[idx], big_train[idx], F_val, big_val)  # the right number for a wrong trunk
        cases += [({"trunk": trunk, "accuracy": honest}, {}), ({"trunk": trunk, "accuracy": 0.5}, {})]
    majority = float(max(big_val.float().mean(), 1 - big_val.float().mean()))
    return cases + [({"trunk": nn.Flatten(), "accuracy": majority}, {}), ({}, {}), (0.5, {}),
                    ({"trunk": None, "accuracy": 0.9}, {})]
