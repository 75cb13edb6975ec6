"""Exercises of notebook 02 (inductive transfer: reuse, multi-task, self-taught learning)."""
from .. import asserts
from ..exercises import checker
from ...probe import few_shot_accuracy, probe_accuracy
from ...data import image_tensors, split_indices
from ...train import predict

IMAGE_SIZE = 16



def _digits_16():
    """The notebook's data: 16x16 grayscale digits, and the pool A / pool B split."""
    from ...data import load_dataset

    data = load_dataset("digits")
    X_train, y_train = image_tensors(data.train, grayscale=True, size=IMAGE_SIZE)
    X_val, y_val = image_tensors(data.val, grayscale=True, size=IMAGE_SIZE)
    pool_a, pool_b = split_indices(y_train, 0.3, seed=0)
    return X_train, y_train, X_val, y_val, pool_a, pool_b


@checker("02.pca_self_taught")
def _pca_self_taught(answer):
    from sklearn.decomposition import PCA

    value = asserts.accuracy_value(answer)
    X_train, y_train, X_val, y_val, pool_a, pool_b = _digits_16()
    pca = PCA(n_components=32, random_state=0).fit(X_train[pool_a].flatten(1).numpy())
    P_train, P_val = pca.transform(X_train.flatten(1).numpy()), pca.transform(X_val.flatten(1).numpy())
    expected = few_shot_accuracy(P_train, y_train, P_val, y_val, per_class=5, seed=0, pool=pool_b)
    asserts.close(value, expected, 0.01, (
        f"{value:.3f} is not what PCA-32 gives here; fit the PCA on pool A only, with 32 components "
        "and random_state=0, and draw 5 examples per digit from pool B with seed 0."))


@checker("02.reuse_new_labelling")
def _reuse_new_labelling(answer):
    from torch import nn

    from ...data import few_shot_indices

    assert isinstance(answer, dict) and {"trunk", "accuracy"} <= set(answer), \
        'expected a dict with the keys "trunk" and "accuracy".'
    trunk, value = answer["trunk"], asserts.accuracy_value(answer["accuracy"])
    assert isinstance(trunk, nn.Module), "answer['trunk'] should be the trunk module (digit_model.features)."
    X_train, y_train, X_val, y_val, pool_a, pool_b = _digits_16()
    big_train, big_val = (y_train >= 5).long(), (y_val >= 5).long()
    idx = pool_b[few_shot_indices(big_train[pool_b], 5, seed=0)]
    F_train, F_val = predict(trunk, X_train), predict(trunk, X_val)
    expected = probe_accuracy(F_train[idx], big_train[idx], F_val, big_val)
    assert abs(value - expected) < 0.01, (
        f"{value:.3f} is not what a linear probe on this trunk's features gives ({expected:.3f}); "
        "check the labels (digit >= 5), the 5 examples per class from pool B with seed 0, and that "
        "you used the trunk's features rather than pixels.")
