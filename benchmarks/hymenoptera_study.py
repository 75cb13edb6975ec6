"""The near-target contrast to ``pneumonia_study.py``: the same frozen-vs-fine-tuned comparison
on ants vs bees (ImageNet-like photos), with the recipe chosen on PneumoniaMNIST's validation
split applied unchanged, so hymenoptera's val split (it has no test split) is never used to
choose anything and serves as the held-out report.

Usage::

    TL_COURSE_MIRROR=/work/shared/data OMP_NUM_THREADS=1 nice -n 10 \\
        python benchmarks/hymenoptera_study.py --top 1 --backbone-lr 1e-4 --epochs 8
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pneumonia_study as ps  # noqa: E402

SIZE = 224


def tensors(images, transform) -> torch.Tensor:
    return torch.stack([transform(img) for img in images])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=1)
    ap.add_argument("--backbone-lr", type=float, default=1e-4)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ps.log(f"threads: torch {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
           f"load {os.getloadavg()}")
    from tl_course.data import load_dataset

    t_start = time.perf_counter()
    data = load_dataset("hymenoptera")
    imgs = {s: [ds.image(i) for i in range(len(ds))] for s, ds in (("train", data.train), ("val", data.val))}
    ys = {"train": data.train.targets, "val": data.val.targets}
    ev = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(SIZE),
                    T.ToTensor(), T.Normalize(ps.MEAN.tolist(), ps.STD.tolist())])
    aug = T.Compose([T.RandomResizedCrop(SIZE, scale=(0.6, 1.0), interpolation=T.InterpolationMode.BICUBIC),
                     T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(ps.MEAN.tolist(), ps.STD.tolist())])
    stages = ps.lite0_stages()
    lower = stages[:ps.CUT]
    t0 = time.perf_counter()
    clean = {s: ps.run(lower, tensors(imgs[s], ev), bs=32) for s in ("train", "val")}
    t_clean = time.perf_counter() - t0
    res, timing = {"frozen": [], "finetune": []}, {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        views = [ps.run(lower, tensors(imgs["train"], aug), bs=32) for _ in range(ps.VIEWS)]
        t_views = time.perf_counter() - t0
        f = {s: ps.frozen_features(stages, clean[s]) for s in ("train", "val")}
        proba, C, head = ps.fit_lr_head(f["train"], ys["train"], seed=seed)
        t_lr = time.perf_counter() - t0 - t_views
        res["frozen"].append({"val": ps.metrics(ys["val"], proba(f["val"]))})
        n = args.top
        lifted = [ps.lift(stages, v, n) for v in views]
        evals = {"val": (ps.lift(stages, clean["val"], n), ys["val"])}
        hist, times = ps.train_top(stages, n, head, lifted, ys["train"], evals, args.backbone_lr, args.epochs, seed)
        res["finetune"].append(hist[-1])
        total = time.perf_counter() - t0
        for k, v in (("clean_activations_s", t_clean), ("aug_views_s", t_views), ("lr_head_s", t_lr),
                     ("finetune_epoch_s", float(np.mean(times))), ("seed_total_s", total)):
            timing.setdefault(k, []).append(v)
        ps.log(f"[hymenoptera] seed {seed}: frozen C={C:.3g} val {res['frozen'][-1]['val']}; "
               f"fine-tuned val {hist[-1]['val']}; per-epoch val bal acc "
               + " ".join(f"{h['val']['bal_acc']:.3f}" for h in hist) + f"; total {total:.1f}s")
    ps.log(ps.table(res, timing).replace("| test |", "| - |"))
    wall = time.perf_counter() - t_start
    ps.log(f"wall time {wall:.1f}s, load {os.getloadavg()}")
    if args.out:
        from tl_course.cache import write_json

        write_json(args.out, {"args": vars(args), "results": res, "timing": timing, "wall_s": wall})


if __name__ == "__main__":
    main()
