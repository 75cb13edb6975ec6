"""The flagship, end to end: train an image classifier by transfer learning, save it with its
metadata, load it back, and predict on new images. The notebooks 07-09 and ``tl-course train`` /
``tl-course predict`` use these functions.

Two modes:

- ``frozen``: steps 1-5. The backbone runs once per image (cached features) and only a new head
  is trained: seconds on a CPU.
- ``finetune``: step 6 on top. The head is first trained on cached features, then the top
  ``unfreeze`` stages of the backbone are trained together with it at a 10x lower learning rate,
  on augmented images.

Validation images are used for reporting only: the recipes use fixed epochs, nothing is selected
on the validation split. A test split, when the dataset has one, is evaluated once at the end.

Usage::

    from tl_course.classifier import train_classifier, load_classifier, predict_paths
    clf = train_classifier("hymenoptera", mode="frozen", out_dir="runs/ants")
    clf.metrics["val_accuracy"]
    for path, label, prob in predict_paths(load_classifier("runs/ants"), ["my_photo.jpg"]): ...
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import cache, settings
from .data import DatasetSplits, load_dataset
from .data.images import ImageError, is_image_file, load_image, visible_files
from .features import extract_activations, extract_features
from .models import transfer
from .models.backbones import BACKBONES, Backbone, CheckpointMismatch, Preprocessing, backbone_from, load_backbone
from .probe import fit_logistic_head
from .train import evaluate, fit, predict_proba

FORMAT = "tl_course.classifier/1"
FROZEN_EPOCHS, FINETUNE_EPOCHS = 40, 3


@dataclass
class Recipe:
    """Hyper-parameters of the two training modes. The ``linear`` head is a logistic regression
    (regularisation chosen by cross-validation on the training split); ``head_epochs``/``head_lr``
    apply to the ``mlp`` head."""

    head: str = "linear"
    head_epochs: int = FROZEN_EPOCHS
    head_lr: float = 1e-3
    head_weight_decay: float = 1e-4
    finetune_epochs: int = FINETUNE_EPOCHS
    unfreeze: int = 1
    finetune_head_lr: float = 1e-4
    backbone_lr: float = 1e-4
    batch_size: int = 32
    augment: bool = True
    bn_stats: str = "frozen"
    views: int = 2


@dataclass
class TrainedClassifier:
    """A trained model with everything needed to use it again: classes, backbone, preprocessing."""

    model: transfer.TransferModel
    backbone: Backbone
    classes: list[str]
    mode: str
    metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    modality: str = "image"

    @torch.no_grad()
    def predict_images(self, images) -> torch.Tensor:
        """Class probabilities ``(N, C)`` for a list of PIL images.

        Usage: ``probs = clf.predict_images([load_image("x.jpg")])``
        """
        device = next(self.model.parameters()).device
        self.model.eval()
        x = torch.stack([self.backbone.transform(img) for img in images]).to(device)
        return self.model(x).softmax(-1).cpu()


def _resolve_data(data) -> DatasetSplits:
    return data if isinstance(data, DatasetSplits) else load_dataset(str(data))


def train_head(backbone: Backbone, data: DatasetSplits, recipe: Recipe, seed: int = 0,
               progress: bool = True) -> tuple[transfer.TransferModel, dict]:
    """Steps 1-5: frozen backbone, cached features, a new head trained for fixed epochs.

    Usage: ``model, info = train_head(load_backbone(), load_dataset("hymenoptera"), Recipe())``
    """
    start = time.perf_counter()
    X_train, y_train = extract_features(backbone, data.train, progress=progress)
    X_val, y_val = extract_features(backbone, data.val, progress=progress)
    feature_seconds = time.perf_counter() - start
    settings.seed_everything(seed)
    model = transfer.TransferModel(backbone, len(data.classes), head=recipe.head)
    transfer.freeze_backbone(backbone)
    if recipe.head == "linear":  # logistic regression, regularisation chosen by CV on train
        fitted = fit_logistic_head(model.head, X_train, y_train, seed=seed)
        info = {"head_seconds": fitted["seconds"], "head_C": fitted["C"], "head_history": []}
    else:
        history = fit(model.head, (X_train, y_train), None, epochs=recipe.head_epochs,
                      lr=recipe.head_lr, weight_decay=recipe.head_weight_decay,
                      batch_size=recipe.batch_size, seed=seed, progress=progress, desc="train head")
        info = {"head_seconds": history.seconds, "head_history": history.rows}
    val = evaluate(model.head, (X_val, y_val))
    return model, {"feature_seconds": feature_seconds, "head_val_accuracy": val["accuracy"],
                   "head_val_loss": val["loss"], **info}


def finetune(model: transfer.TransferModel, backbone: Backbone, data: DatasetSplits, recipe: Recipe,
             seed: int = 0, progress: bool = True, cache_stage: int | None = None) -> dict:
    """Step 6: unfreeze the top ``recipe.unfreeze`` stages and train them with the head at low
    learning rates on augmented images. BatchNorm statistics stay frozen (``recipe.bn_stats``).

    While a bottom part of the backbone stays frozen, its output is computed once per augmented
    view (``recipe.views`` random crops/flips of every training image, cached on disk) and only
    the top runs each epoch; one epoch is one pass over all views. ``cache_stage`` (default: the
    first unfrozen stage) may be lower, to share one cache between several values of
    ``unfreeze``. With everything unfrozen, images go through the whole network every epoch.

    Usage: ``info = finetune(model, backbone, data, Recipe(unfreeze=2))``
    """
    n_stages = len(backbone.stages)
    transfer.unfreeze_top(backbone, recipe.unfreeze)
    model.bn_stats = recipe.bn_stats
    first_trainable = n_stages - recipe.unfreeze
    stage = first_trainable if cache_stage is None else min(cache_stage, first_trainable)
    start = time.perf_counter()
    if stage > 0 and recipe.unfreeze < n_stages:
        train_tf = backbone.train_transform if recipe.augment else backbone.transform
        acts, y_train = extract_activations(backbone, data.train, stage, transform=train_tf,
                                            views=recipe.views if recipe.augment else 1,
                                            seed=seed, progress=progress)
        train = (acts.flatten(0, 1), y_train.repeat(acts.shape[0]))
        trainee = transfer.TransferModel(backbone.model[stage:], len(data.classes), head=model.head,
                                         bn_stats=recipe.bn_stats)
    else:
        train_tf = backbone.train_transform if recipe.augment else backbone.transform
        train, trainee = data.train.with_transform(train_tf), model
    cache_seconds = time.perf_counter() - start
    optimizer = torch.optim.AdamW(transfer.param_groups(model, recipe.finetune_head_lr, recipe.backbone_lr),
                                  weight_decay=1e-4)
    history = fit(trainee, train, None, epochs=recipe.finetune_epochs, optimizer=optimizer,
                  batch_size=recipe.batch_size, seed=seed, progress=progress, desc="fine-tune",
                  select_best=False)
    trainable, total = transfer.count_parameters(model)
    return {"finetune_seconds": history.seconds + cache_seconds, "activation_cache_seconds": cache_seconds,
            "seconds_per_epoch": history.seconds / max(len(history.rows), 1),
            "finetune_history": history.rows, "trainable_parameters": trainable, "total_parameters": total}


HOLDOUT_FRACTION = 0.2
"""The share of the training split held out to decide whether fine-tuning helps."""


def finetune_helps(splits: DatasetSplits, backbone: str, image_size: int | None, recipe: Recipe,
                   seed: int = 0, progress: bool = True) -> tuple[bool, dict]:
    """The fine-tuning rule of :func:`train_classifier`: hold out ``HOLDOUT_FRACTION`` of the
    training split (stratified, seeded), train the frozen head and the fine-tuned model on the
    rest, and fine-tune only if it is more accurate on the holdout. The validation and test
    splits are never looked at. Returns the decision and both holdout accuracies.

    Usage: ``helps, info = finetune_helps(load_dataset("hymenoptera"), "efficientnet_lite0", None, Recipe())``
    """
    from .data import split_indices

    rest, held = split_indices(splits.train.targets, HOLDOUT_FRACTION, seed=seed)
    inner = dataclasses.replace(splits, train=splits.train.subset(rest), val=splits.train.subset(held), test=None)
    bb = load_backbone(backbone, image_size=image_size)
    model, info = train_head(bb, inner, recipe, seed, progress)
    frozen_acc = info["head_val_accuracy"]
    finetune(model, bb, inner, recipe, seed, progress)
    tuned_acc = evaluate(model, bb.preprocessed(inner.val), batch_size=64)["accuracy"]
    return tuned_acc > frozen_acc, {"holdout_frozen_accuracy": frozen_acc, "holdout_finetune_accuracy": tuned_acc,
                                    "n_holdout": len(held)}


def train_classifier(data, backbone: str = "efficientnet_lite0", mode: str = "frozen",
                     epochs: int | None = None, seed: int = 0, out_dir: str | Path | None = None,
                     image_size: int | None = None, recipe: Recipe | None = None,
                     progress: bool = True) -> TrainedClassifier:
    """Train a classifier on ``data`` (a registry name, ``folder:<path>`` or loaded splits) and,
    with ``out_dir``, save ``model.pt`` and ``metrics.json`` there.

    ``epochs`` overrides the head epochs (frozen) or the fine-tuning epochs (finetune). With
    ``finetune``, the top stages are fine-tuned only when that beats the frozen head on a holdout
    of the training split (:func:`finetune_helps`); otherwise the frozen model is kept, and
    ``metrics["finetune_kept"]`` says which was kept.

    Usage: ``clf = train_classifier("folder:~/photos", mode="finetune", out_dir="runs/mine")``
    """
    if mode not in ("frozen", "finetune"):
        raise ValueError(f"mode must be 'frozen' or 'finetune', got {mode!r}.")
    if image_size is not None and not 16 <= image_size <= MAX_IMAGE_SIZE:
        raise ValueError(f"image size must be between 16 and {MAX_IMAGE_SIZE} pixels, got {image_size} "
                         "(leave it out for the backbone's own size).")
    recipe = recipe or Recipe()
    if epochs is not None:
        if epochs < 1:
            raise ValueError("epochs must be at least 1.")
        field_name = "head_epochs" if mode == "frozen" else "finetune_epochs"
        recipe = dataclasses.replace(recipe, **{field_name: epochs})  # the caller's recipe is left alone
    settings.device()  # a bad TL_COURSE_DEVICE fails now, not after the data is loaded
    if out_dir is not None:
        check_output_dir(out_dir)  # before training: a bad --out fails now, not after the run
    start = time.perf_counter()
    splits = _resolve_data(data)
    if hasattr(splits.train, "texts"):  # a text dataset: the text classifier
        from .text_classifier import train_text_classifier

        if image_size is not None:
            raise ValueError("--image-size applies to images; this dataset holds texts.")
        return train_text_classifier(splits, mode=mode, seed=seed, out_dir=out_dir, epochs=epochs,
                                     progress=progress)
    kept = None
    if mode == "finetune":  # the rule: fine-tune only if it beats the frozen head on a holdout of train
        kept, holdout = finetune_helps(splits, backbone, image_size, recipe, seed, progress)
    bb = load_backbone(backbone, image_size=image_size)
    model, info = train_head(bb, splits, recipe, seed, progress)
    if kept:
        info.update(finetune(model, bb, splits, recipe, seed, progress))
    if mode == "finetune":
        info.update(holdout, finetune_kept="fine-tuned" if kept else
                    "frozen (fine-tuning did not beat it on a holdout of the training split)")
    train_seconds = time.perf_counter() - start
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise ValueError("Training diverged: the model's weights became NaN or infinite. Lower the "
                         "learning rate (or use --mode frozen); nothing was saved.")
    if not kept:  # the backbone is unchanged: the head's evaluation on cached features is exact
        val = {"accuracy": info["head_val_accuracy"], "loss": info["head_val_loss"]}
    else:
        val = evaluate(model, bb.preprocessed(splits.val), batch_size=64)
    trainable, total = transfer.count_parameters(model)
    metrics = {"val_accuracy": val["accuracy"], "val_loss": val["loss"],
               "train_seconds": train_seconds, "n_train": len(splits.train), "n_val": len(splits.val),
               "classes": splits.classes, "backbone": backbone, "mode": mode, "seed": seed,
               "image_size": image_size or bb.preprocessing.crop, "dataset": splits.name,
               "data_source": splits.source, "device": settings.device(),
               "trainable_parameters": trainable, "total_parameters": total,
               "n_skipped": len(splits.skipped),
               "n_skipped_not_image": sum(s.get("kind") == "not an image" for s in splits.skipped),
               "n_skipped_unreadable": sum(s.get("kind") == "unreadable" for s in splits.skipped),
               "skipped": splits.skipped,
               "recipe": recipe.__dict__.copy(),
               **{k: v for k, v in info.items() if not k.endswith("history")}}
    if splits.test is not None:  # evaluated once, after every choice was made
        from .evaluation import scores

        probs, y = predict_proba(model, bb.preprocessed(splits.test), batch_size=64)
        metrics.update({f"test_{k}": v for k, v in scores(probs.numpy(), y.numpy()).items()})
        metrics["n_test"] = len(splits.test)
    clf = TrainedClassifier(model, bb, splits.classes, mode, metrics,
                            info.get("finetune_history", info.get("head_history", [])))
    if out_dir is not None:
        save_classifier(clf, out_dir)
    return clf


def save_classifier(clf: TrainedClassifier, out_dir: str | Path) -> Path:
    """Write ``model.pt`` (weights + metadata, loadable with ``weights_only=True``) and
    ``metrics.json`` into ``out_dir``, each atomically.

    Usage: ``save_classifier(clf, "runs/ants")``
    """
    out = check_output_dir(out_dir)
    if getattr(clf, "modality", "image") == "text":
        from .text_classifier import text_payload

        payload = {"format": FORMAT, **text_payload(clf)}
        cache.write_atomically(out / "model.pt", lambda tmp: torch.save(payload, tmp))
        cache.write_json(out / "metrics.json", clf.metrics)
        return out / "model.pt"
    bb = clf.backbone
    payload = {"format": FORMAT, "modality": "image", "state_dict": {k: v.detach().cpu() for k, v in clf.model.state_dict().items()},
               "classes": list(clf.classes), "backbone": bb.name, "image_size": bb.image_size,
               "head": clf.metrics.get("recipe", {}).get("head", "linear"), "mode": clf.mode,
               "preprocessing": dataclasses.asdict(bb.preprocessing)}
    cache.write_atomically(out / "model.pt", lambda tmp: torch.save(payload, tmp))
    cache.write_json(out / "metrics.json", clf.metrics)
    return out / "model.pt"


def check_output_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a folder that exists (created if needed) and can be written to; raises
    ``ValueError`` saying why not. Called before training, so a bad ``--out`` fails in a second,
    not after the whole run.

    Usage: ``out = check_output_dir("runs/ants")``
    """
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder: choose a folder for model.pt and metrics.json.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".tl-course-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"Cannot write into {out_dir} ({exc.strerror or exc}): choose a folder you can write to.") from None
    return out


