"""tl_course.download: verified, atomic downloads (against a local HTTP server) and safe extraction."""
from __future__ import annotations

import hashlib
import os
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from tl_course.download import DownloadError, download, extract_archive, file_digest, sha256_file

PAYLOAD = bytes(range(256)) * 400  # 100 KiB: several read blocks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_sha256_file(tmp_path):
    (tmp_path / "f").write_bytes(PAYLOAD)
    assert sha256_file(tmp_path / "f") == PAYLOAD_SHA
    assert file_digest(tmp_path / "f", "sha256", chunk=7) == PAYLOAD_SHA
    assert file_digest(tmp_path / "f", "md5") == hashlib.md5(PAYLOAD).hexdigest()


def test_download_ok_with_checksum(tmp_path, http_server):
    url = http_server.add("file.bin", PAYLOAD)
    dest = tmp_path / "dl" / "file.bin"
    out = download(url, dest, sha256=PAYLOAD_SHA, progress=False)
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["file.bin"]  # no .part left


def test_download_accepts_checksum_prefix_in_any_case(tmp_path, http_server):
    url = http_server.add("file.bin", PAYLOAD)
    dest = download(url, tmp_path / "f.bin", sha256=PAYLOAD_SHA[:8].upper(), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_download_without_checksum(tmp_path, http_server):
    url = http_server.add("file.bin", PAYLOAD)
    assert download(url, tmp_path / "f.bin", progress=False).read_bytes() == PAYLOAD


def test_wrong_checksum_leaves_nothing(tmp_path, http_server):
    url = http_server.add("file.bin", PAYLOAD)
    dest = tmp_path / "dl" / "file.bin"
    with pytest.raises(DownloadError, match="Checksum mismatch") as info:
        download(url, dest, sha256="0" * 64, progress=False, offline_hint="Use the mirror.")
    assert PAYLOAD_SHA in str(info.value)
    assert "Use the mirror." in str(info.value)
    assert _leftovers(dest.parent) == []


def test_interrupted_download_leaves_nothing(tmp_path, http_server):
    url = http_server.add("big.bin", PAYLOAD, interrupted=True)
    dest = tmp_path / "dl" / "big.bin"
    with pytest.raises(DownloadError, match="interrupted|Could not download") as info:
        download(url, dest, progress=False, timeout=10)
    assert url in str(info.value)
    assert _leftovers(dest.parent) == []


def test_interrupted_download_with_checksum_leaves_nothing(tmp_path, http_server):
    url = http_server.add("big.bin", PAYLOAD, interrupted=True)
    dest = tmp_path / "big.bin"
    with pytest.raises(DownloadError):
        download(url, dest, sha256=PAYLOAD_SHA, progress=False, timeout=10)
    assert not dest.exists()
    assert not dest.with_name("big.bin.part").exists()


def test_http_404_is_a_download_error(tmp_path, http_server):
    dest = tmp_path / "missing.bin"
    with pytest.raises(DownloadError, match="Could not download") as info:
        download(http_server.url("missing.bin"), dest, progress=False)
    assert "internet" in str(info.value)
    assert _leftovers(tmp_path) == []


def test_connection_refused_is_a_download_error(tmp_path, http_server):
    url = http_server.url("x.bin")
    http_server.close()  # nothing listens on that port any more
    with pytest.raises(DownloadError, match="Could not download"):
        download(url, tmp_path / "x.bin", progress=False, timeout=5)
    assert _leftovers(tmp_path) == []


def test_offline_refuses_and_names_the_alternative(tmp_path, http_server, monkeypatch):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    url = http_server.add("file.bin", PAYLOAD)
    with pytest.raises(DownloadError, match="TL_COURSE_OFFLINE") as info:
        download(url, tmp_path / "f.bin", progress=False, offline_hint="Set TL_COURSE_MIRROR instead.")
    assert "Set TL_COURSE_MIRROR instead." in str(info.value)
    assert http_server.requests == []
    assert _leftovers(tmp_path) == []


def test_existing_file_with_right_hash_is_not_downloaded_again(tmp_path, http_server, monkeypatch):
    url = http_server.add("file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    download(url, dest, sha256=PAYLOAD_SHA, progress=False)
    assert len(http_server.requests) == 1
    download(url, dest, sha256=PAYLOAD_SHA, progress=False)
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")  # even offline: nothing to fetch
    assert download(url, dest, sha256=PAYLOAD_SHA, progress=False) == dest
    assert len(http_server.requests) == 1


def test_existing_file_with_wrong_hash_is_replaced(tmp_path, http_server):
    url = http_server.add("file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"stale partial content")
    download(url, dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert len(http_server.requests) == 1


# --------------------------------------------------------------------------- extraction
def _zip(path, entries: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _tar(path, entries: dict[str, bytes], mode="w:gz"):
    with tarfile.open(path, mode) as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_extract_zip(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"top/x.txt": b"x", "top/sub/y.txt": b"yy"})
    out = extract_archive(archive, tmp_path / "out")
    assert out == tmp_path / "out"
    assert (out / "top" / "x.txt").read_bytes() == b"x"
    assert (out / "top" / "sub" / "y.txt").read_bytes() == b"yy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "out"]  # no temp folder left


@pytest.mark.parametrize("mode,suffix", [("w:gz", "tar.gz"), ("w", "tar"), ("w:bz2", "tar.bz2")])
def test_extract_tar(tmp_path, mode, suffix):
    archive = _tar(tmp_path / f"a.{suffix}", {"top/x.txt": b"x", "top/y.txt": b"y"}, mode)
    out = extract_archive(archive, tmp_path / "out")
    assert (out / "top" / "x.txt").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"a.{suffix}", "out"]


def test_extract_refuses_existing_target(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"x.txt": b"x"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(DownloadError, match="already exists"):
        extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def _assert_nothing_written(tmp_path, archive_name):
    names = sorted(p.name for p in tmp_path.rglob("*"))
    assert names == [archive_name], names
    assert not (tmp_path.parent / "evil.txt").exists()
    assert not Path("/tmp/abs_evil_tl_course.txt").exists()


@pytest.mark.parametrize("evil", ["../evil.txt", "ok/../../evil.txt", "/tmp/abs_evil_tl_course.txt",
                                  "..\\evil.txt", "C:/evil.txt"])
def test_zip_with_escaping_entry_is_refused(tmp_path, evil):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", b"fine")
        info = zipfile.ZipInfo("placeholder")
        info.filename = evil  # bypass ZipInfo's own sanitising of the name
        zf.writestr(info, b"evil")
    assert evil in zipfile.ZipFile(archive).namelist()
    with pytest.raises(DownloadError, match="unsafe archive entry"):
        extract_archive(archive, tmp_path / "out")
    _assert_nothing_written(tmp_path, "bad.zip")


def test_zip_symlink_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DownloadError, match="symbolic link"):
        extract_archive(archive, tmp_path / "out")
    _assert_nothing_written(tmp_path, "link.zip")


@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/abs_evil_tl_course.txt"])
def test_tar_with_escaping_entry_is_refused(tmp_path, evil):
    archive = _tar(tmp_path / "bad.tar.gz", {"fine.txt": b"fine", evil: b"evil"})
    with pytest.raises(DownloadError, match="unsafe archive entry"):
        extract_archive(archive, tmp_path / "out")
    _assert_nothing_written(tmp_path, "bad.tar.gz")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_with_link_is_refused(tmp_path, kind):
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = b"fine"
        info = tarfile.TarInfo("fine.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("sub/link")
        link.type = kind
        link.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else "fine.txt"
        tf.addfile(link)
    with pytest.raises(DownloadError, match="only plain files and folders"):
        extract_archive(archive, tmp_path / "out")
    _assert_nothing_written(tmp_path, "link.tar.gz")


def test_not_an_archive(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"this is an HTML error page, not a zip")
    with pytest.raises(DownloadError, match="not a zip or tar archive"):
        extract_archive(tmp_path / "x.zip", tmp_path / "out")
    _assert_nothing_written(tmp_path, "x.zip")


def test_truncated_zip_leaves_nothing(tmp_path):
    big = bytes(range(256)) * 4000
    archive = _zip(tmp_path / "full.zip", {f"top/f{i}.bin": big for i in range(3)})
    data = archive.read_bytes()
    cut = tmp_path / "cut.zip"
    # keep the central directory (so it still looks like a zip) but damage a member's data
    cut.write_bytes(data[:200] + b"\0" * 5000 + data[5200:])
    archive.unlink()
    with pytest.raises(DownloadError):
        extract_archive(cut, tmp_path / "out")
    _assert_nothing_written(tmp_path, "cut.zip")


def test_interrupted_chunked_download_is_a_download_error(tmp_path, http_server):
    url = http_server.add("chunked.bin", PAYLOAD, interrupted="chunked")
    dest = tmp_path / "dl" / "chunked.bin"
    with pytest.raises(DownloadError, match="Could not download|interrupted"):
        download(url, dest, progress=False, timeout=10)
    assert _leftovers(dest.parent) == []


def test_corrupt_deflated_zip_is_a_download_error(tmp_path):
    rng_bytes = bytes((i * 7919) % 251 for i in range(60_000))
    archive = tmp_path / "full.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("top/a.bin", rng_bytes)
        zf.writestr("top/b.bin", rng_bytes[::-1])
    data = bytearray(archive.read_bytes())
    for i in range(100, 400):  # scramble the compressed stream of the first member
        data[i] ^= 0x5A
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="could not be extracted"):
        extract_archive(archive, tmp_path / "out")
    _assert_nothing_written(tmp_path, "full.zip")


def test_corrupt_tar_gz_is_a_download_error(tmp_path):
    import numpy as np

    payload = np.random.default_rng(0).bytes(50_000)  # incompressible: the .gz stays large
    archive = _tar(tmp_path / "full.tar.gz", {"top/a.bin": payload, "top/b.bin": payload[::-1]})
    data = bytearray(archive.read_bytes())
    for i in range(30, 60):  # damage the compressed stream where the first tar header is
        data[i] ^= 0x5A
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError):
        extract_archive(archive, tmp_path / "out")
    _assert_nothing_written(tmp_path, "full.tar.gz")


def test_a_download_cut_short_without_a_length_fails_its_checksum(tmp_path, http_server):
    """Without Content-Length the client cannot see the cut; the checksum does, and nothing is kept."""
    url = http_server.add("nolength.bin", PAYLOAD, interrupted="no-length")
    dest = tmp_path / "dl" / "nolength.bin"
    with pytest.raises(DownloadError, match="Checksum mismatch.*deleted"):
        download(url, dest, sha256=PAYLOAD_SHA, progress=False, timeout=10)
    assert _leftovers(dest.parent) == []


def test_an_archive_bomb_is_refused_before_anything_is_written(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(4):
            zf.writestr(f"top/zeros{i}.bin", b"\0" * (1 << 20))  # 4 MiB of zeros in a few KiB
    assert archive.stat().st_size < 50_000
    with pytest.raises(DownloadError, match="would expand to 4,194,304 bytes.*archive bomb"):
        extract_archive(archive, tmp_path / "out", max_bytes=1 << 20)
    _assert_nothing_written(tmp_path, "bomb.zip")


def test_a_member_larger_than_its_header_says_is_refused(tmp_path):
    archive = _zip(tmp_path / "liar.zip", {"top/a.bin": PAYLOAD})
    data = bytearray(archive.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 24:central + 28] = (100).to_bytes(4, "little")  # announces 100 bytes, holds 100 KiB
    archive.write_bytes(bytes(data))
    assert zipfile.ZipFile(archive).infolist()[0].file_size == 100
    with pytest.raises(DownloadError):
        extract_archive(archive, tmp_path / "out")
    _assert_nothing_written(tmp_path, "liar.zip")


def test_expected_members_missing_or_changed_refuse_the_archive(tmp_path):
    good = {"top/a.txt": b"a", "top/b.txt": b"b"}
    manifest = {name: hashlib.sha256(data).hexdigest() for name, data in good.items()}
    missing = _zip(tmp_path / "missing.zip", {"top/a.txt": b"a"})
    with pytest.raises(DownloadError, match="lacks 1 expected file.*top/b.txt"):
        extract_archive(missing, tmp_path / "out", expected=manifest)
    changed = _zip(tmp_path / "changed.zip", {"top/a.txt": b"a", "top/b.txt": b"B"})
    with pytest.raises(DownloadError, match="top/b.txt differs from the official file"):
        extract_archive(changed, tmp_path / "out", expected=manifest)
    assert not (tmp_path / "out").exists()
    extra = _zip(tmp_path / "extra.zip", {**good, "top/intruder.sh": b"rm -rf ~"})
    out = extract_archive(extra, tmp_path / "out", expected=manifest)
    assert sorted(p.name for p in (out / "top").iterdir()) == ["a.txt", "b.txt"]  # only the listed files


def test_temporary_folders_of_killed_extractions_are_removed_on_the_next_run(tmp_path):
    dead = tmp_path / ".out-dead1"
    (dead / "top").mkdir(parents=True)
    (dead / "top" / "big.bin").write_bytes(b"\0" * 10_000)
    (dead / ".tl-course-extracting").write_text("999999999")  # its process is gone
    unmarked = tmp_path / ".out-early"  # killed before it wrote its marker
    unmarked.mkdir()
    alive = tmp_path / ".out-alive"  # another extraction running right now: left alone
    alive.mkdir()
    (alive / ".tl-course-extracting").write_text(str(os.getpid()))
    archive = _zip(tmp_path / "a.zip", {"top/x.txt": b"x"})
    extract_archive(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out-alive", "a.zip", "out"]
