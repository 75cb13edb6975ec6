"""Training and inference speed of the course's convolutional networks in the two memory layouts
of PyTorch on a CPU: the default (NCHW, "contiguous") and channels-last (NHWC), which
:func:`tl_course.train.fit` and :func:`~tl_course.train.predict` now use for every model with a
2-D convolution (:func:`tl_course.train.channels_last`).

For each network the notebooks train, it times optimizer steps (forward, backward, AdamW) and
no-grad forward passes on random batches of the notebooks' shapes, alternating the layouts
``--repeat`` times, and prints seconds per step, the speed-up, and how far the two layouts' outputs
are apart after the same steps (float rounding only).

Usage::

    .venv/bin/python benchmarks/training_layout.py --threads 1 --repeat 2 --json benchmarks/results_training_layout.json
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="the notebooks' kernels run single-threaded")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per measurement (after 2 warm-up steps)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import torch

    from tl_course.models import transfer
    from tl_course.models.backbones import load_backbone
    from tl_course.models.small_cnn import SmallCNN
    from tl_course.train import channels_last

    torch.set_num_threads(args.threads)

    def lite0(size, top=None):
        bb = load_backbone("efficientnet_lite0", image_size=size)
        body = bb.model if top is None else bb.model[len(bb.stages) - top:]
        if top is not None:
            transfer.unfreeze_top(bb, top)
        return transfer.TransferModel(body, 2, head=transfer.make_head(bb.feature_dim, 2), bn_stats="frozen")

    networks = {  # name: (model factory, batch shape), as in the notebooks
        "Lite0 top 3 stages on 14x14 maps (08, near)": (lambda: lite0(224, top=3), (32, 112, 14, 14)),
        "Lite0 top 2 stages on 2x2 maps (11)": (lambda: lite0(64, top=2), (64, 192, 2, 2)),
        "Lite0 whole, 96 px (10)": (lambda: lite0(96), (32, 3, 96, 96)),
        "Lite0 whole, 224 px (08, N=all)": (lambda: lite0(224), (16, 3, 224, 224)),
        "small CNN, 28 px grey (11)": (lambda: SmallCNN(in_channels=1, num_classes=2, width=32, seed=0), (64, 1, 28, 28)),
        "small CNN, 64 px (01, 10)": (lambda: SmallCNN(in_channels=3, num_classes=2, width=32, seed=0), (64, 3, 64, 64)),
    }

    def measure(model, x, y):
        torch.manual_seed(0)  # the same dropout masks in both layouts
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
        model.train()
        for i in range(args.steps + 2):
            if i == 2:
                start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        train = (time.perf_counter() - start) / args.steps
        model.eval()
        with torch.no_grad():
            model(x)
            start = time.perf_counter()
            for _ in range(args.steps):
                out = model(x)
        return train, (time.perf_counter() - start) / args.steps, out

    rows = []
    for name, (make, shape) in networks.items():
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(*shape, generator=g), torch.randint(0, 2, (shape[0],), generator=g)
        base = make()
        times = {"contiguous": [], "channels_last": []}
        outs = {}
        for _ in range(args.repeat):
            for layout in times:
                model = copy.deepcopy(base)
                if layout == "channels_last":
                    with channels_last(model):
                        train, infer, outs[layout] = measure(model, x, y)
                else:
                    train, infer, outs[layout] = measure(model, x, y)
                times[layout].append((train, infer))
        best = {k: (min(t for t, _ in v), min(i for _, i in v)) for k, v in times.items()}
        row = {"network": name, "batch": list(shape),
               "train_s_per_step": {k: round(v[0], 4) for k, v in best.items()},
               "infer_s_per_batch": {k: round(v[1], 4) for k, v in best.items()},
               "train_speedup": round(best["contiguous"][0] / best["channels_last"][0], 2),
               "infer_speedup": round(best["contiguous"][1] / best["channels_last"][1], 2),
               "max_abs_output_difference": float((outs["contiguous"] - outs["channels_last"]).abs().max())}
        rows.append(row)
        print(f"{name:<45} train {row['train_s_per_step']['contiguous']:.3f} -> "
              f"{row['train_s_per_step']['channels_last']:.3f} s/step ({row['train_speedup']:.2f}x), "
              f"inference {row['infer_speedup']:.2f}x, outputs apart {row['max_abs_output_difference']:.1e}", flush=True)
    out = {"threads": args.threads, "steps": args.steps, "repeat": args.repeat, "torch": torch.__version__,
           "load_before": os.getloadavg()[0], "rows": rows}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
