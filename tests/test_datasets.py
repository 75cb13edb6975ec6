"""tl_course.data: the registry, digits/digits_m, folder:<path>, hymenoptera (mirror, download)."""
from __future__ import annotations

import hashlib
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tl_course.data import (DatasetError, ImageDataset, dataset_table, load_dataset, load_dataset_or_fallback,
                            register_dataset)
from tl_course.data import digits, hymenoptera, registry
from tl_course.data.folder import load_image_folder
from tl_course.data.manifest import MANIFESTS, read_manifest, verify_tree
from tl_course.download import DownloadError


# --------------------------------------------------------------------------- registry
def test_register_dataset_names_and_prefixes(monkeypatch, image_folder):
    monkeypatch.setattr(registry, "DATASETS", dict(registry.DATASETS))
    monkeypatch.setattr(registry, "PREFIXES", dict(registry.PREFIXES))
    calls = []

    @register_dataset("toy", "a toy", "memory")
    def toy(**kwargs):
        calls.append(("toy", kwargs))
        return "toy splits"

    @register_dataset("shout:", "a prefix loader", "memory")
    def shout(rest, **kwargs):
        calls.append(("shout", rest, kwargs))
        return rest.upper()

    assert load_dataset("toy", seed=1) == "toy splits"
    assert load_dataset("shout:hello", seed=2) == "HELLO"
    assert calls == [("toy", {"seed": 1}), ("shout", "hello", {"seed": 2})]
    assert "toy" in registry.DATASETS and "shout:" not in registry.DATASETS
    assert "folder:" in registry.PREFIXES
    with pytest.raises(DatasetError, match="'shout:<...>'"):
        load_dataset("nope")


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(DatasetError, match="Unknown dataset 'nope'") as info:
        load_dataset("nope")
    assert "digits_m" in str(info.value) and "'folder:<...>'" in str(info.value)


def test_dataset_table_rows():
    rows = {r["name"]: r for r in dataset_table()}
    assert {"digits", "digits_m", "hymenoptera"} <= set(rows)
    for row in rows.values():
        assert set(row) == {"name", "description", "where", "available offline now", "how"}
    assert rows["digits"]["available offline now"] is True
    assert rows["hymenoptera"]["available offline now"] is False  # empty data dir, no mirror


def test_dataset_table_offline_hymenoptera_names_the_mirror(monkeypatch):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    row = {r["name"]: r for r in dataset_table()}["hymenoptera"]
    assert row["available offline now"] is False
    assert "TL_COURSE_MIRROR" in row["how"]


# --------------------------------------------------------------------------- digits
def test_digits_shapes_and_balance(digits_cache):
    data = load_dataset("digits")
    assert data.classes == [str(i) for i in range(10)]
    assert (len(data.train), len(data.val)) == (1347, 450)
    assert data.train.samples.shape == (1347, 32, 32, 3) and data.train.samples.dtype == np.uint8
    assert data.val.samples.shape == (450, 32, 32, 3)
    img, label = data.train[0]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (32, 32)
    assert 0 <= label < 10
    counts = np.array(list(data.train.class_counts().values()))
    assert counts.sum() == 1347 and counts.min() >= 120 and counts.max() <= 150  # stratified
    val_counts = np.array(list(data.val.class_counts().values()))
    assert val_counts.min() >= 40 and val_counts.max() <= 50
    assert data.train.paths is None
    assert "digits" in data.summary() and "1347" in data.summary()


def test_digits_generation_is_deterministic(digits_cache, isolated_env):
    cached = load_dataset("digits")
    shutil.rmtree(isolated_env / "generated")  # regenerate from scratch
    fresh = load_dataset("digits")
    assert (isolated_env / "generated" / "digits-v1-32.npz").is_file()
    assert np.array_equal(cached.train.samples, fresh.train.samples)
    assert np.array_equal(cached.val.targets, fresh.val.targets)
    assert cached.train.fingerprint() == fresh.train.fingerprint()


