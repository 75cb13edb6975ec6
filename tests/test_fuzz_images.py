"""Fuzzing the image paths: a few hundred randomly corrupted image files (truncated, bit-flipped,
wrong or foreign headers), seeded and bounded in time, through `tl-course predict` and
`tl-course train folder:`. Every run must end with exit status 0 or 2, never a traceback, never a
hang, and every bad file must be named."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from tl_course.cli import main
from tl_course.data.images import ImageError, load_image

N_FILES = 240
SECONDS = 120


def _valid_bytes(rng: np.random.Generator, fmt: str) -> bytes:
    arr = rng.integers(0, 256, (int(rng.integers(8, 40)), int(rng.integers(8, 40)), 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _corrupt(rng: np.random.Generator, data: bytes) -> bytes:
    kind = int(rng.integers(0, 5))
    data = bytearray(data)
    if kind == 0:                                      # truncated anywhere
        return bytes(data[: int(rng.integers(0, max(1, len(data))))])
    if kind == 1:                                      # bit flips
        for _ in range(int(rng.integers(1, 20))):
            i = int(rng.integers(0, len(data)))
            data[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(data)
    if kind == 2:                                      # a wrong header
        return bytes(rng.integers(0, 256, 16, dtype=np.uint8)) + bytes(data[16:])
    if kind == 3:                                      # another format's header on this body
        return b"\x89PNG\r\n\x1a\n" + bytes(data[8:]) if data[:2] == b"\xff\xd8" else b"\xff\xd8\xff\xe0" + bytes(data[4:])
    return bytes(rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8))  # noise


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("fuzz")
    for i in range(N_FILES):
        fmt, ext = [("JPEG", ".jpg"), ("PNG", ".png"), ("GIF", ".gif"), ("BMP", ".bmp"), ("WEBP", ".webp")][i % 5]
        (root / f"f{i:03d}{ext}").write_bytes(_corrupt(rng, _valid_bytes(rng, fmt)))
    return root


def test_every_corrupted_file_loads_or_is_refused_with_image_error(fuzz_folder):
    start = time.perf_counter()
    refused = 0
    for path in sorted(fuzz_folder.iterdir()):
        try:
            img = load_image(path)
            assert img.mode == "RGB" and min(img.size) >= 1
        except ImageError as exc:
            refused += 1
            assert path.name in str(exc)
        assert time.perf_counter() - start < SECONDS, "decoding corrupted files must not hang"
    assert refused > N_FILES // 4, "the corruptions should break many files"


def test_predict_on_corrupted_files_exits_0_or_2_and_names_every_bad_file(fuzz_folder, tmp_path, image_folder, capsys):
    model_dir = tmp_path / "model"
    folder = image_folder({"red": 4, "green": 4})
    assert main(["train", f"folder:{folder}", "--image-size", "32", "--out", str(model_dir)]) == 0
    capsys.readouterr()
    start = time.perf_counter()
    status = main(["predict", str(model_dir), str(fuzz_folder)])
    out, err = capsys.readouterr()
    assert time.perf_counter() - start < SECONDS
    assert status in (0, 2) and "Traceback" not in err
    named = {line.split(",")[0].rsplit("/", 1)[-1] for line in out.splitlines()}
    for path in fuzz_folder.iterdir():
        assert path.name in named or path.name in err, f"{path.name} neither predicted nor named as skipped"


def test_train_on_a_folder_with_corrupted_files_exits_0_or_2(fuzz_folder, tmp_path, image_folder, capsys):
    folder = image_folder({"red": 6, "green": 6}, name="mixed")
    for i, path in enumerate(sorted(fuzz_folder.iterdir())[:40]):
        (folder / ("red" if i % 2 else "green") / path.name).write_bytes(path.read_bytes())
    status = main(["train", f"folder:{folder}", "--image-size", "32", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status in (0, 2) and "Traceback" not in captured.err
    bad = []
    for path in sorted(folder.rglob("f*")):
        try:
            load_image(path, max_side=64)
        except ImageError:
            bad.append(path)
    assert bad, "some of the copied files should be unreadable"
    skipped_lines = [line for line in captured.err.splitlines() if line.startswith("tl-course train: skipped")]
    for path in bad:  # every bad file named, one line each, with its reason
        assert sum(str(path) in line for line in skipped_lines) == 1, path
    if status == 0:
        import json

        metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
        assert metrics["n_skipped_unreadable"] == len(bad) == metrics["n_skipped"]
        assert sorted(s["path"] for s in metrics["skipped"]) == sorted(map(str, bad))
