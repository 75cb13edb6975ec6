"""The text-transfer study behind the course's text notebook: a frozen pretrained sentence encoder
(all-MiniLM-L6-v2) + logistic regression against TF-IDF + logistic regression trained from
scratch, on the UCI sentiment sentences (amazon, imdb, yelp).

Parts (every accuracy is on a test split; every hyper-parameter is chosen on validation only):

- ``check``: frozen MiniLM + logistic regression, C chosen by 5-fold cross-validation on the
  yelp train split, accuracy on the yelp val split (the course promises >= 0.87).
- ``curve`` (a): 1, 5, 20, 100 and all labels per class; each draw uses another split seed
  (0..draws-1) and a fresh few-shot draw; C from {0.01, 0.1, 1, 10, 100} on the val split.
- ``domains`` (b): train on one domain's train split, test on every domain's test split (3x3),
  both methods; the cross-domain loss is the in-domain accuracy minus the mean of the others.
- ``coral`` (c): CORAL re-colours the source training features with the target's covariance
  (unlabelled target train split), ``x -> (x - mu_s) Cs^-1/2 Ct^1/2 + mu_t`` with ``C + lam I``,
  ``lam`` = 1 (the paper's choice) and ``lam`` = mean variance; compared with no adaptation,
  with moving to the target mean only, and with re-colouring only (source mean kept).
- ``finetune`` (d): the top 1 or 2 transformer layers + a new head fine-tuned on cached
  activations of the frozen lower layers (yelp), the head initialised from the frozen model's
  logistic regression (LP-FT; ``--ft-init random`` for a fresh head), AdamW, linear warm-up
  (10 % of steps) then linear decay, layers lr 5e-5 (``--ft-lr``), head lr 1e-3, batch 16,
  12 epochs, 3 seeds, with 20 labels per class and all labels; against frozen + logistic regression on the same labels. Reports test
  accuracy at the last epoch and at the best-val epoch, the train loss and seconds per epoch.

Threads: 1 (PyTorch and BLAS) unless ``--threads``; run it under ``nice`` on a shared machine.
Features are cached in ``TL_COURSE_DATA`` (pass ``--data`` to choose the folder).

Usage::

    .venv/bin/python benchmarks/text_transfer_study.py --json study.json            # all parts
    .venv/bin/python benchmarks/text_transfer_study.py --parts check,curve --draws 3
"""
from __future__ import annotations

import argparse
import math
import os
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="check,curve,domains,coral,finetune")
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--ft-seeds", type=int, default=3)
    p.add_argument("--ft-epochs", type=int, default=12)
    p.add_argument("--ft-init", choices=["probe", "random"], default="probe",
                   help="fine-tuning head: from the linear probe (LP-FT) or random")
    p.add_argument("--ft-lr", type=float, default=5e-5, help="learning rate of the transformer layers")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None, help="TL_COURSE_DATA for the feature cache")
    p.add_argument("--json", default=None)
    return p.parse_args()


ARGS = parse_args()
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = str(ARGS.threads)
if ARGS.data:
    os.environ["TL_COURSE_DATA"] = ARGS.data

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV  # noqa: E402

from tl_course.data import few_shot_indices, load_dataset  # noqa: E402
from tl_course.data import TextDataset  # noqa: E402
from tl_course.data.sentiment import DOMAINS  # noqa: E402
from tl_course.models.text import extract_text_features, load_text_encoder, pad_hidden  # noqa: E402

torch.set_num_threads(ARGS.threads)
C_GRID = [0.01, 0.1, 1.0, 10.0, 100.0]
SHOTS = [1, 5, 20, 100, "all"]


def ms(values) -> dict:
    values = [float(v) for v in values]
    return {"mean": round(float(np.mean(values)), 4), "sd": round(float(np.std(values, ddof=1)), 4)
            if len(values) > 1 else 0.0, "n": len(values)}


def fmt(d: dict) -> str:
    return f"{d['mean']:.3f} ± {d['sd']:.3f}"


class Features:
    """MiniLM embeddings of every sentence of every domain, looked up by text."""

    def __init__(self, encoder):
        self.rows: dict[str, np.ndarray] = {}
        for domain in DOMAINS:
            data = load_dataset(f"sentiment:{domain}")
            ds = TextDataset(data.train.texts + data.val.texts + data.test.texts,
                             np.concatenate([data.train.targets, data.val.targets, data.test.targets]),
                             data.classes)
            X, _ = extract_text_features(encoder, ds, progress=False)
            for text, x in zip(ds.texts, X.numpy()):
                self.rows[text] = x

    def __call__(self, ds) -> np.ndarray:
        return np.stack([self.rows[t] for t in ds.texts])