def test_digits_m_differs_from_digits_with_same_labels(digits_cache):
    digits, digits_m = load_dataset("digits"), load_dataset("digits_m")
    assert digits_m.name == "digits_m"
    assert digits_m.train.samples.shape == digits.train.samples.shape
    assert np.array_equal(digits_m.train.targets, digits.train.targets)
    assert np.array_equal(digits_m.val.targets, digits.val.targets)
    assert not np.array_equal(digits_m.train.samples, digits.train.samples)
    # colour: digits are gray (R == G == B), digits_m's photo patches are not
    assert np.all(digits.train.samples[..., 0] == digits.train.samples[..., 1])
    assert np.mean(digits_m.train.samples[..., 0] != digits_m.train.samples[..., 1]) > 0.3
    again = load_dataset("digits_m")
    assert np.array_equal(again.val.samples, digits_m.val.samples)


def test_blend_onto_photos_is_seeded():
    black = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    a, b = digits.blend_onto_photos(black, seed=3), digits.blend_onto_photos(black, seed=3)
    c = digits.blend_onto_photos(black, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == black.shape and a.dtype == np.uint8


def test_corrupt_generated_cache_is_rebuilt(digits_cache):
    good = load_dataset("digits")
    path = digits_cache / "digits-v1-32.npz"
    path.write_bytes(path.read_bytes()[:1000])  # truncated npz
    data = load_dataset("digits")
    assert np.array_equal(data.train.samples, good.train.samples)
    assert sorted(p.name for p in digits_cache.iterdir()) == ["digits-v1-32.npz", "digits_m-v1-32.npz"]


# --------------------------------------------------------------------------- ImageDataset
def test_image_dataset_basics(tmp_path, image_folder):
    root = image_folder({"a": 2, "b": 3})
    paths = sorted(root.rglob("*.png"))
    ds = ImageDataset(paths, [0, 0, 1, 1, 1], ["a", "b"])
    assert len(ds) == 5 and ds.class_counts() == {"a": 2, "b": 3}
    assert ds.paths == paths
    sub = ds.subset([4, 0])
    assert sub.paths == [paths[4], paths[0]] and sub.targets.tolist() == [1, 0]
    t = ds.with_transform(lambda im: im.size)
    assert t[0] == ((16, 16), 0) and ds.transform is None
    with pytest.raises(DatasetError, match="5 samples but 4 labels"):
        ImageDataset(paths, [0, 0, 1, 1], ["a", "b"])


# --------------------------------------------------------------------------- folder:<path>
def test_folder_with_train_and_val(image_folder):
    root = image_folder({"cats": 3, "dogs": 4}, name="pets/train")
    image_folder({"cats": 2, "dogs": 2}, name="pets/val")
    data = load_dataset(f"folder:{root.parent}")
    assert data.classes == ["cats", "dogs"]
    assert data.train.class_counts() == {"cats": 3, "dogs": 4}
    assert data.val.class_counts() == {"cats": 2, "dogs": 2}
    assert "train/ and val/" in data.source
    img, label = data.val[3]
    assert img.mode == "RGB" and label == 1


def test_folder_without_split_is_stratified_and_deterministic(image_folder):
    root = image_folder({"a": 8, "b": 8, "c": 4})
    data = load_image_folder(root, val_fraction=0.25)
    again = load_dataset(f"folder:{root}")
    assert len(data.train) + len(data.val) == 20
    assert len(data.val) == 5
    assert all(n >= 1 for n in data.train.class_counts().values())
    assert all(n >= 1 for n in data.val.class_counts().values())
    assert data.train.paths == again.train.paths and data.val.paths == again.val.paths
    assert not set(data.train.paths) & set(data.val.paths)
    assert any("stratified split" in n for n in data.notes)
    other = load_image_folder(root, seed=1)
    assert other.val.paths != data.val.paths  # the seed changes the split


def test_folder_small_classes_get_one_val_image_each(image_folder):
    root = image_folder({"a": 2, "b": 2, "c": 2})
    data = load_image_folder(root, val_fraction=0.1)
    assert data.val.class_counts() == {"a": 1, "b": 1, "c": 1}
    assert data.train.class_counts() == {"a": 1, "b": 1, "c": 1}


def test_folder_tilde_path_expands(image_folder, monkeypatch, tmp_path):
    image_folder({"a": 2, "b": 2}, name="home/photos")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = load_dataset("folder:~/photos")
    assert data.classes == ["a", "b"]


def test_folder_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="Folder not found") as info:
        load_dataset(f"folder:{tmp_path / 'nope'}")
    assert "nope" in str(info.value)


