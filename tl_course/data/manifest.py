"""Verified data: a manifest lists every file of an official dataset with its sha256, and a copy
on disk (downloaded, extracted or mirrored) is used only when it equals the manifest exactly.

"Exactly" means: every listed file present and unchanged, and no other file. Extra files are
refused with their names, not silently trained on (an extra class folder would change the
classes). Hidden files (names starting with ``.``, e.g. ``.DS_Store``, AppleDouble ``._x.jpg``)
are ignored, as every loader of the course ignores them.

Usage::

    from tl_course.data.manifest import read_manifest, verify_tree
    problems = verify_tree(Path("data/hymenoptera_data"), read_manifest(path))
"""
from __future__ import annotations

from pathlib import Path

from .types import content_hash

MANIFESTS = Path(__file__).with_name("manifests")
"""The manifests shipped with the package (``<dataset>.sha256``, ``sha256sum`` format)."""


def read_manifest(path: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` from a ``sha256sum``-style file (``digest  path`` per line).

    Usage: ``read_manifest(MANIFESTS / "hymenoptera_data.sha256")``
    """
    entries = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, rel = line.split(None, 1)
            entries[rel.strip().lstrip("*")] = digest
    return entries


def verify_tree(root: Path, manifest: dict[str, str]) -> list[str]:
    """Compare the files under ``root`` (whose manifest paths start with ``root.name/``) against a
    ``{relative path: sha256}`` manifest; returns a list of problems, empty when the tree equals
    the manifest: every file present and intact, no other (non-hidden) file.

    Usage: ``problems = verify_tree(Path("data/hymenoptera_data"), manifest)``
    """
    root = Path(root)
    problems = []
    for rel, digest in manifest.items():
        path = root.parent / rel
        if not path.is_file():
            problems.append(f"missing {rel}")
        elif content_hash(path) != digest:
            problems.append(f"changed {rel}")
    if root.is_dir():
        listed = set(manifest)
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root.parent).as_posix()
            hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
            if not hidden and path.is_file() and rel not in listed:
                problems.append(f"extra {rel}")
    return problems