def fit_lr(Xtr, ytr, Xva, yva):
    """Logistic regression with C chosen on validation accuracy (ties: smaller C)."""
    best = None
    for C in C_GRID:
        clf = LogisticRegression(C=C, max_iter=5000).fit(Xtr, ytr)
        acc = float((clf.predict(Xva) == yva).mean())
        if best is None or acc > best[0] + 1e-12:
            best = (acc, C, clf)
    return best[2], best[1]


def minilm_fit(feats, train, val):
    return fit_lr(feats(train), train.targets, feats(val), val.targets)


class TfidfLR:
    """TF-IDF (word 1-2 grams, sublinear tf) fitted on the training texts only, + LR."""

    def __init__(self, train, val):
        self.vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        Xtr = self.vec.fit_transform(train.texts)
        self.clf, self.C = fit_lr(Xtr, train.targets, self.vec.transform(val.texts), val.targets)

    def accuracy(self, ds) -> float:
        return float((self.clf.predict(self.vec.transform(ds.texts)) == ds.targets).mean())


def subset_train(data, shots, seed):
    if shots == "all":
        return data.train
    return data.train.subset(few_shot_indices(data.train.targets, shots, seed=seed))


# --------------------------------------------------------------------------- parts
def part_check(feats) -> dict:
    data = load_dataset("sentiment:yelp")
    clf = LogisticRegressionCV(Cs=[0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100], cv=5, max_iter=5000)
    clf.fit(feats(data.train), data.train.targets)
    val = float((clf.predict(feats(data.val)) == data.val.targets).mean())
    test = float((clf.predict(feats(data.test)) == data.test.targets).mean())
    out = {"C (5-fold CV on train)": float(clf.C_[0]), "val_accuracy": round(val, 4),
           "test_accuracy": round(test, 4), "train": len(data.train), "val": len(data.val)}
    print(f"[check] yelp frozen MiniLM + LR (C={out['C (5-fold CV on train)']} by CV): "
          f"val {val:.3f}, test {test:.3f}")
    return out


def part_curve(feats) -> dict:
    out = {}
    for domain in DOMAINS:
        rows = {}
        for shots in SHOTS:
            accs = {"minilm": [], "tfidf": []}
            for seed in range(ARGS.draws):
                data = load_dataset(f"sentiment:{domain}", seed=seed)
                train = subset_train(data, shots, seed)
                clf, _ = minilm_fit(feats, train, data.val)
                accs["minilm"].append((clf.predict(feats(data.test)) == data.test.targets).mean())
                accs["tfidf"].append(TfidfLR(train, data.val).accuracy(data.test))
            rows[str(shots)] = {k: ms(v) for k, v in accs.items()}
            print(f"[curve] {domain:6s} {str(shots):>4s}/class  MiniLM {fmt(rows[str(shots)]['minilm'])}"
                  f"   TF-IDF {fmt(rows[str(shots)]['tfidf'])}", flush=True)
        out[domain] = rows
    return out


def part_domains(feats) -> dict:
    names = list(DOMAINS)
    acc = {m: np.zeros((ARGS.draws, 3, 3)) for m in ("minilm", "tfidf")}
    for seed in range(ARGS.draws):
        splits = {d: load_dataset(f"sentiment:{d}", seed=seed) for d in names}
        for i, src in enumerate(names):
            clf, _ = minilm_fit(feats, splits[src].train, splits[src].val)
            tf = TfidfLR(splits[src].train, splits[src].val)
            for j, tgt in enumerate(names):
                test = splits[tgt].test
                acc["minilm"][seed, i, j] = (clf.predict(feats(test)) == test.targets).mean()
                acc["tfidf"][seed, i, j] = tf.accuracy(test)
    out = {}
    for m, a in acc.items():
        mean, sd = a.mean(0), a.std(0, ddof=1)
        loss = [a[:, i, i] - a[:, i, [j for j in range(3) if j != i]].mean(1) for i in range(3)]
        out[m] = {"train_on_rows_test_on_columns": names,
                  "mean": mean.round(4).tolist(), "sd": sd.round(4).tolist(),
                  "cross_domain_loss_per_source": {names[i]: ms(loss[i]) for i in range(3)},
                  "cross_domain_loss_overall": ms(np.mean(loss, axis=0))}
        print(f"[domains] {m}: rows = train on, columns = test on {names}")
        for i in range(3):
            print("   " + f"{names[i]:6s} " + "  ".join(f"{mean[i, j]:.3f}±{sd[i, j]:.3f}" for j in range(3))
                  + f"   loss {fmt(out[m]['cross_domain_loss_per_source'][names[i]])}")
        print(f"   overall cross-domain loss {fmt(out[m]['cross_domain_loss_overall'])}", flush=True)
    return out