def test_folder_is_a_file(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="is a file"):
        load_image_folder(tmp_path / "x.jpg")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class subfolders"):
        load_image_folder(tmp_path / "empty")


def test_loose_images_without_class_folders(tmp_path, make_img):
    for i in range(3):
        make_img(tmp_path / "loose" / f"{i}.png", seed=i)
    with pytest.raises(DatasetError, match="3 loose image"):
        load_image_folder(tmp_path / "loose")


def test_empty_class_folder(image_folder):
    root = image_folder({"a": 3, "b": 3})
    (root / "c").mkdir()
    with pytest.raises(DatasetError, match=r"Class folder .*c contains no images \(it is empty\)"):
        load_image_folder(root)


def test_class_folder_with_only_non_images(image_folder):
    root = image_folder({"a": 3, "b": 3})
    (root / "c").mkdir()
    (root / "c" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"contains no images \(\.txt\)"):
        load_image_folder(root)


def test_one_class_only(image_folder):
    root = image_folder({"only": 4})
    with pytest.raises(DatasetError, match="only one class"):
        load_image_folder(root)


def test_class_with_a_single_image(image_folder):
    root = image_folder({"a": 4, "b": 1})
    with pytest.raises(DatasetError, match=r"\['b'\].*fewer than 2 images"):
        load_image_folder(root)


def test_non_image_files_are_ignored_and_reported(image_folder):
    root = image_folder({"a": 3, "b": 3})
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "b" / "Thumbs.db").write_bytes(b"\0" * 10)
    (root / "b" / ".DS_Store").write_bytes(b"\0" * 10)  # hidden: silently skipped
    data = load_image_folder(root)
    assert len(data.train) + len(data.val) == 6
    skipped = {Path(s["path"]).name: s["reason"] for s in data.skipped}
    assert set(skipped) == {"notes.txt", "Thumbs.db"}  # each named, with its reason
    assert "not an image" in skipped["notes.txt"]
    assert sum("notes.txt" in n or "Thumbs.db" in n for n in data.notes) == 2


def test_corrupt_image_is_skipped_with_a_warning(image_folder):
    root = image_folder({"a": 4, "b": 4}, ext=".jpg")
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.warns(UserWarning, match="1 file\\(s\\) skipped"):
        data = load_image_folder(root)
    assert len(data.train) + len(data.val) == 8
    assert all("broken" not in p.name for p in data.train.paths + data.val.paths)
    assert any("broken.jpg" in n for n in data.notes)


def test_every_skipped_file_is_warned_with_its_reason(image_folder):
    """Seven skipped files (three not images, four unreadable): the warning names all seven, each
    with its reason, and ``skipped`` says which kind each one is."""
    root = image_folder({"a": 4, "b": 4})
    non_images = ["notes.txt", "Thumbs.db", "README"]
    for name in non_images:
        (root / "a" / name).write_bytes(b"x")
    corrupt = [f"broken{i}.png" for i in range(4)]
    for name in corrupt:
        (root / "b" / name).write_bytes(b"garbage")
    with pytest.warns(UserWarning) as record:
        data = load_image_folder(root)
    message = "\n".join(str(w.message) for w in record)
    assert "7 file(s) skipped" in message
    for name in non_images:
        assert f"{name}: not an image file" in message
    for name in corrupt:
        assert f"{name} is not an image PIL can read" in message
    kinds = sorted(s["kind"] for s in data.skipped)
    assert kinds == ["not an image"] * 3 + ["unreadable"] * 4


def test_hidden_subfolders_and_appledouble_files_are_not_scanned(image_folder, make_img):
    root = image_folder({"a": 3, "b": 3})
    make_img(root / "a" / ".thumbnails" / "thumb.png", seed=50)  # a valid image, but hidden
    (root / "b" / "._b_000.png").write_bytes(b"\x00\x05\x16\x07AppleDouble junk")  # macOS metadata
    (root / "b" / ".cache").mkdir()
    (root / "b" / ".cache" / "notes.txt").write_text("hidden")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: hidden files are not the user's data
        data = load_image_folder(root)
    names = {p.name for p in data.train.paths + data.val.paths}
    assert names == {f"{c}_{i:03d}.png" for c in "ab" for i in range(3)}
    assert data.skipped == []