MAX_IMAGE_SIZE = 1024
"""The largest input size a saved classifier may ask for (a bound on memory, not a model fact)."""


def _check_payload(payload, path: Path) -> None:
    """Refuse, with the reason, a ``model.pt`` whose metadata is not what :func:`save_classifier` writes."""
    def bad(what: str):
        raise CheckpointMismatch(f"{path} is not a valid tl-course classifier: {what}. Train a new one "
                                 "with `tl-course train`.")

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointMismatch(f"{path} is not a tl-course classifier (expected format {FORMAT!r}); "
                                 "it comes from elsewhere and was not used. Train one with `tl-course train`.")
    modality = payload.get("modality", "image")
    if modality not in ("image", "text"):
        bad(f"unknown modality {modality!r}")
    needed = ("state_dict", "classes") + (("backbone", "preprocessing") if modality == "image" else ("encoder",))
    for key in needed:
        if key not in payload:
            bad(f"the entry {key!r} is missing")
    if modality == "image" and (not isinstance(payload["backbone"], str) or payload["backbone"] not in BACKBONES):
        bad(f"unknown backbone {payload['backbone']!r} (known: {', '.join(BACKBONES)})")
    classes = payload["classes"]
    if (not isinstance(classes, list) or len(classes) < 2 or len(set(classes)) != len(classes)
            or not all(isinstance(c, str) and c and c.isprintable() for c in classes)):
        bad("'classes' must be a list of at least two distinct, non-empty, printable names")
    size = payload.get("image_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= MAX_IMAGE_SIZE):
        bad(f"'image_size' must be a whole number of pixels between 16 and {MAX_IMAGE_SIZE}, got {size!r}")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        bad("'state_dict' must map parameter names to tensors")
    if not all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()):
        bad("its weights contain NaN or infinite values")
    if modality == "text":
        return
    prep = payload["preprocessing"]
    fields = {f.name for f in dataclasses.fields(Preprocessing)}
    if not isinstance(prep, dict) or set(prep) != fields:
        bad(f"'preprocessing' must have exactly the entries {sorted(fields)}")
    if payload.get("head", "linear") not in ("linear", "mlp"):
        bad(f"unknown head {payload.get('head')!r}")


