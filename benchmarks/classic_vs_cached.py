"""Benchmark: the classic PyTorch transfer-learning tutorial recipe vs this course's recipes.

Same machine, same process, same backbone, same data. The classic recipe (the PyTorch "Transfer
Learning for Computer Vision" tutorial) fine-tunes the whole network, running the backbone on
every image every epoch: SGD lr 0.001 momentum 0.9, StepLR(step 7, gamma 0.1), batch 4, 25
epochs, validation after each epoch and the best epoch's weights kept (as the tutorial does).
Ours: frozen backbone + logistic-regression head on cached features (cold cache), and fine-tuning
of the top 2 stages on cached activations of the frozen bottom.

When the data set has an official test split (``medmnist:pneumoniamnist``), every recipe is also
scored once on it (accuracy, balanced accuracy, AUC), after its choices were made on validation.

Usage::

    .venv/bin/python benchmarks/classic_vs_cached.py                       # full, ~30 min on 2 cores
    .venv/bin/python benchmarks/classic_vs_cached.py --classic-epochs 5    # shorter
    .venv/bin/python benchmarks/classic_vs_cached.py --data medmnist:pneumoniamnist --image-size 64 --classic-epochs 5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def test_scores(model, backbone, data) -> dict:
    """Accuracy, balanced accuracy and AUC on the official test split (empty without one)."""
    if data.test is None:
        return {}
    from tl_course.evaluation import scores
    from tl_course.train import predict_proba

    probs, y = predict_proba(model, backbone.preprocessed(data.test), batch_size=64)
    return {f"test_{k}": v for k, v in scores(probs.numpy(), y.numpy()).items()}


def classic_recipe(data, backbone_name: str, epochs: int, seed: int, image_size: int | None) -> dict:
    from tl_course.models import transfer
    from tl_course.models.backbones import load_backbone
    from tl_course.train import fit

    bb = load_backbone(backbone_name, image_size=image_size)
    model = transfer.TransferModel(bb, len(data.classes), head="linear", bn_stats="train")
    transfer.unfreeze(bb.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    # the tutorial's StepLR(step_size=7 epochs, gamma=0.1), as a per-step factor of training progress
    step_factor = lambda p: 0.1 ** int(p * epochs // 7)  # noqa: E731
    history = fit(model, data.train.with_transform(bb.train_transform), data.val.with_transform(bb.transform),
                  epochs=epochs, optimizer=optimizer, schedule=step_factor, batch_size=4, seed=seed,
                  desc="classic recipe", select_best=True)
    elapsed, curve = 0.0, []
    for row in history.rows:
        elapsed += row["seconds"]
        curve.append((elapsed, row["val_accuracy"]))
    return {"val_accuracy": history.best["val_accuracy"], "seconds": elapsed, "curve": curve,
            "epochs": len(history.rows), "seconds_per_epoch": elapsed / max(len(history.rows), 1),
            **test_scores(model, bb, data)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="hymenoptera")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--classic-epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=None, help="input size (default: the backbone's)")
    parser.add_argument("--out", default="build/benchmark.json")
    args = parser.parse_args()

    from tl_course.classifier import train_classifier
    from tl_course.data import load_dataset

    data = load_dataset(args.data)
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
                          f"{torch.get_num_threads()} threads, CUDA {torch.cuda.is_available()}",
               "data": data.source, "backbone": args.backbone}
    with tempfile.TemporaryDirectory() as cold:  # a cold feature cache: nothing precomputed
        os.environ["TL_COURSE_DATA"] = cold
        for mode in ("frozen", "finetune"):
            start = time.perf_counter()
            clf = train_classifier(data, backbone=args.backbone, mode=mode, seed=args.seed, progress=False,
                                   image_size=args.image_size)
            results[f"ours_{mode}"] = {"val_accuracy": clf.metrics["val_accuracy"],
                                       "seconds": time.perf_counter() - start,
                                       **{k: v for k, v in clf.metrics.items() if k.startswith("test_")}}
            print(f"ours {mode}: {results[f'ours_{mode}']}", flush=True)
    results["classic"] = classic_recipe(data, args.backbone, args.classic_epochs, args.seed, args.image_size)
    target = results["ours_frozen"]["val_accuracy"]
    reach = next((t for t, acc in results["classic"]["curve"] if acc >= target), None)
    results["classic_seconds_to_our_frozen_accuracy"] = reach
    results["time_to_accuracy_ratio"] = (reach / results["ours_frozen"]["seconds"]) if reach else None

    print(f"\nmachine: {results['machine']}; data: {results['data']}; backbone: {args.backbone}\n")
    test = "test_accuracy" in results["classic"]
    print("| recipe | val accuracy |" + (" test accuracy | test balanced | test AUC |" if test else "")
          + " wall-clock seconds |")
    print("|---|---|" + ("---|---|---|" if test else "") + "---|")

    def cells(r):
        return "".join(f" {r[k]:.3f} |" for k in ("test_accuracy", "test_balanced_accuracy", "test_auc")) if test else ""

    c = results["classic"]
    print(f"| classic tutorial recipe ({c['epochs']} epochs, whole network, batch 4) | {c['val_accuracy']:.3f} |"
          f"{cells(c)} {c['seconds']:.0f} ({c['seconds_per_epoch']:.0f} per epoch) |")
    for mode in ("frozen", "finetune"):
        r = results[f"ours_{mode}"]
        print(f"| ours, {mode} (cold cache) | {r['val_accuracy']:.3f} |{cells(r)} {r['seconds']:.0f} |")
    if reach:
        print(f"\nthe classic recipe first reached our frozen accuracy ({target:.3f}) after {reach:.0f} s: "
              f"{results['time_to_accuracy_ratio']:.1f}x the time of ours")
    else:
        print(f"\nthe classic recipe never reached our frozen accuracy ({target:.3f}) in {c['epochs']} epochs "
              f"({c['seconds']:.0f} s, {c['seconds'] / results['ours_frozen']['seconds']:.1f}x our frozen run's time)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