def test_class_with_only_corrupt_images(image_folder):
    root = image_folder({"a": 3})
    (root / "b").mkdir()
    for i in range(2):
        (root / "b" / f"{i}.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning):
        with pytest.raises(DatasetError, match="No readable image left in class folder"):
            load_image_folder(root)


def test_nested_images_and_odd_formats_are_loaded(image_folder, make_img):
    root = image_folder({"a": 2, "b": 2})
    make_img(root / "a" / "sub" / "deep.png", seed=99)
    Image.new("P", (8, 8)).save(root / "b" / "pal.gif")
    Image.new("RGBA", (8, 8), (1, 2, 3, 0)).save(root / "b" / "alpha.PNG")
    data = load_image_folder(root)
    assert data.train.class_counts()["a"] + data.val.class_counts()["a"] == 3
    paths = data.train.paths + data.val.paths
    assert {"deep.png", "pal.gif", "alpha.PNG"} <= {p.name for p in paths}
    assert all(data.train[i][0].mode == "RGB" for i in range(len(data.train)))


def test_train_val_class_mismatch(image_folder, tmp_path):
    image_folder({"cats": 2, "dogs": 2}, name="pets/train")
    image_folder({"cats": 2, "birds": 2}, name="pets/val")
    with pytest.raises(DatasetError, match="different class folders") as info:
        load_dataset(f"folder:{tmp_path / 'pets'}")
    assert "['cats', 'dogs'] vs ['birds', 'cats']" in str(info.value)


# --------------------------------------------------------------------------- fingerprint
def test_fingerprint_changes_with_image_bytes(image_folder, make_img):
    root = image_folder({"a": 3, "b": 3})
    fp = load_image_folder(root).train.fingerprint()
    assert fp == load_image_folder(root).train.fingerprint()
    data = load_image_folder(root)
    victim = data.train.paths[0]
    make_img(victim, colour=(0, 0, 0), seed=1234)  # another image, same name
    assert load_image_folder(root).train.fingerprint() != fp


def test_fingerprint_changes_with_same_size_rewrite(image_folder):
    """Same file size, rewritten right away (mtime may not tick): the content hash must change."""
    root = image_folder({"a": 3, "b": 3}, ext=".bmp")  # BMP: size depends only on dimensions
    data = load_image_folder(root)
    fp = data.train.fingerprint()
    victim = data.train.paths[0]
    before = victim.stat()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(victim)
    assert victim.stat().st_size == before.st_size
    assert load_image_folder(root).train.fingerprint() != fp


def test_fingerprint_changes_when_mtime_does_not_tick(image_folder):
    """A filesystem with coarse timestamps (1-2 s on ext3, HFS+, FAT) can give an edited file the
    same size and mtime: a recently modified file must still be hashed again."""
    root = image_folder({"a": 3, "b": 3}, ext=".bmp")
    data = load_image_folder(root)
    fp = data.train.fingerprint()
    victim = data.train.paths[0]
    before = victim.stat()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(victim)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))  # same second, as on ext3
    assert victim.stat().st_size == before.st_size
    assert load_image_folder(root).train.fingerprint() != fp


def test_fingerprint_changes_with_a_label(digits_cache):
    data = load_dataset("digits")
    ds = data.val.subset(range(50))
    fp = ds.fingerprint()
    relabelled = ImageDataset(ds.samples, ds.targets.copy(), ds.classes)
    assert relabelled.fingerprint() == fp
    relabelled.targets[7] = (relabelled.targets[7] + 1) % 10
    relabelled._fingerprint = None
    assert relabelled.fingerprint() != fp


def test_fingerprint_changes_with_a_label_in_a_folder(image_folder):
    root = image_folder({"a": 3, "b": 3})
    ds = load_image_folder(root).train
    swapped = ImageDataset(ds.paths, 1 - ds.targets, ds.classes)
    assert swapped.fingerprint() != ds.fingerprint()
    reordered = ds.subset(list(range(len(ds)))[::-1])
    assert reordered.fingerprint() != ds.fingerprint()


