"""The text classifier end to end: a pretrained sentence encoder (all-MiniLM-L6-v2), frozen, with a
new linear head (a logistic regression on cached sentence embeddings), or with its top
transformer layers fine-tuned at a low learning rate on cached lower-layer activations; saved,
loaded and used like the image classifier of :mod:`tl_course.classifier`.

The fine-tuning rule: the head starts from the frozen model's logistic regression (so the top
layers are never pushed by a random head), the layers train at ``layer_lr`` with a linear warm-up
then a linear decay, the epoch is chosen on the validation split, and when no epoch beats the
frozen model on validation the frozen model is kept (``metrics["finetune_kept"]`` says which).

Usage::

    from tl_course.text_classifier import train_text_classifier
    clf = train_text_classifier("sentiment:yelp", mode="frozen", out_dir="runs/yelp")
    clf.predict_texts(["The food was great.", "Never again."])
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import settings
from .data import DatasetSplits, load_dataset
from .models.text import (MAX_LENGTH, TextEncoder, TopLayersClassifier, extract_text_features,
                          load_text_encoder, pad_hidden)
from .probe import fit_logistic_head
from .train import evaluate, fit

MAX_TEXT_CHARS = 10_000
"""Longer texts are refused at prediction (the encoder reads at most 256 tokens anyway)."""


@dataclass
class TextRecipe:
    """Hyper-parameters of the text classifier: which top layers fine-tune (``unfreeze``), their
    learning rate and the head's, epochs (the best on validation is kept), batch size."""

    unfreeze: int = 1
    layer_lr: float = 5e-5
    head_lr: float = 1e-3
    epochs: int = 8
    batch_size: int = 16
    weight_decay: float = 1e-2


class _Frozen(nn.Module):
    """The frozen encoder's sentence embedding followed by a linear head (inputs: embeddings)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.head = nn.Linear(dim, num_classes)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.head(embeddings)


@dataclass
class TrainedTextClassifier:
    """A trained text classifier: the encoder, the trained part (a head on embeddings, or top
    layers + head on the activations entering layer ``from_layer``), classes and metrics."""

    encoder: TextEncoder
    model: nn.Module
    classes: list[str]
    mode: str
    from_layer: int | None = None
    metrics: dict = field(default_factory=dict)
    modality: str = "text"

    @torch.no_grad()
    def predict_texts(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Class probabilities ``(N, C)`` for a list of texts.

        Usage: ``probs = clf.predict_texts(["great food", "awful service"])``
        """
        check_texts(texts)
        self.model.eval()
        if self.from_layer is None:
            return self.model(self.encoder.encode(texts, batch_size=batch_size, progress=False)).softmax(-1)
        states = self.encoder.hidden_states_at(texts, self.from_layer, batch_size=batch_size)
        out = [self.model(*pad_hidden(states[i:i + batch_size])).softmax(-1)
               for i in range(0, len(states), batch_size)]
        return torch.cat(out)


def check_texts(texts) -> None:
    """Refuse, with the reason, what is not a non-empty list of non-empty texts of sensible length.

    Usage: ``check_texts(["a sentence"])``
    """
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts:
        raise ValueError("Give at least one text to classify (a list of strings).")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"Text {i + 1} is empty: every text needs at least one word.")
        if len(t) > MAX_TEXT_CHARS:
            raise ValueError(f"Text {i + 1} has {len(t):,} characters, more than the {MAX_TEXT_CHARS:,} "
                             "accepted (the model reads at most 256 tokens of it anyway).")


def _loss(model: nn.Module, batch, step):
    hidden, mask, y = batch
    out = model(hidden, mask)
    return F.cross_entropy(out, y), {"train_accuracy": (out.argmax(1) == y).float().mean()}


def _loader(states: list[torch.Tensor], labels: torch.Tensor, batch_size: int, shuffle: bool, seed: int):
    items = list(zip(states, labels.tolist()))

    def collate(batch):
        hidden, mask = pad_hidden([h for h, _ in batch])
        return hidden, mask, torch.as_tensor([y for _, y in batch], dtype=torch.long)

    return torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                                       generator=torch.Generator().manual_seed(seed))


