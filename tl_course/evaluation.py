"""Evaluating a classifier honestly: confusion matrix and per-class metrics, the most confident
mistakes, calibration (reliability curve, expected calibration error) and Grad-CAM heatmaps.

Usage::

    from tl_course import evaluation
    probs, y = evaluation.predict_dataset(clf, data.val)
    print(evaluation.classification_report(probs, y, data.classes))
    heat = evaluation.grad_cam(clf.model, x, target_layer=clf.model.backbone.head_conv)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .train import predict_proba


def predict_dataset(clf, dataset, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities ``(N, C)`` and labels ``(N,)`` of a trained classifier on a dataset.

    Usage: ``probs, y = predict_dataset(clf, data.val)``
    """
    probs, y = predict_proba(clf.model, clf.backbone.preprocessed(dataset), batch_size)
    return probs.numpy(), y.numpy()


def classification_report(probs: np.ndarray, y: np.ndarray, classes: list[str]) -> str:
    """Precision, recall and F1 per class (scikit-learn's report) for argmax predictions.

    Usage: ``print(classification_report(probs, y, data.classes))``
    """
    from sklearn.metrics import classification_report as report

    return report(y, probs.argmax(1), labels=list(range(len(classes))), target_names=classes,
                  digits=3, zero_division=0)


def scores(probs: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, balanced accuracy (the mean of per-class recalls: 0.5 for always guessing the
    majority of two classes, however imbalanced) and ROC AUC (binary: of the positive class'
    probability; more classes: one-vs-rest, macro-averaged; NaN when a class is absent).

    Usage: ``scores(probs, y)  # {'accuracy': 0.9, 'balanced_accuracy': 0.88, 'auc': 0.95}``
    """
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    probs, y = np.asarray(probs), np.asarray(y)
    pred = probs.argmax(1)
    try:
        auc = (roc_auc_score(y, probs[:, 1]) if probs.shape[1] == 2
               else roc_auc_score(y, probs, multi_class="ovr", labels=list(range(probs.shape[1]))))
    except ValueError:  # a class missing from y
        auc = float("nan")
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "auc": float(auc)}


def confident_mistakes(probs: np.ndarray, y: np.ndarray, k: int = 8) -> list[int]:
    """Indices of the ``k`` wrong predictions made with the highest confidence.

    Usage: ``for i in confident_mistakes(probs, y): ...``
    """
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    return wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:k].tolist()


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> dict:
    """Calibration: per confidence bin, the mean confidence and the accuracy, plus the expected
    calibration error (ECE: bin-size-weighted mean gap between the two).

    Usage: ``rel = reliability(probs, y); rel["ece"]``
    """
    conf = probs.max(1)
    correct = (probs.argmax(1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            rows.append({"bin": b, "low": edges[b], "high": edges[b + 1], "count": int(m.sum()),
                         "confidence": float(conf[m].mean()), "accuracy": float(correct[m].mean())})
            ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return {"bins": rows, "ece": float(ece)}


def grad_cam(model: nn.Module, x: torch.Tensor, target_layer: nn.Module,
             class_index: int | None = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., 2017) for one preprocessed image ``x`` (C, H, W): the target
    layer's feature maps weighted by the mean gradient of the class score, ReLU, upsampled to the
    image size and scaled to [0, 1]. ``class_index`` defaults to the predicted class.

    Usage: ``heat = grad_cam(clf.model, clf.backbone.transform(img), clf.model.backbone.head_conv)``
    """
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        output.retain_grad()
        store["maps"] = output

    handle = target_layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            inp = x.unsqueeze(0).clone().requires_grad_(True)  # gradients flow even if all is frozen
            scores = model(inp)
            cls = int(scores.argmax(1)) if class_index is None else class_index
            model.zero_grad(set_to_none=True)
            scores[0, cls].backward()
    finally:
        handle.remove()
        model.train(was_training)
    maps, grads = store["maps"].detach()[0], store["maps"].grad[0]
    cam = torch.relu((grads.mean(dim=(1, 2), keepdim=True) * maps).sum(0))
    cam = nn.functional.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    return (cam / cam.max()).numpy() if float(cam.max()) > 0 else cam.numpy()


def denormalize(x: torch.Tensor, mean, std) -> np.ndarray:
    """Undo ``Normalize``: a (C, H, W) tensor back to an (H, W, C) image in [0, 1], for display.

    Usage: ``plt.imshow(denormalize(x, prep.mean, prep.std))``
    """
    img = x.detach().cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return img.clamp(0, 1).permute(1, 2, 0).numpy()
