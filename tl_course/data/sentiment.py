"""``sentiment:<domain>``: the UCI "Sentiment Labelled Sentences" (1,000 one-sentence reviews per
domain, 500 negative / 500 positive, from amazon, imdb and yelp), as verified text datasets with
deduplicated, stratified, seeded train/val/test splits.

Source: Kotzias, Denil, de Freitas, Smyth, "From Group to Individual Labels using Deep Features",
KDD 2015; licence CC BY 4.0 (see ``tl_course/data/bundled/sentiment_labelled_sentences/LICENSE.md``).

Where the files come from, first found wins (every copy is verified against the manifest
``tl_course/data/manifests/sentiment_labelled_sentences.sha256`` before use, see
:mod:`tl_course.data.manifest`; a copy that differs is refused, never silently used):

1. ``TL_COURSE_DATA/sentiment_labelled_sentences/``
2. ``TL_COURSE_MIRROR/sentiment_labelled_sentences/``
3. the copy bundled in the package (``tl_course/data/bundled/sentiment_labelled_sentences/``)
4. the official UCI archive (:data:`UCI_URL`), downloaded with progress into ``TL_COURSE_DATA``
   (see :func:`download_sentiment`).

Parsing: each file is split on ``"\\n"`` only (imdb holds two U+0085 characters inside sentences,
which ``str.splitlines`` would treat as line ends) and each line on its **last** tab (sentences
contain quotes that break CSV readers: ``csv``/pandas read imdb as 748 rows). A line whose label
is not ``0`` or ``1`` raises :class:`~tl_course.data.types.DatasetError` naming file and line.

Split rule (:func:`split_groups`): sentences are grouped by their normalised form (Unicode NFKC,
case-folded, runs of whitespace collapsed); every copy of a sentence lands in the same split, so
no sentence is in both train and test. Within each class the groups are shuffled with
``numpy.random.default_rng(seed)`` and cut at 60 % / 80 % of that class's groups: about
60 % train, 20 % val, 20 % test, with the same class balance in every split. The same ``seed``
always gives the same split.

Usage::

    from tl_course.data import load_dataset
    data = load_dataset("sentiment:yelp")          # also amazon, imdb, all
    text, label = data.train[0]
    data.test.class_counts()                       # {'negative': 100, 'positive': 100}
"""
from __future__ import annotations

import os
import shutil
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import settings
from ..download import download, extract_archive
from .manifest import MANIFESTS, read_manifest, verify_tree
from .registry import register_dataset
from .types import DatasetError, DatasetSplits, TextDataset

DIRNAME = "sentiment_labelled_sentences"
"""The folder name of a copy (under TL_COURSE_DATA, TL_COURSE_MIRROR or the bundled data)."""

DOMAINS = {"amazon": "amazon_cells_labelled.txt", "imdb": "imdb_labelled.txt",
           "yelp": "yelp_labelled.txt"}
"""Domain name -> file name inside a copy."""

CLASSES = ["negative", "positive"]

UCI_URL = "https://archive.ics.uci.edu/static/public/331/sentiment+labelled+sentences.zip"
"""The official archive (UCI Machine Learning Repository, dataset 331)."""

UCI_SHA256: str | None = "afc26626d710899948693e1a61405dce197f57ffa719fa1130d346b4cc095343"
"""The sha256 of the UCI archive, as recorded by three independent public projects (it could not
be re-checked here, offline). The extracted files are verified against the manifest in any case;
set it to None if UCI repackages the zip (the manifest check then still guards the data)."""

BUNDLED = Path(__file__).with_name("bundled") / DIRNAME
"""The copy shipped with the package (the 3 data files, the original readme.txt, LICENSE.md)."""

MANIFEST = MANIFESTS / f"{DIRNAME}.sha256"
_BUNDLED_EXTRAS = {f"extra {DIRNAME}/LICENSE.md"}  # our licence note, not part of the dataset

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
"""Train / val / test fractions of each class's (deduplicated) sentence groups."""