def test_fingerprint_changes_with_in_memory_pixels(digits_cache):
    ds = load_dataset("digits").val.subset(range(20))
    fp = ds.fingerprint()
    changed = ImageDataset(ds.samples.copy(), ds.targets, ds.classes)
    changed.samples[3, 0, 0, 0] ^= 1
    assert changed.fingerprint() != fp


# --------------------------------------------------------------------------- hymenoptera
def _fake_hymenoptera(root: Path, make_img) -> Path:
    """A tiny tree shaped like hymenoptera_data (with a GIF and a name with a space)."""
    tree = root / "hymenoptera_data"
    seed = 0
    for split in ("train", "val"):
        for k, cls in enumerate(("ants", "bees")):
            for i in range(3):
                seed += 1
                make_img(tree / split / cls / f"{cls} {i}.jpg", colour=(200 * k, 100, 50), seed=seed)
    Image.new("P", (8, 8), 3).save(tree / "train" / "ants" / "imageNotFound.gif")
    return tree


def _write_manifest(tree: Path, path: Path) -> Path:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(tree.parent).as_posix()}"
             for p in sorted(tree.rglob("*")) if p.is_file()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def fake_manifest(tmp_path, make_img, monkeypatch):
    """A fake hymenoptera tree under tmp_path/src and a manifest of it, patched in."""
    tree = _fake_hymenoptera(tmp_path / "src", make_img)
    (tmp_path / "manifests").mkdir()
    _write_manifest(tree, tmp_path / "manifests" / "hymenoptera_data.sha256")
    monkeypatch.setattr(hymenoptera, "MANIFESTS", tmp_path / "manifests")
    monkeypatch.setattr(hymenoptera, "HYMENOPTERA_URL", "http://127.0.0.1:9/unused.zip")
    return tree


def _manifest() -> dict[str, str]:
    return read_manifest(hymenoptera.MANIFESTS / "hymenoptera_data.sha256")


def test_real_manifest_lists_the_official_set():
    manifest = read_manifest(MANIFESTS / "hymenoptera_data.sha256")
    assert len(manifest) == 398
    assert "hymenoptera_data/train/ants/ant photos.jpg" in manifest
    assert "hymenoptera_data/train/ants/imageNotFound.gif" in manifest
    assert all(len(d) == 64 for d in manifest.values())


def test_hymenoptera_from_the_real_mirror(mirror_root, monkeypatch, isolated_env):
    monkeypatch.setenv("TL_COURSE_MIRROR", str(mirror_root))
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    data = load_dataset("hymenoptera")
    assert data.name == "hymenoptera"
    assert data.classes == ["ants", "bees"]
    assert (len(data.train), len(data.val)) == (245, 153)
    assert data.train.class_counts() == {"ants": 124, "bees": 121}
    assert data.val.class_counts() == {"ants": 70, "bees": 83}
    assert "TL_COURSE_MIRROR" in data.source
    names = {p.name for p in data.train.paths}
    assert {"imageNotFound.gif", "ant photos.jpg", "formica.jpeg"} <= names
    gif = data.train.paths.index(next(p for p in data.train.paths if p.suffix == ".gif"))
    img, label = data.train[gif]
    assert img.mode == "RGB" and data.classes[label] == "ants"
    assert not (isolated_env / "hymenoptera_data").exists()  # the mirror is used in place
    assert {r["name"]: r for r in dataset_table()}["hymenoptera"]["available offline now"]


def test_hymenoptera_from_fake_mirror(tmp_path, fake_manifest, monkeypatch):
    monkeypatch.setenv("TL_COURSE_MIRROR", str(fake_manifest.parent))
    data = load_dataset("hymenoptera")
    assert (len(data.train), len(data.val)) == (7, 6)
    assert "ants 0.jpg" in {p.name for p in data.train.paths}


def test_tampered_mirror_is_refused(tmp_path, fake_manifest, monkeypatch, make_img):
    mirror = tmp_path / "mirror"
    shutil.copytree(fake_manifest, mirror / "hymenoptera_data")
    make_img(mirror / "hymenoptera_data" / "val" / "bees" / "bees 1.jpg", colour=(0, 0, 0), seed=777)
    monkeypatch.setenv("TL_COURSE_MIRROR", str(mirror))
    with pytest.raises(DatasetError, match="not the official set") as info:
        load_dataset("hymenoptera")
    assert "changed hymenoptera_data/val/bees/bees 1.jpg" in str(info.value)
    assert "TL_COURSE_MIRROR" in str(info.value)


