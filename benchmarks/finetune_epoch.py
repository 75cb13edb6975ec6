"""One epoch of top-stage fine-tuning on ants vs bees, as `tl-course train hymenoptera --mode
finetune` runs it: the frozen bottom of Lite0 has already turned `views` augmented copies of each
of the 245 training images into feature maps (cached on disk), so an epoch runs only the unfrozen
top stage and the head over those maps.

Prints the seconds of making the activation cache (cold: an empty feature cache; warm: read
back) and of every epoch, in one process, with `--threads` threads.

Usage::

    TL_COURSE_MIRROR=../shared/data .venv/bin/python benchmarks/finetune_epoch.py --threads 2 --epochs 3
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--unfreeze", type=int, default=1, help="top stages trained (the CLI's default: 1)")
    parser.add_argument("--views", type=int, default=2, help="augmented views per image (the CLI's default: 2)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ["TL_COURSE_DATA"] = tempfile.mkdtemp(prefix="tl-course-bench-")  # a cold cache

    import torch

    from tl_course.classifier import Recipe, finetune, train_head
    from tl_course.data import load_dataset
    from tl_course.models.backbones import load_backbone

    torch.set_num_threads(args.threads)
    data = load_dataset("hymenoptera")
    recipe = Recipe(unfreeze=args.unfreeze, views=args.views, finetune_epochs=args.epochs)
    out = {"threads": args.threads, "unfreeze": args.unfreeze, "views": args.views, "n_train": len(data.train),
           "torch": torch.__version__, "load_before": os.getloadavg()[0]}
    for run in ("cold", "warm"):
        backbone = load_backbone("efficientnet_lite0")
        model, _ = train_head(backbone, data, recipe, progress=False)
        info = finetune(model, backbone, data, recipe, progress=False)
        out[run] = {"activation_cache_seconds": info["activation_cache_seconds"],
                    "epoch_seconds": [row["seconds"] for row in info["finetune_history"]],
                    "seconds_per_epoch": info["seconds_per_epoch"]}
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