# --------------------------------------------------------------------------- the dataset class
# --------------------------------------------------------------------------- parsing
def normalise(text: str) -> str:
    """The form used to find duplicate sentences: Unicode NFKC, case-folded, runs of whitespace
    (U+0085 included) collapsed to one space, stripped.

    Usage: ``normalise("Great  FOOD ") == normalise("great food")``
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def parse_file(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read one ``sentence<TAB>0|1`` file: split on ``"\\n"`` only, each line on its last tab.
    Raises :class:`DatasetError` naming the file and line for a line without a tab or with a
    label other than 0/1, and for text that is not UTF-8.

    Usage: ``texts, labels = parse_file(BUNDLED / "imdb_labelled.txt")  # 1000 sentences``
    """
    path = Path(path)
    try:
        content = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text ({exc}); is it the right file?") from exc
    texts, labels = [], []
    for number, line in enumerate(content.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip(" \t"):
            continue
        sentence, tab, label = line.rpartition("\t")
        if not tab:
            raise DatasetError(f"{path}, line {number}: no tab between sentence and label "
                               f"(expected 'sentence<TAB>0|1'): {line[:80]!r}")
        if label.strip() not in ("0", "1"):
            raise DatasetError(f"{path}, line {number}: label {label.strip()!r} is not 0 or 1 "
                               f"(expected 'sentence<TAB>0|1'): {line[:80]!r}")
        sentence = sentence.strip(" \t")
        if not sentence:
            raise DatasetError(f"{path}, line {number}: empty sentence.")
        texts.append(sentence)
        labels.append(int(label.strip()))
    return texts, np.asarray(labels, dtype=np.int64)


def split_groups(texts: Sequence[str], labels, seed: int = 0,
                 fractions: tuple[float, float, float] = SPLIT_FRACTIONS
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train, val and test: duplicates (same :func:`normalise` form) always share a
    split; within each class, the groups are shuffled with ``seed`` and cut at the cumulative
    ``fractions``. A sentence that appears with both labels is refused (it cannot be stratified).

    Usage: ``train_idx, val_idx, test_idx = split_groups(texts, labels, seed=0)``
    """
    labels = np.asarray(labels, dtype=np.int64)
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        groups.setdefault(normalise(text), []).append(i)
    keys = list(groups)
    group_label = []
    for k in keys:
        found = set(labels[groups[k]].tolist())
        if len(found) > 1:
            raise DatasetError(f"The sentence {k!r} appears with labels {sorted(found)}; "
                               "a contradictory duplicate cannot be split.")
        group_label.append(found.pop())
    group_label = np.asarray(group_label)
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(fractions)[:2] / sum(fractions)
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(group_label):
        members = np.flatnonzero(group_label == c)
        members = members[rng.permutation(len(members))]
        a, b = (int(round(f * len(members))) for f in cuts)
        for part, chosen in zip(parts, (members[:a], members[a:b], members[b:])):
            part.extend(i for g in chosen for i in groups[keys[g]])
    return tuple(np.sort(np.asarray(p, dtype=np.int64)) for p in parts)


# --------------------------------------------------------------------------- finding a copy
def _candidates() -> list[tuple[Path, str]]:
    cands = [(settings.data_dir() / DIRNAME, "TL_COURSE_DATA")]
    if settings.mirror_dir() is not None:
        cands.append((settings.mirror_dir() / DIRNAME, "TL_COURSE_MIRROR"))
    cands.append((BUNDLED, "bundled copy"))
    return cands


def verify_copy(root: Path, bundled: bool = False) -> list[str]:
    """Problems of a copy compared with the manifest (empty when it is exactly the official set;
    the bundled copy may also hold its LICENSE.md).

    Usage: ``assert not verify_copy(BUNDLED, bundled=True)``
    """
    problems = verify_tree(Path(root), read_manifest(MANIFEST))
    if bundled:
        problems = [p for p in problems if p not in _BUNDLED_EXTRAS]
    return problems


def _available() -> tuple[bool, str]:
    for path, label in _candidates():
        if path.is_dir():
            return True, f"found ({label})"
    if settings.offline():
        return False, "no copy, and TL_COURSE_OFFLINE=1 forbids the download; set TL_COURSE_MIRROR"
    return False, "will be downloaded from UCI (under 0.1 MB) on first use"


def download_sentiment(url: str | None = None, sha256: str | None = None,
                       progress: bool = True) -> Path:
    """Download the UCI archive into ``TL_COURSE_DATA/downloads``, extract it, verify the files
    against the manifest and move them into ``TL_COURSE_DATA/sentiment_labelled_sentences``
    (atomically: a failure leaves nothing there). Returns that folder.

    The archive holds the files in ``sentiment labelled sentences/`` (with spaces) beside a
    ``__MACOSX/`` folder; only the files listed in the manifest are taken.

    ``url`` and ``sha256`` default to :data:`UCI_URL` and :data:`UCI_SHA256` (read at call time).

    Usage: ``root = download_sentiment()``
    """
    url = url or UCI_URL
    sha256 = sha256 or UCI_SHA256
    target = settings.data_dir() / DIRNAME
    hint = ("Offline alternatives: set TL_COURSE_MIRROR to a folder holding "
            f"{DIRNAME}/, or reinstall tl-course (it bundles a copy).")
    archive = download(url, settings.data_dir() / "downloads" / "sentiment_labelled_sentences.zip",
                       sha256=sha256, progress=progress, offline_hint=hint)
    staging = settings.data_dir() / f".{DIRNAME}_extract"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            extract_archive(archive, staging / "raw")
        except Exception:
            archive.unlink(missing_ok=True)
            raise
        manifest = read_manifest(MANIFEST)
        wanted = {Path(rel).name for rel in manifest}
        found = [p for p in (staging / "raw").rglob("amazon_cells_labelled.txt")
                 if "__MACOSX" not in p.parts]
        if len(found) != 1:
            archive.unlink(missing_ok=True)
            raise DatasetError(f"The archive from {url} does not hold exactly one "
                               f"amazon_cells_labelled.txt (found {len(found)}); it was deleted. {hint}")
        (staging / DIRNAME).mkdir()
        for name in wanted:
            source = found[0].parent / name
            if source.is_file():
                os.replace(source, staging / DIRNAME / name)
        problems = verify_tree(staging / DIRNAME, manifest)
        if problems:
            archive.unlink(missing_ok=True)
            raise DatasetError(f"The archive from {url} does not match the official dataset "
                               f"({len(problems)} problem(s), e.g. {', '.join(problems[:3])}); it "
                               f"was deleted. Run again to retry. {hint}")
        os.replace(staging / DIRNAME, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def find_sentiment(allow_download: bool = True) -> tuple[Path, str]:
    """The folder of the first verified copy (TL_COURSE_DATA, TL_COURSE_MIRROR, bundled, then
    download) and a phrase saying where it came from. A copy that exists but differs from the
    manifest raises :class:`DatasetError` (it is never skipped silently).

    Usage: ``root, source = find_sentiment()``
    """
    for path, label in _candidates():
        if path.is_dir():
            bundled = path == BUNDLED
            problems = verify_copy(path, bundled=bundled)
            if not problems:
                return path, f"{label} ({path}), verified against {MANIFEST.name}"
            fix = ("Reinstall tl-course." if bundled else
                   "Delete it (it will be found elsewhere or downloaded again)." if label == "TL_COURSE_DATA"
                   else "Fix the mirror or unset TL_COURSE_MIRROR.")
            raise DatasetError(f"The copy of {DIRNAME} at {path} ({label}) is not the official "
                               f"dataset: {len(problems)} problem(s), e.g. {', '.join(problems[:3])}. {fix}")
    if not allow_download:
        raise DatasetError(f"No copy of {DIRNAME} found and downloading is not allowed.")
    return download_sentiment(), f"download from {UCI_URL}, verified against {MANIFEST.name}"


def load_sentiment(domain: str = "yelp", seed: int = 0) -> DatasetSplits:
    """The ``domain`` sentences (``amazon``, ``imdb``, ``yelp`` or ``all``) split into train, val
    and test by :func:`split_groups` with ``seed``.

    Usage: ``data = load_sentiment("imdb")`` (or ``load_dataset("sentiment:imdb")``)
    """
    domain = domain.strip().lower()
    names = list(DOMAINS) if domain == "all" else [domain]
    if any(n not in DOMAINS for n in names):
        raise DatasetError(f"Unknown sentiment domain {domain!r}: use one of "
                           + ", ".join(f"'sentiment:{d}'" for d in [*DOMAINS, "all"]) + ".")
    root, source = find_sentiment()
    texts, labels, domains = [], [], []
    for name in names:
        t, y = parse_file(root / DOMAINS[name])
        texts += t
        labels.append(y)
        domains += [name] * len(t)
    labels = np.concatenate(labels)
    full = TextDataset(texts, labels, CLASSES, domains if domain == "all" else None)
    train, val, test = (full.subset(idx) for idx in split_groups(texts, labels, seed=seed))
    n_unique = len({normalise(t) for t in texts})
    notes = [f"{len(texts)} sentences, {n_unique} distinct after normalisation; duplicates share a "
             f"split; stratified 60/20/20 split of each class (seed {seed})",
             "CC BY 4.0: Kotzias et al., 'From Group to Individual Labels using Deep Features', KDD 2015"]
    return DatasetSplits(f"sentiment:{domain}", train, val, list(CLASSES), source, notes, test=test)


@register_dataset("sentiment:", "sentiment of review sentences", "TL_COURSE_DATA, mirror, bundled or UCI")
def _load_prefix(domain: str, seed: int = 0, **_) -> DatasetSplits:
    return load_sentiment(domain, seed=seed)


# The prefix loads every name; these entries only list the names in dataset_table().
for _domain in [*DOMAINS, "all"]:
    register_dataset(f"sentiment:{_domain}",
                     f"{'amazon + imdb + yelp' if _domain == 'all' else _domain} review sentences, "
                     f"negative/positive, {'3,000' if _domain == 'all' else '1,000'} (60/20/20 split)",
                     "bundled (TL_COURSE_DATA, mirror or UCI download first)",
                     available=_available)(lambda seed=0, _d=_domain, **_: load_sentiment(_d, seed=seed))