def load_classifier(model_dir: str | Path) -> TrainedClassifier:
    """Load a folder written by :func:`save_classifier` (``weights_only=True``), checking that it
    really is one; raises ``FileNotFoundError`` or :class:`CheckpointMismatch` with the reason.
    The model uses the preprocessing it was saved with (not today's registry entry), and the
    architecture is built without downloading any pretrained weights (the saved weights replace
    them all). ``metrics.json`` is read when it is valid JSON, and otherwise ignored.

    Usage: ``clf = load_classifier("runs/ants")``
    """
    path = Path(model_dir) / "model.pt"
    if not Path(model_dir).is_dir():
        raise FileNotFoundError(f"Model folder not found: {model_dir}. Train one with "
                                "`tl-course train DATA --out DIR` first.")
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} has no model.pt: it is not a folder written by "
                                "`tl-course train`.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = "it is empty" if path.stat().st_size == 0 else f"{type(exc).__name__}"
        raise CheckpointMismatch(f"{path} is not a tl-course model ({reason}); it holds something other than "
                                 "plain tensors and metadata, so it was NOT unpickled and nothing in it ran. "
                                 "Train one with `tl-course train`.") from None
    _check_payload(payload, path)
    metrics_path = Path(model_dir) / "metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    except (ValueError, OSError):
        metrics = {}
    metrics = metrics if isinstance(metrics, dict) else {}
    if payload.get("modality") == "text":
        from .text_classifier import text_classifier_from

        return text_classifier_from(payload, path, metrics)
    prep = Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload["preprocessing"].items()})
    arch = BACKBONES[payload["backbone"]].classifier(False)
    bb = backbone_from(payload["backbone"], arch, image_size=payload.get("image_size"), preprocessing=prep)
    model = transfer.TransferModel(bb, len(payload["classes"]), head=payload.get("head", "linear"))
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointMismatch(f"{path}: weights do not fit {payload['backbone']} with a "
                                 f"{len(payload['classes'])}-class head ({str(exc).splitlines()[0]}).") from None
    # the loaded weights (fine-tuned or not) name the backbone in feature-cache keys, never the pretrained file's id
    bb = dataclasses.replace(bb, weights=f"trained classifier {path}",
                             weights_sha256=cache.checksum(dict(bb.model.state_dict())))
    model.backbone = bb.model
    return TrainedClassifier(model.eval(), bb, list(payload["classes"]), str(payload.get("mode", "?")), metrics)