def test_mirror_with_a_missing_file_is_refused(tmp_path, fake_manifest, monkeypatch):
    mirror = tmp_path / "mirror"
    shutil.copytree(fake_manifest, mirror / "hymenoptera_data")
    (mirror / "hymenoptera_data" / "train" / "ants" / "imageNotFound.gif").unlink()
    monkeypatch.setenv("TL_COURSE_MIRROR", str(mirror))
    with pytest.raises(DatasetError, match="missing hymenoptera_data/train/ants/imageNotFound.gif"):
        load_dataset("hymenoptera")


def test_verify_tree_reports_every_problem(fake_manifest):
    manifest = _manifest()
    assert verify_tree(fake_manifest, manifest) == []
    (fake_manifest / "train" / "bees" / "bees 2.jpg").write_bytes(b"changed")
    (fake_manifest / "val" / "ants" / "ants 0.jpg").unlink()
    assert sorted(verify_tree(fake_manifest, manifest)) == [
        "changed hymenoptera_data/train/bees/bees 2.jpg", "missing hymenoptera_data/val/ants/ants 0.jpg"]


def test_verify_tree_reports_extra_files_and_ignores_hidden_ones(fake_manifest):
    manifest = _manifest()
    (fake_manifest / "train" / "ants" / "stray.jpg").write_bytes(b"not in the manifest")
    (fake_manifest / "notes.txt").write_text("x")
    (fake_manifest / ".DS_Store").write_bytes(b"hidden")
    (fake_manifest / "train" / ".cache").mkdir()
    (fake_manifest / "train" / ".cache" / "thumb.jpg").write_bytes(b"hidden folder")
    assert sorted(verify_tree(fake_manifest, manifest)) == [
        "extra hymenoptera_data/notes.txt", "extra hymenoptera_data/train/ants/stray.jpg"]


def test_mirror_with_an_extra_file_is_refused(tmp_path, fake_manifest, monkeypatch, make_img):
    mirror = tmp_path / "mirror"
    shutil.copytree(fake_manifest, mirror / "hymenoptera_data")
    make_img(mirror / "hymenoptera_data" / "train" / "bees" / "intruder.jpg", seed=5)
    monkeypatch.setenv("TL_COURSE_MIRROR", str(mirror))
    with pytest.raises(DatasetError, match="extra hymenoptera_data/train/bees/intruder.jpg"):
        load_dataset("hymenoptera")


def test_mirror_with_an_extra_class_folder_is_refused(tmp_path, fake_manifest, monkeypatch, make_img):
    """An extra class (wasps/) would silently make a 3-class problem: the copy is refused, naming it."""
    mirror = tmp_path / "mirror"
    shutil.copytree(fake_manifest, mirror / "hymenoptera_data")
    for i in range(3):
        make_img(mirror / "hymenoptera_data" / "train" / "wasps" / f"wasp {i}.jpg", seed=60 + i)
    monkeypatch.setenv("TL_COURSE_MIRROR", str(mirror))
    with pytest.raises(DatasetError, match="extra hymenoptera_data/train/wasps/wasp 0.jpg"):
        load_dataset("hymenoptera")


def _zip_tree(tree: Path, archive: Path) -> bytes:
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(tree.rglob("*")):
            zf.write(p, p.relative_to(tree.parent).as_posix())
    return archive.read_bytes()


def test_hymenoptera_download_and_extract(tmp_path, fake_manifest, http_server, monkeypatch,
                                          isolated_env):
    url = http_server.add("hymenoptera_data.zip", _zip_tree(fake_manifest, tmp_path / "h.zip"))
    monkeypatch.setattr(hymenoptera, "HYMENOPTERA_URL", url)
    data = load_dataset("hymenoptera")
    assert (len(data.train), len(data.val)) == (7, 6)
    assert data.classes == ["ants", "bees"]
    assert data.source.startswith("download from") and url in data.source
    assert (isolated_env / "hymenoptera_data" / "train" / "ants" / "ants 0.jpg").is_file()
    assert not (isolated_env / ".hymenoptera_extract").exists()
    assert sorted(p.name for p in isolated_env.iterdir()) == ["downloads", "hymenoptera_data"]
    # second load: found under TL_COURSE_DATA, no second request
    again = load_dataset("hymenoptera")
    assert len(http_server.requests) == 1 and "TL_COURSE_DATA" in again.source