def finetune_top_layers(encoder: TextEncoder, data: DatasetSplits, head: nn.Linear, recipe: TextRecipe,
                        seed: int = 0, progress: bool = True, report_test: bool = False
                        ) -> tuple[TopLayersClassifier, dict]:
    """Step 6 on text: a trainable copy of the top ``recipe.unfreeze`` transformer layers with the
    trained ``head``, fine-tuned for ``recipe.epochs`` on the activations entering them (computed
    once). Every epoch's validation accuracy is recorded in the history (and, with
    ``report_test``, the test accuracy: reported only, for choosing an epoch on validation and
    reading the test accuracy of that epoch). Returns the model (last epoch) and the history,
    seconds per epoch and the layer the trained part starts at.

    Usage: ``model, info = finetune_top_layers(enc, data, head, TextRecipe(unfreeze=1))``
    """
    from_layer = encoder.num_layers - recipe.unfreeze
    start = time.perf_counter()
    train_states = encoder.hidden_states_at(data.train.texts, from_layer, progress=progress)
    val_states = encoder.hidden_states_at(data.val.texts, from_layer, progress=progress)
    cache_seconds = time.perf_counter() - start
    settings.seed_everything(seed)
    model = encoder.top_layers(from_layer, len(data.classes))
    model.head.load_state_dict(head.state_dict())  # start from the frozen model's head (LP-FT)
    y_train = torch.as_tensor(data.train.targets, dtype=torch.long)
    y_val = torch.as_tensor(data.val.targets, dtype=torch.long)
    val_loader = _loader(val_states, y_val, 64, shuffle=False, seed=seed)
    loaders = {"val_accuracy": val_loader}
    if report_test:
        test_states = encoder.hidden_states_at(data.test.texts, from_layer)
        loaders["test_accuracy"] = _loader(test_states, torch.as_tensor(data.test.targets, dtype=torch.long),
                                           64, shuffle=False, seed=seed)
    optimizer = torch.optim.AdamW([{"params": model.layers.parameters(), "lr": recipe.layer_lr},
                                   {"params": model.head.parameters(), "lr": recipe.head_lr}],
                                  weight_decay=recipe.weight_decay)
    history = fit(model, _loader(train_states, y_train, recipe.batch_size, shuffle=True, seed=seed),
                  epochs=recipe.epochs, optimizer=optimizer, schedule="warmup", loss=_loss,
                  metrics=lambda m: {k: _accuracy(m, loader) for k, loader in loaders.items()}, select_best=False,
                  seed=seed, progress=progress, desc="fine-tune top layers")
    return model, {"history": history, "activation_cache_seconds": cache_seconds, "from_layer": from_layer,
                   "seconds_per_epoch": history.seconds / max(len(history.rows), 1)}


@torch.no_grad()
def _accuracy(model: nn.Module, loader) -> float:
    was = model.training
    model.eval()
    right = total = 0
    for hidden, mask, y in loader:
        right += int((model(hidden, mask).argmax(1) == y).sum())
        total += len(y)
    model.train(was)
    return right / max(total, 1)


