"""tl_course.cache: atomic writes, cache paths, checksummed save/load that never trusts a bad file."""
from __future__ import annotations

import pickle

import pytest
import torch

from tl_course import cache


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_atomically_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "x.txt"
    assert cache.write_atomically(path, lambda tmp: tmp.write_text("one")) == path
    cache.write_atomically(path, lambda tmp: tmp.write_text("two"))
    assert path.read_text() == "two" and _files(path.parent) == ["x.txt"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_write_atomically_leaves_no_temp_file_on_failure(tmp_path, error):
    path = tmp_path / "model.pt"
    path.write_text("old")

    def fail(tmp):
        tmp.write_text("half written")
        raise error

    with pytest.raises(type(error)):
        cache.write_atomically(path, fail)
    assert _files(tmp_path) == ["model.pt"] and path.read_text() == "old"  # untouched, no temporary file
    with pytest.raises(type(error)):
        cache.write_atomically(tmp_path / "new.pt", fail)
    assert _files(tmp_path) == ["model.pt"]


def test_write_text_and_json(tmp_path):
    cache.write_text(tmp_path / "a.txt", "hello")
    cache.write_json(tmp_path / "m.json", {"acc": 0.5})
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert '"acc": 0.5' in (tmp_path / "m.json").read_text()


def test_cache_path_depends_on_every_part_and_the_version(isolated_env, monkeypatch):
    p = cache.cache_path("features", "efficientnet_lite0[:3]", "a", 1)
    assert p.parent == isolated_env / "features" and p.suffix == ".pt"
    assert p.name.startswith("efficientnet_lite0")
    assert p == cache.cache_path("features", "efficientnet_lite0[:3]", "a", 1)
    assert p != cache.cache_path("features", "efficientnet_lite0[:3]", "a", 2)
    assert cache.cache_path("x", "folder:/a b/c", 1).name.count("/") == 0
    assert cache.cache_path("x", "n", 1, suffix=".npz").suffix == ".npz"
    monkeypatch.setattr(cache, "VERSION", cache.VERSION + "-next")
    assert cache.cache_path("features", "efficientnet_lite0[:3]", "a", 1) != p


def _blob():
    return {"features": torch.randn(4, 3), "labels": torch.tensor([0, 1, 0, 1]), "name": "x",
            "nested": [1, 2.5, (torch.zeros(2), "y")]}


def test_save_load_roundtrip(tmp_path):
    blob = _blob()
    path = cache.save(blob, tmp_path / "c" / "blob.pt")
    back = cache.load(path)
    assert torch.equal(back["features"], blob["features"]) and torch.equal(back["labels"], blob["labels"])
    assert back["name"] == "x" and back["nested"][:2] == [1, 2.5] and back["nested"][2][1] == "y"
    assert cache.load(path, check=lambda b: b["labels"].shape[0] == 4) is not None
    assert torch.load(path, weights_only=True)["format"].startswith("tl_course.cache/")
    assert cache.load(tmp_path / "missing.pt") is None


def test_altered_bytes_give_none_and_the_file_is_deleted(tmp_path):
    path = cache.save(_blob(), tmp_path / "blob.pt")
    payload = torch.load(path, weights_only=True)
    payload["data"]["features"][0, 0] += 1.0  # the checksum no longer matches
    torch.save(payload, path)
    assert cache.load(path) is None and not path.exists()
    blob = _blob()
    path = cache.save(blob, tmp_path / "blob.pt")
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(blob["features"].numpy().tobytes())  # the tensor's stored bytes
    assert at > 0
    raw[at + 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert cache.load(path) is None and not path.exists()
    path.write_bytes(b"")  # empty / truncated
    assert cache.load(path) is None and not path.exists()


def test_a_rejecting_or_raising_check_gives_none(tmp_path):
    path = cache.save(_blob(), tmp_path / "blob.pt")
    assert cache.load(path, check=lambda b: b["labels"].shape[0] == 99) is None and not path.exists()
    path = cache.save(_blob(), tmp_path / "blob.pt")
    assert cache.load(path, check=lambda b: b["no such key"]) is None and not path.exists()


class Foreign:
    def __reduce__(self):  # unpickling would run code
        return (print, ("pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_foreign_files_give_none(tmp_path, capsys):
    path = tmp_path / "foreign.pt"
    torch.save({"features": torch.zeros(2)}, path)  # plain torch file, not written by cache.save
    assert cache.load(path) is None and not path.exists()
    path.write_bytes(pickle.dumps(Foreign()))
    assert cache.load(path) is None and not path.exists()
    torch.save({"format": "tl_course.cache/2", "sha256": "0", "data": Foreign()}, path)
    assert cache.load(path) is None and not path.exists()
    assert "pwned" not in capsys.readouterr().out  # nothing was unpickled


def test_checksum_sees_dtype_shape_and_structure():
    a = torch.arange(4, dtype=torch.float32)
    assert cache.checksum({"a": a}) == cache.checksum({"a": a.clone()})
    assert cache.checksum({"a": a}) != cache.checksum({"a": a.double()})
    assert cache.checksum({"a": a}) != cache.checksum({"a": a.reshape(2, 2)})
    assert cache.checksum([1, 2]) != cache.checksum((1, 2))
    assert cache.checksum({"a": 1}) != cache.checksum({"b": 1})


def test_a_folder_that_cannot_be_written_is_a_clear_error(tmp_path):
    blocker = tmp_path / "features"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(cache.WriteError, match=r"Cannot write .*TL_COURSE_DATA"):
        cache.save({"x": torch.zeros(2)}, blocker / "f.pt")
    assert blocker.read_text().startswith("a file")  # left as it was

    def disk_full(tmp):
        raise OSError(28, "No space left on device")

    with pytest.raises(cache.WriteError, match="No space left on device.*nothing was changed"):
        cache.write_atomically(tmp_path / "out.bin", disk_full)
    assert list(tmp_path.iterdir()) == [blocker]  # no temporary file left