def _sqrtm(C: np.ndarray, inverse: bool = False) -> np.ndarray:
    w, V = np.linalg.eigh(C)
    w = np.clip(w, 1e-12, None)
    return (V * (w ** (-0.5 if inverse else 0.5))) @ V.T


def coral(Xs: np.ndarray, Xt: np.ndarray, lam: float | None, mean: bool = True,
          cov: bool = True) -> np.ndarray:
    """Re-colour source features with the target covariance (``cov``) and move them to the
    target mean (``mean``); ``lam`` is added to both covariances' diagonals (None: their mean
    variance)."""
    mu_s, mu_t = Xs.mean(0), Xt.mean(0)
    out = Xs - mu_s
    if cov:
        Cs, Ct = np.cov(Xs, rowvar=False), np.cov(Xt, rowvar=False)
        ls = lam if lam is not None else np.trace(Cs) / Cs.shape[0]
        lt = lam if lam is not None else np.trace(Ct) / Ct.shape[0]
        out = out @ (_sqrtm(Cs + ls * np.eye(len(Cs)), inverse=True) @ _sqrtm(Ct + lt * np.eye(len(Ct))))
    return out + (mu_t if mean else mu_s)


def part_coral(feats) -> dict:
    names = list(DOMAINS)
    variants = {"none": "skip", "mean_shift_only": ("mean", None),
                "coral_lam1": (1.0, None), "coral_lam_meanvar": (None, None),
                "coral_lam_meanvar_cov_only": (None, "cov")}
    res = {f"{s}->{t}": {v: [] for v in variants} for s in names for t in names if s != t}
    for seed in range(ARGS.draws):
        splits = {d: load_dataset(f"sentiment:{d}", seed=seed) for d in names}
        for s in names:
            for t in names:
                if s == t:
                    continue
                Xs, ys = feats(splits[s].train), splits[s].train.targets
                Xv, yv = feats(splits[s].val), splits[s].val.targets
                Xt_unlab = feats(splits[t].train)  # target train texts, labels unused
                Xte, yte = feats(splits[t].test), splits[t].test.targets
                for v, lam in variants.items():
                    if lam == "skip":
                        clf, _ = fit_lr(Xs, ys, Xv, yv)
                    else:
                        which, only = lam
                        both = np.vstack([Xs, Xv])
                        if which == "mean":
                            both = coral(both, Xt_unlab, None, cov=False)
                        else:
                            both = coral(both, Xt_unlab, which, mean=only != "cov")
                        clf, _ = fit_lr(both[:len(Xs)], ys, both[len(Xs):], yv)
                    res[f"{s}->{t}"][v].append((clf.predict(Xte) == yte).mean())
    out = {pair: {v: ms(a) for v, a in r.items()} for pair, r in res.items()}
    gains = {v: ms([np.mean(res[p][v]) - np.mean(res[p]["none"]) for p in res]) for v in variants if v != "none"}
    for pair, r in out.items():
        print(f"[coral] {pair:14s} " + "  ".join(f"{v} {fmt(d)}" for v, d in r.items()))
    for v, g in gains.items():
        print(f"[coral] mean gain over no adaptation ({v}), over the 6 pairs: {fmt(g)}", flush=True)
    out["mean_gain_over_pairs"] = gains
    return out


def lr_lambda(warmup: int, total: int):
    return lambda step: (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup))


