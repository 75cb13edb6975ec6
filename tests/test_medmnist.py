"""Tests of the ``medmnist:<flag>`` loader: lookup order, checksums, safe reading, download
(good, corrupt, interrupted), the bundled PneumoniaMNIST subset, and the real file when present.

Usage::

    pytest -q tests/test_medmnist.py
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from tl_course.data import DatasetError, load_dataset
from tl_course.data import medmnist as mm
from tl_course.download import DownloadError

REAL = Path("/work/shared/data/medmnist/pneumoniamnist.npz")
SIZES = {"train": 12, "val": 4, "test": 6}


def fake_npz(seed: int = 0, sizes=SIZES, **extra) -> bytes:
    """A small MedMNIST-like npz (2 classes, 28x28 grey, labels (N, 1) uint8)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in sizes.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8).reshape(-1, 1)
    arrays.update(extra)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.fixture
def fake_flag(tmp_path, monkeypatch):
    """Register a manifest with one flag ``fakemnist`` whose file is ``fake_npz(0)``; returns
    ``(bytes, set_url)``: ``set_url(url)`` points the manifest's download at ``url``."""
    body = fake_npz(0)
    manifest = json.loads(mm.MANIFEST.read_text())
    manifest["flags"]["fakemnist"] = {
        "python_class": "FakeMNIST", "task": "binary-class", "classes": ["normal", "sick"],
        "n_channels": 1, "n_samples": SIZES, "license": "CC0", "description": "test",
        "sizes": {"28": {"file": "fakemnist.npz", "url": "http://127.0.0.1:9/none",
                         "md5": hashlib.md5(body).hexdigest(),
                         "sha256": hashlib.sha256(body).hexdigest()}}}
    path = tmp_path / "medmnist.json"

    def write(url=None):
        if url:
            manifest["flags"]["fakemnist"]["sizes"]["28"]["url"] = url
        path.write_text(json.dumps(manifest))
        mm._read_manifest.cache_clear()

    write()
    monkeypatch.setattr(mm, "MANIFEST", path)
    yield body, write
    mm._read_manifest.cache_clear()


def put(folder: Path, body: bytes, name="fakemnist.npz") -> Path:
    (folder / "medmnist").mkdir(parents=True, exist_ok=True)
    (folder / "medmnist" / name).write_bytes(body)
    return folder / "medmnist" / name


# --------------------------------------------------------------------------- manifest and names
def test_manifest_is_medmnist_info():
    m = mm.medmnist_manifest()
    assert m["source"].startswith("medmnist ")
    p = m["flags"]["pneumoniamnist"]
    assert p["classes"] == ["normal", "pneumonia"]
    assert p["n_samples"] == {"train": 4708, "val": 524, "test": 624}
    assert p["sizes"]["28"]["md5"] == "28209eda62fecd6e6a2d98b1501bb15f"
    assert p["sizes"]["28"]["sha256"] == "e1792d3f03751cb101e99f19a63b3c1941436c988665f47853417b05be250cd8"
    assert "pneumoniamnist_64" in mm.medmnist_flags()
    assert not any(f.endswith("3d") for f in m["flags"])


@pytest.mark.parametrize("name, words", [("nosuchmnist", ["Unknown", "pneumoniamnist"]),
                                         ("organmnist3d", ["3-D"]),
                                         ("pneumoniamnist_32", ["no size 32", "pneumoniamnist_64"]),
                                         ("chestmnist", ["multi-label"])])
def test_unknown_or_unsupported_flag_message(name, words):
    with pytest.raises(DatasetError) as err:
        load_dataset(f"medmnist:{name}")
    for w in words:
        assert w in str(err.value)


# --------------------------------------------------------------------------- lookup order
def test_data_dir_before_mirror(fake_flag, isolated_env, tmp_path, monkeypatch):
    body, _ = fake_flag
    put(isolated_env, body)
    put(tmp_path / "mirror", b"not even an npz")  # never read: the data folder comes first
    monkeypatch.setenv("TL_COURSE_MIRROR", str(tmp_path / "mirror"))
    data = load_dataset("medmnist:fakemnist")
    assert data.source.startswith("TL_COURSE_DATA")
    assert data.name == "medmnist:fakemnist"