def test_hymenoptera_download_not_matching_manifest(tmp_path, fake_manifest, http_server,
                                                    monkeypatch, isolated_env, make_img):
    other = _fake_hymenoptera(tmp_path / "other", make_img)
    make_img(other / "val" / "ants" / "ants 2.jpg", colour=(1, 1, 1), seed=4242)
    url = http_server.add("h.zip", _zip_tree(other, tmp_path / "h.zip"))
    monkeypatch.setattr(hymenoptera, "HYMENOPTERA_URL", url)
    with pytest.raises(DatasetError, match="not the official hymenoptera set"):
        load_dataset("hymenoptera")
    assert not (isolated_env / "hymenoptera_data").exists()
    assert not (isolated_env / ".hymenoptera_extract").exists()
    assert list((isolated_env / "downloads").iterdir()) == []  # bad archive deleted


def test_hymenoptera_interrupted_download_leaves_nothing(tmp_path, fake_manifest, http_server,
                                                         monkeypatch, isolated_env):
    url = http_server.add("h.zip", _zip_tree(fake_manifest, tmp_path / "h.zip"), interrupted=True)
    monkeypatch.setattr(hymenoptera, "HYMENOPTERA_URL", url)
    with pytest.raises(DownloadError, match="interrupted"):
        load_dataset("hymenoptera")
    leftovers = [p for p in isolated_env.rglob("*") if p.is_file()]
    assert leftovers == []


def test_hymenoptera_download_cut_short_without_a_length_is_refused_and_deleted(
        tmp_path, fake_manifest, http_server, monkeypatch, isolated_env):
    """Without Content-Length, a connection closed half-way looks like a complete download: the
    archive is then checked member by member against the manifest, refused and deleted."""
    url = http_server.add("h.zip", _zip_tree(fake_manifest, tmp_path / "h.zip"), interrupted="no-length")
    monkeypatch.setattr(hymenoptera, "HYMENOPTERA_URL", url)
    with pytest.raises(DatasetError, match="not the official hymenoptera set.*deleted"):
        load_dataset("hymenoptera")
    assert [p for p in isolated_env.rglob("*") if p.is_file()] == []  # no archive kept for the next run


def test_a_killed_extraction_is_cleaned_on_the_next_run(tmp_path, fake_manifest, http_server,
                                                         monkeypatch, isolated_env):
    """A kill during extraction leaves a temporary folder (the real set: about 850 MB): the next
    run removes it (its owner process is gone) and leaves only the verified tree."""
    orphan = isolated_env / "..hymenoptera_extract-k1ll3d"
    (orphan / "hymenoptera_data" / "train").mkdir(parents=True)
    (orphan / "hymenoptera_data" / "train" / "big.jpg").write_bytes(b"\0" * 1000)
    (orphan / ".tl-course-extracting").write_text("999999999")  # a process id that does not run
    url = http_server.add("h.zip", _zip_tree(fake_manifest, tmp_path / "h.zip"))
    monkeypatch.setattr(hymenoptera, "HYMENOPTERA_URL", url)
    load_dataset("hymenoptera")
    assert sorted(p.name for p in isolated_env.iterdir()) == ["downloads", "hymenoptera_data"]


def test_hymenoptera_offline_without_mirror_names_the_alternatives(monkeypatch):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    with pytest.raises((DownloadError, DatasetError)) as info:
        load_dataset("hymenoptera")
    assert "TL_COURSE_MIRROR" in str(info.value)
    assert "digits_m" in str(info.value)


def test_fallback_to_digits_m_prints_a_banner(digits_cache, monkeypatch, capsys):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    data = load_dataset_or_fallback("hymenoptera", seed=0)
    out = capsys.readouterr().out
    assert data.name == "digits_m"
    assert "DATASET FALLBACK" in out and "'hymenoptera'" in out and "'digits_m'" in out
    assert any("fallback for 'hymenoptera'" in n for n in data.notes)


