"""Tests of the ``sentiment:<domain>`` text datasets: parsing pitfalls, the deduplicated stratified
split, the lookup order of verified copies, and the download of the UCI archive (local server).

Usage::

    pytest -q tests/test_sentiment.py
"""
from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tl_course.data import DatasetError, load_dataset
from tl_course.data import sentiment
from tl_course.data import TextDataset
from tl_course.data.sentiment import (BUNDLED, DIRNAME, DOMAINS, normalise, parse_file,
                                      split_groups)
from tl_course.download import DownloadError

DATA_FILES = ["amazon_cells_labelled.txt", "imdb_labelled.txt", "yelp_labelled.txt", "readme.txt"]


def copy_official(dest_parent: Path) -> Path:
    """A copy of the official files (no LICENSE.md) at ``dest_parent/sentiment_labelled_sentences``."""
    dest = dest_parent / DIRNAME
    dest.mkdir(parents=True)
    for name in DATA_FILES:
        shutil.copyfile(BUNDLED / name, dest / name)
    return dest


# --------------------------------------------------------------------------- parsing
def test_imdb_has_1000_rows_and_keeps_u0085_inside_sentences():
    texts, labels = parse_file(BUNDLED / "imdb_labelled.txt")
    assert len(texts) == 1000 and np.bincount(labels).tolist() == [500, 500]
    with_nel = [t for t in texts if "\x85" in t]
    assert len(with_nel) == 2
    assert all(t.strip("\x85") == t for t in with_nel)  # inside, not at an end
    for name in DOMAINS.values():
        t, y = parse_file(BUNDLED / name)
        assert len(t) == 1000 and np.bincount(y).tolist() == [500, 500]


def test_split_on_last_tab_and_crlf(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b'He said "no\tway" and left \t0\r\nGood "quote\t1\n\n')
    texts, labels = parse_file(path)
    assert texts == ['He said "no\tway" and left', 'Good "quote']
    assert labels.tolist() == [0, 1]


@pytest.mark.parametrize("line", ["Nice place\t2", "Nice place\tpositive", "Nice place no tab"])
def test_bad_label_line_names_file_and_line(tmp_path, line):
    path = tmp_path / "bad_labelled.txt"
    path.write_text(f"Fine\t1\nAwful\t0\n{line}\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad_labelled\.txt, line 3"):
        parse_file(path)


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\xe9\t1\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8"):
        parse_file(path)


# --------------------------------------------------------------------------- the split
def test_duplicates_share_a_split_and_classes_are_stratified():
    texts = [f"sentence {i}" for i in range(200)] + ["Great FOOD!", "great  food!", "GREAT FOOD!"]
    labels = [i % 2 for i in range(200)] + [1, 1, 1]
    parts = split_groups(texts, labels, seed=3)
    where = {i: k for k, part in enumerate(parts) for i in part}
    assert len(where) == len(texts)  # a partition
    assert where[200] == where[201] == where[202]
    for part, fraction in zip(parts, sentiment.SPLIT_FRACTIONS):
        counts = np.bincount(np.asarray(labels)[part], minlength=2)
        assert abs(counts[0] - fraction * 100) <= 1.5 and abs(counts[1] - fraction * 101) <= 2.5


def test_contradictory_duplicates_are_refused():
    with pytest.raises(DatasetError, match="appears with labels"):
        split_groups(["ok", "OK"], [0, 1])