def finetune_once(encoder, states, data, train_idx, n_top, seed, epochs, probe=None):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clf = encoder.top_layers(encoder.num_layers - n_top)
    if probe is not None:  # LP-FT: start from the linear probe (same logits as the frozen model)
        w = torch.as_tensor(probe.coef_[0], dtype=torch.float32)
        b = float(probe.intercept_[0])
        with torch.no_grad():
            clf.head.weight.copy_(torch.stack([-w / 2, w / 2]))
            clf.head.bias.copy_(torch.tensor([-b / 2, b / 2]))
    opt = torch.optim.AdamW([{"params": clf.layers.parameters(), "lr": ARGS.ft_lr},
                             {"params": clf.head.parameters(), "lr": 1e-3}], weight_decay=0.01)
    batch = 16
    steps_per_epoch = math.ceil(len(train_idx) / batch)
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(max(1, total // 10), total))
    Htr, Hva, Hte = states["train"], states["val"], states["test"]
    ytr = torch.as_tensor(data.train.targets)

    def evaluate(H, y):
        clf.eval()
        correct = 0
        with torch.no_grad():
            for s in range(0, len(H), 128):
                logits = clf(*pad_hidden(H[s:s + 128]))
                correct += int((logits.argmax(1).numpy() == y[s:s + 128]).sum())
        return correct / len(H)

    history, epoch_times = [], []
    for epoch in range(epochs):
        clf.train()
        order = rng.permutation(train_idx)
        t0, losses = time.perf_counter(), []
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            logits = clf(*pad_hidden([Htr[i] for i in idx]))
            loss = torch.nn.functional.cross_entropy(logits, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        epoch_times.append(time.perf_counter() - t0)
        history.append({"train_loss": float(np.mean(losses)), "val": evaluate(Hva, data.val.targets),
                        "test": evaluate(Hte, data.test.targets)})
    best = max(range(epochs), key=lambda e: (history[e]["val"], -e))
    return {"last_test": history[-1]["test"], "best_val_epoch": best + 1,
            "best_val_test": history[best]["test"], "last_val": history[-1]["val"],
            "last_train_loss": history[-1]["train_loss"], "history": history,
            "s_per_epoch": float(np.median(epoch_times))}


def part_finetune(encoder, feats) -> dict:
    data = load_dataset("sentiment:yelp")
    out = {}
    for n_top in (1, 2):
        layer = encoder.num_layers - n_top
        t0 = time.perf_counter()
        states = {k: encoder.hidden_states_at(getattr(data, k).texts, layer) for k in ("train", "val", "test")}
        t_cache = time.perf_counter() - t0
        for shots in (20, "all"):
            runs, frozen = [], []
            for seed in range(ARGS.ft_seeds):
                idx = (np.arange(len(data.train)) if shots == "all"
                       else few_shot_indices(data.train.targets, shots, seed=seed))
                clf, _ = minilm_fit(feats, data.train.subset(idx), data.val)
                frozen.append((clf.predict(feats(data.test)) == data.test.targets).mean())
                runs.append(finetune_once(encoder, states, data, idx, n_top, seed, ARGS.ft_epochs,
                                          probe=clf if ARGS.ft_init == "probe" else None))
            key = f"top{n_top}_{shots}"
            out[key] = {"frozen_lr_test": ms(frozen),
                        "ft_last_epoch_test": ms([r["last_test"] for r in runs]),
                        "ft_best_val_epoch_test": ms([r["best_val_test"] for r in runs]),
                        "best_val_epochs": [r["best_val_epoch"] for r in runs],
                        "last_train_loss": ms([r["last_train_loss"] for r in runs]),
                        "s_per_epoch": round(float(np.median([r["s_per_epoch"] for r in runs])), 3),
                        "activation_cache_s": round(t_cache, 2),
                        "val_curve_mean": [round(float(np.mean([r["history"][e]["val"] for r in runs])), 4)
                                           for e in range(ARGS.ft_epochs)],
                        "test_curve_mean": [round(float(np.mean([r["history"][e]["test"] for r in runs])), 4)
                                            for e in range(ARGS.ft_epochs)],
                        "train_loss_curve_mean": [round(float(np.mean([r["history"][e]["train_loss"] for r in runs])), 4)
                                                  for e in range(ARGS.ft_epochs)]}
            o = out[key]
            print(f"[finetune] yelp top {n_top} layer(s), {shots} labels/class: frozen LR {fmt(o['frozen_lr_test'])}"
                  f" | FT last epoch {fmt(o['ft_last_epoch_test'])}, best-val epoch {fmt(o['ft_best_val_epoch_test'])}"
                  f" (epochs {o['best_val_epochs']}), train loss {fmt(o['last_train_loss'])},"
                  f" {o['s_per_epoch']} s/epoch", flush=True)
            print(f"           val curve {o['val_curve_mean']}", flush=True)
    return out


def main():
    parts = ARGS.parts.split(",")
    t0 = time.perf_counter()
    encoder = load_text_encoder()
    feats = Features(encoder)
    result = {"threads": ARGS.threads, "draws": ARGS.draws, "C_grid": C_GRID, "ft_lr": ARGS.ft_lr,
              "ft_init": ARGS.ft_init, "ft_epochs": ARGS.ft_epochs,
              "features_s (load + encode or cache)": round(time.perf_counter() - t0, 1),
              "load_avg_start": os.getloadavg()}
    print(f"features ready in {result['features_s (load + encode or cache)']} s", flush=True)
    for part in parts:
        t = time.perf_counter()
        fn = {"check": part_check, "curve": part_curve, "domains": part_domains, "coral": part_coral,
              "finetune": lambda f: part_finetune(encoder, f)}[part]
        result[part] = fn(feats)
        result[f"{part}_s"] = round(time.perf_counter() - t, 1)
        if ARGS.json:
            from tl_course import cache

            cache.write_json(ARGS.json, result)
    result["load_avg_end"] = os.getloadavg()
    if ARGS.json:
        from tl_course import cache

        cache.write_json(ARGS.json, result)


if __name__ == "__main__":
    main()
