"""Draw the bundled PneumoniaMNIST subset: the same fraction of every split and class of the
official file (seeded), as large as fits in 1 MB (compressed npz, same keys as the official
file), and record its sha256 in ``tl_course/data/manifests/medmnist.json``.

Usage::

    python benchmarks/make_pneumonia_subset.py --npz /work/shared/data/medmnist/pneumoniamnist.npz
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tl_course" / "data" / "bundled" / "pneumoniamnist_subset.npz"
MANIFEST = ROOT / "tl_course" / "data" / "manifests" / "medmnist.json"
LIMIT = 1_000_000  # bytes


def draw(z: dict, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """``round(fraction * n)`` images of every (split, class), drawn without replacement with
    one seeded generator, kept in their original order."""
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "val", "test"):
        y = z[f"{split}_labels"].reshape(-1)
        idx = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(y == c), size=int(round(fraction * (y == c).sum())), replace=False)
            for c in np.unique(y)]))
        out[f"{split}_images"], out[f"{split}_labels"] = z[f"{split}_images"][idx], z[f"{split}_labels"][idx]
    return out


def encode(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--npz", default="/work/shared/data/medmnist/pneumoniamnist.npz")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tl_course.cache import write_atomically, write_json
    from tl_course.data.medmnist import medmnist_manifest, verify_file
    from tl_course.download import sha256_file

    entry = medmnist_manifest()["flags"]["pneumoniamnist"]["sizes"]["28"]
    problem = verify_file(Path(args.npz), entry)
    if problem:
        sys.exit(f"{args.npz} is not the official file: {problem}")
    with np.load(args.npz, allow_pickle=False) as f:
        z = {k: f[k] for k in f.files}
    best = None
    for pct in range(1, 101):  # the largest whole percentage that fits
        blob = encode(draw(z, pct / 100, args.seed))
        if len(blob) > LIMIT:
            break
        best = (pct, blob)
    pct, blob = best
    write_atomically(OUT, lambda tmp: tmp.write_bytes(blob))
    sub = draw(z, pct / 100, args.seed)
    counts = {s: np.bincount(sub[f"{s}_labels"].reshape(-1), minlength=2).tolist() for s in ("train", "val", "test")}
    manifest = json.loads(MANIFEST.read_text())
    manifest["bundled"] = {"pneumoniamnist": {
        "file": OUT.name, "sha256": sha256_file(OUT), "bytes": OUT.stat().st_size, "seed": args.seed,
        "fraction": pct / 100, "counts_normal_pneumonia": counts,
        "drawn_by": "benchmarks/make_pneumonia_subset.py", "from_md5": entry["md5"]}}
    write_json(MANIFEST, manifest)
    print(f"{OUT}: {OUT.stat().st_size:,} bytes, {pct}% of every split and class, counts {counts}")


if __name__ == "__main__":
    main()
