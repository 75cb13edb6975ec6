"""tl_course.classifier: save/load round trip (with the saved preprocessing), the load-time checks
of model.pt, the output-folder check before training, the caller's Recipe left alone, test-split
metrics, and `tl-course predict` (proper CSV, exit 2 on a bad model)."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil

import pytest
import torch

from tl_course import classifier as C
from tl_course.cli import main
from tl_course.data.folder import load_image_folder
from tl_course.models import backbones
from tl_course.models.backbones import BACKBONES, CheckpointMismatch, Preprocessing

IMAGE_SIZE = 32
CLASS_COLOURS = [(40, 60, 220), (220, 40, 40), (220, 40, 40)]  # blue, red (index 0 and 2 are used)


def make_image(path, colour, size, seed):
    """A small RGB image: a base colour plus a little deterministic noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour, dtype=np.int16) + rng.integers(-20, 21, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def _folder(root, n=6):
    for k, cls in enumerate(["blue", "red"]):
        for i in range(n):
            make_image(root / cls / f"{cls}_{i}.png", CLASS_COLOURS[2 * k], (24, 24), seed=10 * k + i)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A frozen-mode classifier trained once for the module: its folder (copy it before changing it)."""
    base = tmp_path_factory.mktemp("classifier")
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("TL_COURSE_DATA", str(base / "data"))
        mp.setenv("TL_COURSE_OFFLINE", "1")
        root = _folder(base / "photos")
        (root / "blue" / "notes.txt").write_text("not an image")
        (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        with pytest.warns(UserWarning, match="2 file"):
            C.train_classifier(f"folder:{root}", image_size=IMAGE_SIZE, out_dir=base / "model", progress=False)
    finally:
        mp.undo()
    return base


@pytest.fixture
def model_dir(trained, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(trained / "model", out)
    return out


def _image(tmp_path):
    return make_image(tmp_path / "query.png", CLASS_COLOURS[0], (24, 24), seed=99)


def test_save_load_roundtrip_uses_the_saved_preprocessing(model_dir, tmp_path, monkeypatch):
    from tl_course.data.images import load_image

    img = load_image(_image(tmp_path))
    original = C.load_classifier(model_dir)
    saved_prep = original.backbone.preprocessing
    assert saved_prep == BACKBONES["efficientnet_lite0"].preprocessing
    assert original.classes == ["blue", "red"] and original.backbone.image_size == IMAGE_SIZE
    expected = original.predict_images([img])
    # today's registry entry changes; the saved model keeps what it was trained with
    other = Preprocessing(resize=40, crop=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bilinear")
    monkeypatch.setitem(BACKBONES, "efficientnet_lite0",
                        dataclasses.replace(BACKBONES["efficientnet_lite0"], preprocessing=other))
    # and the architecture is built without reading any pretrained weights
    monkeypatch.setattr(backbones, "lite0_checkpoint_path", lambda: pytest.fail("pretrained weights were read"))
    loaded = C.load_classifier(model_dir)
    assert loaded.backbone.preprocessing == saved_prep != other
    torch.testing.assert_close(loaded.predict_images([img]), expected)
    payload = torch.load(model_dir / "model.pt", weights_only=True)
    assert payload["format"] == C.FORMAT and payload["preprocessing"]["interpolation"] == "bicubic"


def test_metrics_json(trained):
    metrics = json.loads((trained / "model" / "metrics.json").read_text())
    assert metrics["classes"] == ["blue", "red"] and metrics["image_size"] == IMAGE_SIZE
    assert metrics["n_train"] + metrics["n_val"] == 12 and "test_accuracy" not in metrics  # no test split
    # every skipped file recorded with its reason, and the counts by kind
    assert (metrics["n_skipped"], metrics["n_skipped_not_image"], metrics["n_skipped_unreadable"]) == (2, 1, 1)
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in metrics["skipped"]}
    assert "not an image file (.txt)" in reasons["notes.txt"] and "broken.png" in reasons["broken.png"]


def test_recipe_is_left_alone_and_a_test_split_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    data = load_image_folder(_folder(tmp_path / "photos"))
    data = dataclasses.replace(data, test=data.val)
    recipe = C.Recipe(head="mlp", head_epochs=40)
    clf = C.train_classifier(data, recipe=recipe, epochs=5, image_size=IMAGE_SIZE, progress=False)
    assert recipe == C.Recipe(head="mlp", head_epochs=40)  # not mutated
    assert clf.metrics["recipe"]["head_epochs"] == 5 and len(clf.history) == 5
    m = clf.metrics
    assert m["n_test"] == len(data.val)
    for key in ("test_accuracy", "test_balanced_accuracy", "test_auc"):
        assert 0.0 <= m[key] <= 1.0
    with pytest.raises(ValueError, match="at least 1"):
        C.train_classifier(data, epochs=0, progress=False)


def test_a_bad_output_folder_fails_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        C.check_output_dir(blocker)
    assert C.check_output_dir(tmp_path / "new" / "dir").is_dir()
    monkeypatch.setattr(C, "load_backbone", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr(C, "_resolve_data", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ValueError, match="is a file"):
        C.train_classifier("digits", out_dir=blocker, progress=False)
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(ValueError, match="Cannot write"):
                C.check_output_dir(locked)
        finally:
            locked.chmod(0o700)


def test_cli_train_refuses_a_file_as_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "digits", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err


# --------------------------------------------------------------------------- load-time checks
def _rewrite(model_dir, change):
    payload = torch.load(model_dir / "model.pt", weights_only=True)
    change(payload)
    torch.save(payload, model_dir / "model.pt")


def _nan_weights(p):
    key = next(k for k, v in p["state_dict"].items() if v.is_floating_point())
    p["state_dict"][key] = torch.full_like(p["state_dict"][key], float("nan"))


BAD_PAYLOADS = {
    "empty file": None,
    "classes is a string": lambda p: p.update(classes="xy"),
    "one class": lambda p: p.update(classes=["only"]),
    "duplicate classes": lambda p: p.update(classes=["a", "a"]),
    "unprintable class": lambda p: p.update(classes=["a", "b\n"]),
    "image_size 100000": lambda p: p.update(image_size=100000),
    "image_size a string": lambda p: p.update(image_size="64"),
    "image_size a bool": lambda p: p.update(image_size=True),
    "state_dict not tensors": lambda p: p.update(state_dict={"w": [1.0, 2.0]}),
    "NaN weights": _nan_weights,
    "unknown backbone": lambda p: p.update(backbone="vgg99"),
    "backbone not a string": lambda p: p.update(backbone=3),
    "preprocessing missing a field": lambda p: p["preprocessing"].pop("mean"),
    "foreign format": lambda p: p.update(format="something/else"),
    "unknown head": lambda p: p.update(head="transformer"),
    "state_dict missing": lambda p: p.pop("state_dict"),
    "classes missing": lambda p: p.pop("classes"),
    "classes not strings": lambda p: p.update(classes=[0, 1]),
    "classes with an empty name": lambda p: p.update(classes=["a", ""]),
    "preprocessing not a dict": lambda p: p.update(preprocessing="bicubic"),
    "unknown modality": lambda p: p.update(modality="audio"),
    "format a list": lambda p: p.update(format=["tl_course.classifier/1"]),
    "infinite weights": lambda p: p["state_dict"].update(
        {k: torch.full_like(v, float("inf")) for k, v in list(p["state_dict"].items())[:1]}),
}


@pytest.mark.parametrize("what", list(BAD_PAYLOADS))
def test_bad_payloads_are_refused(model_dir, tmp_path, capsys, what):
    change = BAD_PAYLOADS[what]
    if change is None:
        (model_dir / "model.pt").write_bytes(b"")
    else:
        _rewrite(model_dir, change)
    with pytest.raises(CheckpointMismatch):
        C.load_classifier(model_dir)
    capsys.readouterr()
    assert main(["predict", str(model_dir), str(_image(tmp_path))]) == 2
    out = capsys.readouterr()
    assert "tl-course predict: error:" in out.err and "Traceback" not in out.err and out.out == ""


def test_a_missing_entry_is_named_in_the_message(model_dir, tmp_path, capsys):
    _rewrite(model_dir, lambda p: p.pop("state_dict"))
    assert main(["predict", str(model_dir), str(_image(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "the entry 'state_dict' is missing" in err and "Train a new one" in err


@pytest.mark.parametrize("metrics", [b"{not json", b"", b"[1, 2]", b"\xff\xfe binary"])
def test_a_corrupt_metrics_json_does_not_block_predict(model_dir, tmp_path, capsys, metrics):
    (model_dir / "metrics.json").write_bytes(metrics)  # predict does not need it
    assert main(["predict", str(model_dir), str(_image(tmp_path))]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1 and rows[0][1] in ("blue", "red")


def test_predict_reads_no_hidden_or_appledouble_file_in_a_folder(model_dir, tmp_path, capsys):
    """Training skips hidden files; so does predict: AppleDouble ``._x.png`` (macOS metadata with
    an image name), ``.DS_Store`` and hidden folders are neither predicted nor errors."""
    folder = tmp_path / "queries"
    make_image(folder / "x.png", CLASS_COLOURS[0], (24, 24), seed=7)
    (folder / "._x.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    (folder / ".DS_Store").write_bytes(b"\0" * 64)
    make_image(folder / ".thumbnails" / "x.png", CLASS_COLOURS[0], (8, 8), seed=8)
    capsys.readouterr()
    assert main(["predict", str(model_dir), str(folder)]) == 0
    out = capsys.readouterr()
    assert [r[0] for r in csv.reader(io.StringIO(out.out))] == [str(folder / "x.png")]
    assert out.err == ""


def test_weights_of_another_shape_are_refused(model_dir):
    _rewrite(model_dir, lambda p: p.update(classes=["a", "b", "c"]))  # a 2-class head for 3 names
    with pytest.raises(CheckpointMismatch, match="do not fit"):
        C.load_classifier(model_dir)


def test_a_pickled_object_is_not_unpickled(model_dir, tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": C.FORMAT, "x": Evil()}, model_dir / "model.pt")
    with pytest.raises(CheckpointMismatch, match="NOT unpickled"):
        C.load_classifier(model_dir)
    assert "pwned" not in capsys.readouterr().out


def test_missing_model_folder_or_file(tmp_path, capsys):
    with pytest.raises(FileNotFoundError):
        C.load_classifier(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model.pt"):
        C.load_classifier(tmp_path / "empty")
    assert main(["predict", str(tmp_path / "empty"), str(_image(tmp_path))]) == 2
    assert "Traceback" not in capsys.readouterr().err


# --------------------------------------------------------------------------- predict CSV
def test_predict_csv_quotes_commas_and_newlines(model_dir, tmp_path, capsys):
    folder = tmp_path / "queries"
    odd = make_image(folder / "red, big\nsecond line.png", CLASS_COLOURS[2], (24, 24), seed=5)
    plain = make_image(folder / "plain.png", CLASS_COLOURS[0], (24, 24), seed=6)
    (folder / "notes.txt").write_text("not an image")
    capsys.readouterr()
    assert main(["predict", str(model_dir), str(folder)]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert sorted(r[0] for r in rows) == sorted([str(odd), str(plain)])
    for path, label, prob in rows:
        assert label in ("blue", "red") and 0.5 <= float(prob) <= 1.0


def test_predict_skips_an_unreadable_image_and_exits_2(model_dir, tmp_path, capsys):
    good = _image(tmp_path)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    capsys.readouterr()
    assert main(["predict", str(model_dir), str(good), str(bad)]) == 2
    out = capsys.readouterr()
    assert [r[0] for r in csv.reader(io.StringIO(out.out))] == [str(good)]
    assert "skipped" in out.err and "broken.jpg" in out.err and "Traceback" not in out.err


def test_finetune_is_kept_only_when_it_beats_frozen_on_a_holdout_of_train(image_folder, isolated_env):
    from tl_course.classifier import train_classifier

    folder = image_folder({"red": 10, "green": 10, "blue": 10})
    clf = train_classifier(f"folder:{folder}", mode="finetune", image_size=32, progress=False)
    m = clf.metrics
    assert {"holdout_frozen_accuracy", "holdout_finetune_accuracy", "n_holdout"} <= set(m)
    assert m["n_holdout"] >= 3
    if m["holdout_finetune_accuracy"] > m["holdout_frozen_accuracy"]:
        assert m["finetune_kept"] == "fine-tuned"
    else:
        assert m["finetune_kept"].startswith("frozen")
        assert m["val_accuracy"] == m["head_val_accuracy"]  # the frozen model, exactly


def test_a_loaded_classifier_backbone_has_its_own_feature_cache_key(tmp_path):
    """Fine-tuned weights must never read the pretrained weights' cached features."""
    import torch

    from tl_course.classifier import TrainedClassifier, load_classifier, save_classifier
    from tl_course.models import transfer
    from tl_course.models.backbones import load_backbone

    bb = load_backbone("efficientnet_lite0", image_size=32)
    model = transfer.TransferModel(bb, 2)
    save_classifier(TrainedClassifier(model, bb, ["a", "b"], "frozen"), tmp_path / "same")
    with torch.no_grad():
        bb.model[-2][0].weight.add_(0.01)   # "fine-tuned": one stage's weights changed
    save_classifier(TrainedClassifier(model, bb, ["a", "b"], "finetune"), tmp_path / "tuned")
    same, tuned = load_classifier(tmp_path / "same"), load_classifier(tmp_path / "tuned")
    pretrained = load_backbone("efficientnet_lite0", image_size=32)
    keys = {same.backbone.cache_key(), tuned.backbone.cache_key(), pretrained.cache_key()}
    assert len(keys) == 3, "pretrained, saved-unchanged and fine-tuned weights share a cache key"
    assert tuned.model.backbone is tuned.backbone.model