def test_mirror_then_no_download(fake_flag, tmp_path, monkeypatch, http_server):
    body, set_url = fake_flag
    set_url(http_server.add("fakemnist.npz", body))
    put(tmp_path / "mirror", body)
    monkeypatch.setenv("TL_COURSE_MIRROR", str(tmp_path / "mirror"))
    data = load_dataset("medmnist:fakemnist")
    assert data.source.startswith("TL_COURSE_MIRROR")
    assert http_server.requests == []


def test_wrong_local_file_is_refused_not_replaced(fake_flag, isolated_env):
    body, _ = fake_flag
    path = put(isolated_env, fake_npz(seed=1))  # a valid npz, but not the official bytes
    with pytest.raises(DatasetError, match="not the official fakemnist.npz: sha256"):
        load_dataset("medmnist:fakemnist")
    assert path.read_bytes() != body  # left for the user to look at, never silently used


def test_wrong_mirror_file_is_refused(fake_flag, tmp_path, monkeypatch):
    put(tmp_path / "mirror", fake_npz(seed=2))
    monkeypatch.setenv("TL_COURSE_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(DatasetError, match="TL_COURSE_MIRROR.*Fix the mirror"):
        load_dataset("medmnist:fakemnist")


# --------------------------------------------------------------------------- download
def test_download_good(fake_flag, isolated_env, http_server):
    body, set_url = fake_flag
    set_url(http_server.add("fakemnist.npz", body))
    data = load_dataset("medmnist:fakemnist")
    assert data.source.startswith("download from http://127.0.0.1")
    assert (isolated_env / "medmnist" / "fakemnist.npz").read_bytes() == body
    assert load_dataset("medmnist:fakemnist").source.startswith("TL_COURSE_DATA")  # no second download
    assert len(http_server.requests) == 1


@pytest.mark.parametrize("interrupted", [False, True, "chunked"])
def test_download_corrupt_or_interrupted_leaves_nothing(fake_flag, isolated_env, http_server, interrupted):
    body, set_url = fake_flag
    served = fake_npz(seed=3) if interrupted is False else body
    set_url(http_server.add("fakemnist.npz", served, interrupted=interrupted))
    with pytest.raises(DownloadError):
        load_dataset("medmnist:fakemnist")
    folder = isolated_env / "medmnist"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_download_md5_checked_when_sha256_unknown(fake_flag, isolated_env, http_server, monkeypatch):
    body, set_url = fake_flag
    set_url(http_server.add("fakemnist.npz", fake_npz(seed=4)))
    manifest = json.loads(mm.MANIFEST.read_text())
    manifest["flags"]["fakemnist"]["sizes"]["28"]["sha256"] = None
    mm.MANIFEST.write_text(json.dumps(manifest))
    mm._read_manifest.cache_clear()
    with pytest.raises(DownloadError, match="md5"):
        load_dataset("medmnist:fakemnist")
    assert not (isolated_env / "medmnist" / "fakemnist.npz").exists()


def test_offline_error_names_alternatives(fake_flag, monkeypatch):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    with pytest.raises(DownloadError) as err:
        load_dataset("medmnist:fakemnist")
    assert "TL_COURSE_MIRROR" in str(err.value) and "medmnist" in str(err.value)


# --------------------------------------------------------------------------- safe reading
def test_object_array_npz_is_refused(fake_flag, tmp_path):
    buf = io.BytesIO()
    arrays = {k: v for k, v in np.load(io.BytesIO(fake_npz(0))).items()}
    arrays["train_labels"] = np.array([[1]] * SIZES["train"], dtype=object)
    np.savez(buf, **arrays)
    path = tmp_path / "evil.npz"
    path.write_bytes(buf.getvalue())
    info = mm.medmnist_manifest()["flags"]["fakemnist"]
    with pytest.raises(DatasetError, match="pickle"):
        mm.read_npz(path, info)


def test_wrong_keys_and_sizes_are_refused(fake_flag, tmp_path):
    info = mm.medmnist_manifest()["flags"]["fakemnist"]
    path = tmp_path / "x.npz"
    path.write_bytes(fake_npz(sizes={"train": 12, "val": 4}))
    with pytest.raises(DatasetError, match="test_images"):
        mm.read_npz(path, info)
    path.write_bytes(fake_npz(sizes={"train": 10, "val": 4, "test": 6}))
    with pytest.raises(DatasetError, match="10 train images, the official file has 12"):
        mm.read_npz(path, info)


def test_shapes_dtypes_classes(fake_flag, isolated_env):
    body, _ = fake_flag
    put(isolated_env, body)
    data = load_dataset("medmnist:fakemnist")
    for split, n in SIZES.items():
        ds = getattr(data, split)
        assert ds.samples.shape == (n, 28, 28, 3) and ds.samples.dtype == np.uint8
        assert ds.targets.dtype == np.int64 and ds.targets.shape == (n,)
        assert np.array_equal(ds.samples[..., 0], ds.samples[..., 2])  # grey repeated
    assert data.classes == ["normal", "sick"]
    img, y = data.train[0]
    assert img.size == (28, 28) and img.mode == "RGB" and y in (0, 1)


# --------------------------------------------------------------------------- bundled subset
def test_bundled_subset_is_small_and_stratified():
    entry = mm.medmnist_manifest()["bundled"]["pneumoniamnist"]
    path = mm.BUNDLED_DIR / entry["file"]
    assert path.stat().st_size <= 1_000_000
    assert (mm.BUNDLED_DIR / "PNEUMONIAMNIST_LICENSE.md").is_file()
    data = load_dataset("medmnist:pneumoniamnist", bundled=True)
    full = mm.medmnist_manifest()["flags"]["pneumoniamnist"]["n_samples"]
    official = {"train": (1214, 3494), "val": (135, 389), "test": (234, 390)}
    for split in ("train", "val", "test"):
        ds = getattr(data, split)
        assert ds.samples.shape[1:] == (28, 28, 3)
        counts = np.bincount(ds.targets, minlength=2)
        frac = counts / np.array(official[split])
        assert np.allclose(frac, entry["fraction"], atol=0.01), (split, counts)
        assert len(ds) < full[split]
    assert "bundled stratified subset (1083 train / 120 val / 144 test)" in data.source
    assert any("SUBSET" in n for n in data.notes)
    assert data.name == "medmnist:pneumoniamnist"


def test_bundled_is_the_offline_fallback(monkeypatch, capsys):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    data = load_dataset("medmnist:pneumoniamnist")
    assert data.source.startswith("bundled stratified subset")
    assert "NOT comparable" in capsys.readouterr().out
    with pytest.raises(DownloadError):
        load_dataset("medmnist:pneumoniamnist", fallback=False)


def test_damaged_bundled_subset_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "bundled"
    bad.mkdir()
    (bad / "pneumoniamnist_subset.npz").write_bytes(fake_npz(0))
    monkeypatch.setattr(mm, "BUNDLED_DIR", bad)
    with pytest.raises(DatasetError, match="damaged"):
        load_dataset("medmnist:pneumoniamnist", bundled=True)


def test_no_bundled_subset_for_other_flags():
    with pytest.raises(DatasetError, match="no bundled subset"):
        load_dataset("medmnist:bloodmnist", bundled=True)


# --------------------------------------------------------------------------- the real file
@pytest.mark.skipif(not REAL.is_file(), reason="no /work/shared/data/medmnist/pneumoniamnist.npz")
def test_real_pneumoniamnist(monkeypatch):
    monkeypatch.setenv("TL_COURSE_MIRROR", str(REAL.parent.parent))
    data = load_dataset("medmnist:pneumoniamnist")
    assert data.source.startswith("TL_COURSE_MIRROR")
    assert (len(data.train), len(data.val), len(data.test)) == (4708, 524, 624)
    assert data.train.class_counts() == {"normal": 1214, "pneumonia": 3494}
    assert data.test.class_counts() == {"normal": 234, "pneumonia": 390}
    assert data.train.samples.shape == (4708, 28, 28, 3) and data.train.samples.dtype == np.uint8
    notes = " ".join(data.notes)
    assert "74% of the training images are 'pneumonia'" in notes
    assert "18 extra copies inside train, 8 val" in notes


def test_larger_size_uses_its_own_file_and_no_bundled_fallback(monkeypatch):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    with pytest.raises(DownloadError, match="pneumoniamnist_64.npz"):
        load_dataset("medmnist:pneumoniamnist_64")
    ok, how = mm.medmnist_available("pneumoniamnist_64")
    assert not ok and "TL_COURSE_OFFLINE" in how
    assert mm.medmnist_available("pneumoniamnist")[0]  # the bundled subset