@pytest.mark.parametrize("domain", ["yelp", "amazon", "imdb", "all"])
def test_real_splits_disjoint_stratified_seeded(domain):
    data = load_dataset(f"sentiment:{domain}")
    sets = [{normalise(t) for t in split.texts} for split in (data.train, data.val, data.test)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    n = 3000 if domain == "all" else 1000
    assert len(data.train) + len(data.val) + len(data.test) == n
    for split, fraction in zip((data.train, data.val, data.test), sentiment.SPLIT_FRACTIONS):
        for count in split.class_counts().values():
            assert abs(count - fraction * n / 2) <= 0.02 * n / 2 + 2
    assert data.classes == ["negative", "positive"]
    assert "bundled" in data.source
    again = load_dataset(f"sentiment:{domain}")
    assert again.test.fingerprint() == data.test.fingerprint()
    other = load_dataset(f"sentiment:{domain}", seed=1)
    assert other.test.fingerprint() != data.test.fingerprint()
    if domain == "all":
        assert set(data.test.domain_counts()) == set(DOMAINS)
    else:
        assert data.train.domains is None


def test_text_dataset_api():
    ds = TextDataset(["a", "b", "c"], [0, 1, 1], ["negative", "positive"], ["x", "y", "x"])
    assert len(ds) == 3 and ds[1] == ("b", 1)
    sub = ds.subset([2, 0])
    assert sub.texts == ["c", "a"] and sub.targets.tolist() == [1, 0] and sub.domains == ["x", "x"]
    assert ds.class_counts() == {"negative": 1, "positive": 2}
    assert ds.fingerprint() != TextDataset(["a", "b", "c"], [0, 1, 0], ds.classes).fingerprint()
    assert TextDataset(["ab", "c"], [0, 0], ds.classes).fingerprint() != \
        TextDataset(["a", "bc"], [0, 0], ds.classes).fingerprint()
    with pytest.raises(DatasetError):
        TextDataset(["a"], [2], ["negative", "positive"])


def test_unknown_domain_lists_the_names():
    with pytest.raises(DatasetError, match="sentiment:yelp"):
        load_dataset("sentiment:twitter")


# --------------------------------------------------------------------------- lookup order
def test_lookup_order_data_dir_then_mirror_then_bundled(tmp_path, monkeypatch, isolated_env):
    assert "bundled copy" in load_dataset("sentiment:yelp").source
    mirror = tmp_path / "mirror"
    copy_official(mirror)
    monkeypatch.setenv("TL_COURSE_MIRROR", str(mirror))
    assert load_dataset("sentiment:yelp").source.startswith("TL_COURSE_MIRROR")
    copy_official(isolated_env)
    assert load_dataset("sentiment:yelp").source.startswith("TL_COURSE_DATA")


def test_modified_copy_is_refused(monkeypatch, isolated_env):
    root = copy_official(isolated_env)
    path = root / "yelp_labelled.txt"
    path.write_bytes(path.read_bytes().replace(b"\t1\n", b"\t0\n", 1))  # one flipped label
    with pytest.raises(DatasetError, match="changed sentiment_labelled_sentences/yelp_labelled.txt"):
        load_dataset("sentiment:yelp")


def test_extra_file_in_mirror_is_refused(tmp_path, monkeypatch):
    root = copy_official(tmp_path / "mirror")
    (root / "twitter_labelled.txt").write_text("hi\t1\n")
    (root / ".DS_Store").write_bytes(b"\0")  # hidden files are ignored
    monkeypatch.setenv("TL_COURSE_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(DatasetError, match="extra sentiment_labelled_sentences/twitter_labelled.txt"):
        load_dataset("sentiment:amazon")


def test_bundled_copy_is_verified(tmp_path, monkeypatch):
    fake = copy_official(tmp_path / "pkg")
    (fake / "LICENSE.md").write_text("licence")
    monkeypatch.setattr(sentiment, "BUNDLED", fake)
    assert "bundled copy" in load_dataset("sentiment:imdb").source  # LICENSE.md is allowed
    (fake / "imdb_labelled.txt").write_text("short\t1\n")
    with pytest.raises(DatasetError, match="Reinstall tl-course"):
        load_dataset("sentiment:imdb")


# --------------------------------------------------------------------------- download
def uci_zip(modify: bool = False) -> bytes:
    """An archive laid out like UCI's: a folder with spaces, plus __MACOSX junk."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in DATA_FILES:
            data = (BUNDLED / name).read_bytes()
            if modify and name == "amazon_cells_labelled.txt":
                data = data.replace(b"\t0\n", b"\t1\n", 1)
            zf.writestr(f"sentiment labelled sentences/{name}", data)
            zf.writestr(f"__MACOSX/sentiment labelled sentences/._{name}", b"\0\1junk")
    return buffer.getvalue()


@pytest.fixture
def no_local_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(sentiment, "BUNDLED", tmp_path / "not_installed" / DIRNAME)


def test_download_good_archive(http_server, monkeypatch, no_local_copy, isolated_env):
    body = uci_zip()
    monkeypatch.setattr(sentiment, "UCI_URL", http_server.add("uci.zip", body))
    monkeypatch.setattr(sentiment, "UCI_SHA256", hashlib.sha256(body).hexdigest())
    data = load_dataset("sentiment:amazon")
    assert data.source.startswith("download from http://127.0.0.1")
    assert len(data.train) + len(data.val) + len(data.test) == 1000
    assert sorted(p.name for p in (isolated_env / DIRNAME).iterdir()) == sorted(DATA_FILES)
    # the next load finds the verified copy in TL_COURSE_DATA, no second request
    assert load_dataset("sentiment:yelp").source.startswith("TL_COURSE_DATA")
    assert len(http_server.requests) == 1


def test_download_archive_with_wrong_checksum(http_server, monkeypatch, no_local_copy, isolated_env):
    monkeypatch.setattr(sentiment, "UCI_URL", http_server.add("uci.zip", uci_zip()))
    monkeypatch.setattr(sentiment, "UCI_SHA256", "0" * 64)
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        load_dataset("sentiment:amazon")
    assert not (isolated_env / DIRNAME).exists()


def test_download_modified_archive_is_refused(http_server, monkeypatch, no_local_copy, isolated_env):
    monkeypatch.setattr(sentiment, "UCI_URL", http_server.add("uci.zip", uci_zip(modify=True)))
    monkeypatch.setattr(sentiment, "UCI_SHA256", None)  # as if unknown: the manifest still guards
    with pytest.raises(DatasetError, match="changed sentiment_labelled_sentences/amazon"):
        load_dataset("sentiment:amazon")
    assert not (isolated_env / DIRNAME).exists()
    assert not list((isolated_env / "downloads").iterdir())  # the bad archive was deleted


def test_download_corrupt_archive(http_server, monkeypatch, no_local_copy, isolated_env):
    monkeypatch.setattr(sentiment, "UCI_URL", http_server.add("uci.zip", b"<html>not a zip</html>"))
    monkeypatch.setattr(sentiment, "UCI_SHA256", None)
    with pytest.raises(DownloadError, match="not a zip"):
        load_dataset("sentiment:amazon")
    assert not (isolated_env / DIRNAME).exists()
    assert not list((isolated_env / "downloads").iterdir())


def test_download_interrupted(http_server, monkeypatch, no_local_copy, isolated_env):
    monkeypatch.setattr(sentiment, "UCI_URL", http_server.add("uci.zip", uci_zip(), interrupted=True))
    with pytest.raises(DownloadError, match="interrupted|Could not download"):
        load_dataset("sentiment:amazon")
    assert not (isolated_env / DIRNAME).exists()
    assert not any((isolated_env / "downloads").glob("*"))


def test_offline_without_copy(monkeypatch, no_local_copy):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    with pytest.raises(DownloadError, match="TL_COURSE_MIRROR"):
        load_dataset("sentiment:yelp")
    assert sentiment._available()[0] is False


def test_per_class_subset_of_text_splits():
    small = load_dataset("sentiment:yelp").per_class(5, 10, seed=1)
    assert small.train.class_counts() == {"negative": 5, "positive": 5}
    assert small.val.class_counts() == {"negative": 10, "positive": 10}
    assert isinstance(small.train, TextDataset) and isinstance(small.train[0][0], str)