def train_text_classifier(data, mode: str = "frozen", seed: int = 0, out_dir: str | Path | None = None,
                          recipe: TextRecipe | None = None, epochs: int | None = None,
                          progress: bool = True) -> TrainedTextClassifier:
    """Train a text classifier on ``data`` (``sentiment:<domain>`` or loaded text splits) and,
    with ``out_dir``, save ``model.pt`` and ``metrics.json`` there.

    ``frozen``: sentence embeddings of the frozen encoder (cached), a logistic-regression head
    with its regularisation chosen by cross-validation on train. ``finetune``: then the top
    ``recipe.unfreeze`` layers + head fine-tuned (see the module docstring for the rule).

    Usage: ``clf = train_text_classifier("sentiment:yelp", mode="finetune", out_dir="runs/yelp")``
    """
    from .classifier import check_output_dir, save_classifier

    if mode not in ("frozen", "finetune"):
        raise ValueError(f"mode must be 'frozen' or 'finetune', got {mode!r}.")
    recipe = recipe or TextRecipe()
    if epochs is not None:
        if epochs < 1:
            raise ValueError("epochs must be at least 1.")
        recipe = dataclasses.replace(recipe, epochs=epochs)
    if out_dir is not None:
        check_output_dir(out_dir)
    start = time.perf_counter()
    splits = data if isinstance(data, DatasetSplits) else load_dataset(str(data))
    encoder = load_text_encoder()
    X_train, y_train = extract_text_features(encoder, splits.train, progress=progress)
    X_val, y_val = extract_text_features(encoder, splits.val, progress=progress)
    feature_seconds = time.perf_counter() - start
    settings.seed_everything(seed)
    frozen = _Frozen(encoder.dim, len(splits.classes))
    fitted = fit_logistic_head(frozen.head, X_train, y_train, seed=seed)
    frozen_val = evaluate(frozen, (X_val, y_val))["accuracy"]
    model, from_layer, info = frozen, None, {}
    if mode == "finetune":
        tuned, ft = finetune_top_layers(encoder, splits, frozen.head, recipe, seed, progress)
        best = max(ft["history"].rows, key=lambda r: r["val_accuracy"])
        # the chosen epoch is the last one trained when it is the best; otherwise train again to it
        if best["epoch"] != len(ft["history"].rows):
            tuned, ft = finetune_top_layers(encoder, splits, frozen.head,
                                            dataclasses.replace(recipe, epochs=best["epoch"]), seed, False)
        kept = best["val_accuracy"] > frozen_val
        if kept:
            model, from_layer = tuned, ft["from_layer"]
        info = {"finetune_kept": "fine-tuned" if kept else "frozen (fine-tuning did not beat it on validation)",
                "finetune_best_epoch": best["epoch"], "finetune_val_accuracy": best["val_accuracy"],
                "seconds_per_epoch": ft["seconds_per_epoch"],
                "activation_cache_seconds": ft["activation_cache_seconds"]}
    clf = TrainedTextClassifier(encoder, model.eval(), list(splits.classes), mode, from_layer)
    def probabilities(split):
        """The kept model's probabilities; the frozen one reads the cached embeddings (no re-encoding)."""
        if from_layer is not None:
            return clf.predict_texts(list(split.texts))
        with torch.no_grad():
            return model(extract_text_features(encoder, split, progress=progress)[0]).softmax(-1)

    val_probs = probabilities(splits.val)
    metrics = {"modality": "text", "val_accuracy": float((val_probs.argmax(1) == y_val).float().mean()),
               "frozen_val_accuracy": frozen_val, "train_seconds": time.perf_counter() - start,
               "feature_seconds": feature_seconds, "head_C": fitted["C"], "n_train": len(splits.train),
               "n_val": len(splits.val), "classes": splits.classes, "encoder": encoder.name, "mode": mode,
               "seed": seed, "dataset": splits.name, "data_source": splits.source,
               "recipe": dataclasses.asdict(recipe), "max_length": MAX_LENGTH, **info}
    if splits.test is not None:
        from .evaluation import scores

        probs = probabilities(splits.test)
        metrics.update({f"test_{k}": v for k, v in scores(probs.numpy(), splits.test.targets).items()})
        metrics["n_test"] = len(splits.test)
    clf.metrics = metrics
    if out_dir is not None:
        save_classifier(clf, out_dir)
    return clf


def text_payload(clf: TrainedTextClassifier) -> dict:
    """What ``model.pt`` holds for a text classifier (plain tensors and metadata).

    Usage: ``torch.save(text_payload(clf), path)``
    """
    return {"modality": "text", "encoder": clf.encoder.name, "encoder_sha256": clf.encoder.weights_sha256,
            "from_layer": clf.from_layer, "classes": list(clf.classes), "mode": clf.mode,
            "state_dict": {k: v.detach().cpu() for k, v in clf.model.state_dict().items()}}


def text_classifier_from(payload: dict, path: Path, metrics: dict) -> TrainedTextClassifier:
    """Rebuild a saved text classifier (the payload already passed the common checks).

    Usage: ``clf = text_classifier_from(payload, path, metrics)``
    """
    from .models.backbones import CheckpointMismatch

    encoder = load_text_encoder(payload.get("encoder", ""))
    if payload.get("encoder_sha256") != encoder.weights_sha256:
        raise CheckpointMismatch(f"{path} was trained with other weights of {encoder.name} than the installed "
                                 "ones; train it again with `tl-course train`.")
    layer = payload.get("from_layer")
    if layer is not None and (not isinstance(layer, int) or isinstance(layer, bool)
                              or not 0 <= layer < encoder.num_layers):
        raise CheckpointMismatch(f"{path}: 'from_layer' must be a layer index of {encoder.name}, got {layer!r}.")
    n = len(payload["classes"])
    model = _Frozen(encoder.dim, n) if layer is None else encoder.top_layers(layer, n)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointMismatch(f"{path}: weights do not fit a {n}-class text classifier "
                                 f"({str(exc).splitlines()[0]}).") from None
    return TrainedTextClassifier(encoder, model.eval(), list(payload["classes"]), str(payload.get("mode", "?")),
                                 layer, metrics)


def read_texts(path: str | Path) -> list[str]:
    """The texts of a UTF-8 file, one per non-empty line (blank lines are skipped); refuses a file
    that is not UTF-8 text or holds no text.

    Usage: ``texts = read_texts("reviews.txt")``
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Text file not found: {path}.")
    try:
        content = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text (an image, or another encoding?): save it as UTF-8 "
                         "with one text per line.") from None
    texts = [line.strip() for line in content.split("\n") if line.strip()]
    if not texts:
        raise ValueError(f"{path} holds no text: write one text per line.")
    return texts
