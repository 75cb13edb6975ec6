"""Frozen-feature extraction speed: the obvious torchvision pipeline against the course's, in one
process, on the same images (ants vs bees, 398 photos), cold (no feature cache), with the same
backbone (EfficientNet-Lite0) and the same number of threads.

- obvious: ``ImageFolder`` + ``Resize(256)``/``CenterCrop(224)`` + a ``DataLoader`` with 2 workers,
  batch 64, eager forward under ``torch.no_grad``;
- course: ``tl_course.features.extract_features`` (JPEGs decoded at reduced size, decoding in a
  thread one batch ahead of the forward pass, ``inference_mode``), ``cache=False``.

It also splits the course's time into decoding + preprocessing alone and the forward pass alone,
and checks that both pipelines give the same features up to the decoding difference.

Usage::

    TL_COURSE_MIRROR=../shared/data .venv/bin/python benchmarks/extraction_speed.py --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import torch
    from torchvision import datasets, transforms as T

    from tl_course.data import load_dataset
    from tl_course.features import extract_features, preprocessed_batches
    from tl_course.models.backbones import load_backbone

    torch.set_num_threads(args.threads)
    data = load_dataset("hymenoptera")
    backbone = load_backbone("efficientnet_lite0")
    model = backbone.model.eval()
    n = len(data.train) + len(data.val)
    out = {"images": n, "threads": args.threads, "torch": torch.__version__}

    # the obvious pipeline
    prep = backbone.preprocessing
    tf = T.Compose([T.Resize(256, interpolation=T.InterpolationMode(prep.interpolation)), T.CenterCrop(224),
                    T.ToTensor(), T.Normalize(prep.mean, prep.std)])
    root = data.train.root.parent
    start = time.perf_counter()
    obvious = []
    with torch.no_grad():
        for split in ("train", "val"):
            loader = torch.utils.data.DataLoader(datasets.ImageFolder(root / split, tf), batch_size=64, num_workers=2)
            obvious += [model(x) for x, _ in loader]
    out["obvious_seconds"] = time.perf_counter() - start

    # the course's pipeline, cold
    start = time.perf_counter()
    for split in (data.train, data.val):
        extract_features(backbone, split, cache=False, progress=False)
    out["course_seconds"] = time.perf_counter() - start

    # where the course's time goes
    start = time.perf_counter()
    batches = [x for split in (data.train, data.val) for x, _ in preprocessed_batches(backbone, split)]
    out["course_decode_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode():
        for x in batches:
            model(x)
    out["course_forward_seconds"] = time.perf_counter() - start

    out["obvious_images_per_second"] = n / out["obvious_seconds"]
    out["course_images_per_second"] = n / out["course_seconds"]
    out["speed-up"] = out["obvious_seconds"] / out["course_seconds"]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