def test_fallback_not_used_when_the_dataset_loads(image_folder, capsys):
    root = image_folder({"a": 2, "b": 2})
    data = load_dataset_or_fallback(f"folder:{root}")
    assert data.classes == ["a", "b"]
    assert "FALLBACK" not in capsys.readouterr().out


def test_fallback_for_an_unknown_name(digits_cache, capsys):
    data = load_dataset_or_fallback("no_such_dataset", fallback="digits")
    assert data.name == "digits"
    assert "DATASET FALLBACK" in capsys.readouterr().out


def test_hymenoptera_under_data_dir_is_preferred(tmp_path, fake_manifest, isolated_env, monkeypatch):
    shutil.copytree(fake_manifest, isolated_env / "hymenoptera_data")
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    data = load_dataset("hymenoptera")
    assert "TL_COURSE_DATA" in data.source
    assert os.path.commonpath([data.train.paths[0], isolated_env]) == str(isolated_env)


def test_failed_generation_leaves_no_cache(isolated_env):
    def build():
        raise MemoryError("simulated failure while generating")

    with pytest.raises(MemoryError):
        digits._cached_arrays("broken-v1", build)
    folder = isolated_env / "generated"
    assert not folder.exists() or list(folder.iterdir()) == []
    arrays = digits._cached_arrays("ok-v1", lambda: {"x": np.arange(3)})
    assert arrays["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in folder.iterdir()) == ["ok-v1.npz"]  # no temporary file left


def test_fallback_per_class_shrinks_only_the_stand_in(digits_cache, image_folder, monkeypatch, capsys):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    small = load_dataset_or_fallback("hymenoptera", fallback_per_class=(3, 2))
    assert small.name == "digits_m"
    assert set(small.train.class_counts().values()) == {3} and set(small.val.class_counts().values()) == {2}
    assert any("subset" in n for n in small.notes) and any("fallback for" in n for n in small.notes)
    root = image_folder({"a": 6, "b": 6})
    whole = load_dataset_or_fallback(f"folder:{root}", fallback_per_class=(1, 1))  # the real one: untouched
    assert len(whole.train) + len(whole.val) == 12


def test_per_class_is_a_reproducible_stratified_draw(digits_cache):
    data = load_dataset("digits")
    a, b, c = data.per_class(5), data.per_class(5), data.per_class(5, seed=1)
    assert set(a.train.class_counts().values()) == {5}
    assert len(a.val) == len(data.val)  # val=None keeps the whole validation split
    assert a.train.fingerprint() == b.train.fingerprint() != c.train.fingerprint()
    assert a.train.fingerprint() != data.train.fingerprint()  # its own feature cache, never the full set's
    assert data.notes == [] or not any("subset" in n for n in data.notes)  # the original is unchanged
    big = data.per_class(10_000)  # more than a class has: all of that class
    assert len(big.train) == len(data.train)
    with pytest.raises(ValueError, match="at least 1"):
        data.per_class(0)


# --------------------------------------------------------------------------- types
def test_content_hash_follows_the_bytes(tmp_path):
    import time

    from tl_course.data.types import content_hash

    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    assert content_hash(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"two")  # same size, rewritten at once
    assert content_hash(path) == hashlib.sha256(b"two").hexdigest()
    old = time.time() - 60
    os.utime(path, (old, old))
    assert content_hash(path) == content_hash(path) == hashlib.sha256(b"two").hexdigest()  # memoized
    path.write_bytes(b"six")
    os.utime(path, (old, old))  # same size and mtime: the change time still differs
    assert content_hash(path) == hashlib.sha256(b"six").hexdigest()
    assert content_hash(path) == hashlib.sha256(b"six").hexdigest()  # memoized again
    other = tmp_path / "other.bin"  # a replacement with the same size and mtime (another inode)
    other.write_bytes(b"ten")
    os.utime(other, (old, old))
    os.replace(other, path)
    assert content_hash(path) == hashlib.sha256(b"ten").hexdigest()


def test_dataset_splits_test_split_is_optional(digits_cache):
    import dataclasses

    data = load_dataset("digits")
    assert data.test is None
    with_test = dataclasses.replace(data, test=data.val.subset(range(10)))
    assert len(with_test.test) == 10 and "test" in with_test.summary()