def expand_image_paths(paths) -> list[Path]:
    """Image files named in ``paths``, folders expanded recursively (sorted; hidden files and
    non-image files inside folders skipped, as in training).

    Usage: ``expand_image_paths(["photos/", "x.jpg"])``
    """
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [q for q in visible_files(p) if is_image_file(q)]
        else:
            out.append(p)
    return out


def predict_paths(clf: TrainedClassifier, paths, errors: list | None = None, batch_size: int = 32):
    """Yield ``(path, label, probability)`` for every image in ``paths`` (files or folders).
    Unreadable images are skipped and their messages appended to ``errors`` (or raised as
    :class:`ImageError` when ``errors`` is None).

    Usage: ``for path, label, p in predict_paths(clf, ["photos/"]): print(path, label, p)``
    """
    files = expand_image_paths(paths)
    if not files:
        raise ImageError(f"No image files found in {', '.join(map(str, paths))}.")
    batch: list[tuple[Path, object]] = []

    def flush():
        probs = clf.predict_images([img for _, img in batch])
        for (path, _), row in zip(batch, probs):
            i = int(row.argmax())
            yield path, clf.classes[i], float(row[i])
        batch.clear()

    for path in files:
        try:
            batch.append((path, load_image(path, min_side=clf.backbone.resize_size)))
        except ImageError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
            continue
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()
