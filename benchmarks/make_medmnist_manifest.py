"""Generate ``tl_course/data/manifests/medmnist.json`` from MedMNIST's own metadata
(``medmnist.info.INFO``): classes, split sizes, URL and md5 of every 2-D flag at every size, plus
the sha256 of the files we have verified ourselves (``/work/shared/data/medmnist.sha256``).

Usage::

    pip install medmnist && python benchmarks/make_medmnist_manifest.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tl_course" / "data" / "manifests" / "medmnist.json"
SHA256_FILES = [Path("/work/shared/data/medmnist.sha256")]


def known_sha256() -> dict[str, str]:
    """``{file name: sha256}`` from sha256sum-style files (``digest  medmnist/<file>``)."""
    out = {}
    for path in SHA256_FILES:
        if path.is_file():
            for line in path.read_text().split("\n"):
                if line.strip():
                    digest, name = line.split(maxsplit=1)
                    out[Path(name.strip().lstrip("*")).name] = digest.lower()
    return out


def build() -> dict:
    """The manifest as a dict (2-D flags only; 3-D volumes are not images for this course)."""
    import medmnist
    from medmnist.info import HOMEPAGE, INFO

    sha = known_sha256()
    flags = {}
    for flag, info in INFO.items():
        if flag.endswith("3d"):
            continue
        sizes = {}
        for size, suffix in ((28, ""), (64, "_64"), (128, "_128"), (224, "_224")):
            if f"url{suffix}" in info:
                fname = f"{flag}{suffix}.npz"
                sizes[str(size)] = {"file": fname, "url": info[f"url{suffix}"],
                                    "md5": info[f"MD5{suffix}"], "sha256": sha.get(fname)}
        labels = info["label"]
        flags[flag] = {"python_class": info["python_class"], "task": info["task"],
                       "classes": [labels[str(i)] for i in range(len(labels))],
                       "n_channels": info["n_channels"], "n_samples": info["n_samples"],
                       "license": info["license"], "description": info["description"],
                       "sizes": sizes}
    return {"source": f"medmnist {medmnist.__version__} (pip), medmnist.info.INFO; {HOMEPAGE}",
            "sha256_source": "sha256 computed locally of files whose md5 matched INFO "
                             "(null where not verified here)",
            "citation": "Yang et al., MedMNIST v2 - A large-scale lightweight benchmark for 2D and "
                        "3D biomedical image classification, Scientific Data 10, 41 (2023)",
            "flags": flags}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tl_course.cache import write_json

    manifest = build()
    if OUT.is_file():  # keep the bundled-subset entry written by make_pneumonia_subset.py
        old = json.loads(OUT.read_text())
        if "bundled" in old:
            manifest["bundled"] = old["bundled"]
    write_json(OUT, manifest)
    print(f"wrote {OUT}: {len(manifest['flags'])} flags from {manifest['source']}")


if __name__ == "__main__":
    main()
