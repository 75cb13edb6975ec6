"""Every command-line path meets hostile or broken input with one clear message and exit status 2,
never a Python traceback. Each case below is one row of the table in the README's reliability
section; the CLI runs in-process (``tl_course.cli.main``), so the whole table takes seconds."""
from __future__ import annotations

import os
import zipfile

import pytest
import torch

from tl_course import classifier as C
from tl_course.cli import main
from tl_course.models.backbones import BACKBONES, backbone_from
from tl_course.models.transfer import TransferModel

from conftest import make_image


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A valid saved image classifier (untrained weights, no training needed): for predict cases."""
    arch = BACKBONES["efficientnet_lite0"].classifier(False)
    bb = backbone_from("efficientnet_lite0", arch, image_size=32)
    clf = C.TrainedClassifier(TransferModel(bb, 2).eval(), bb, ["ants", "bees"], "frozen", {})
    out = tmp_path_factory.mktemp("hostile") / "model"
    C.save_classifier(clf, out)
    return out


def _copy_model(model, tmp_path):
    import shutil

    shutil.copytree(model, tmp_path / "m")
    return tmp_path / "m"


def _folder(tmp_path, classes: dict[str, int], name="photos"):
    root = tmp_path / name
    for k, (cls, n) in enumerate(classes.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            make_image(root / cls / f"{i}.png", (200 * k, 80, 40), seed=10 * k + i)
    return root


def _out(tmp_path):
    return ["--out", str(tmp_path / "out")]


def _file(tmp_path, name="afile", data=b"x"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _blocked_cache(tmp_path):
    """A data folder whose ``features`` cache folder cannot be created (a file holds its name)."""
    data = tmp_path / "d"
    data.mkdir()
    _file(data, "features")
    return data


def _corrupt_class(tmp_path):
    root = _folder(tmp_path, {"a": 3})
    (root / "b").mkdir()
    for i in range(2):
        (root / "b" / f"{i}.png").write_bytes(b"garbage")
    return root


def _split_mismatch(tmp_path):
    _folder(tmp_path, {"cats": 2, "dogs": 2}, name="pets/train")
    _folder(tmp_path, {"cats": 2, "birds": 2}, name="pets/val")
    return tmp_path / "pets"


def _loose(tmp_path):
    root = tmp_path / "loose"
    for i in range(3):
        make_image(root / f"{i}.png", seed=i)
    return root


def _non_images_only(tmp_path):
    root = _folder(tmp_path, {"a": 3})
    (root / "b").mkdir()
    (root / "b" / "notes.txt").write_text("no images here")
    return root


def _empty_class(tmp_path):
    root = _folder(tmp_path, {"a": 3})
    (root / "b").mkdir()
    return root


def _pickle_model(model, tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    m = _copy_model(model, tmp_path)
    torch.save({"format": C.FORMAT, "x": Evil()}, m / "model.pt")
    return m


def _model_file(model, tmp_path, data: bytes):
    m = _copy_model(model, tmp_path)
    (m / "model.pt").write_bytes(data)
    return m


def _zip_as_model(model, tmp_path):
    m = _copy_model(model, tmp_path)
    with zipfile.ZipFile(m / "model.pt", "w") as zf:
        zf.writestr("archive/data.pkl", b"not a pickle")
    return m


def _payload(model, tmp_path, change):
    m = _copy_model(model, tmp_path)
    payload = torch.load(m / "model.pt", weights_only=True)
    change(payload)
    torch.save(payload, m / "model.pt")
    return m


def _missing_state_dict(model, tmp_path):
    return _payload(model, tmp_path, lambda p: p.pop("state_dict"))


def _newline_class(model, tmp_path):
    return _payload(model, tmp_path, lambda p: p.update(classes=["ants", "bees\nforged,row,1.0"]))


def _img(tmp_path):
    return str(make_image(tmp_path / "query.png", seed=3))


# name: (build(tmp_path, model) -> (argv, env), words the message must contain)
CASES = {
    # ---------------------------------------------------------------- train: the data argument
    "unknown dataset": (lambda t, m: (["train", "no_such_set", *_out(t)], {}), "Unknown dataset"),
    "unknown MedMNIST flag": (lambda t, m: (["train", "medmnist:nosuchmnist", *_out(t)], {}), "nosuchmnist"),
    "folder: missing": (lambda t, m: (["train", f"folder:{t / 'nope'}", *_out(t)], {}), "Folder not found"),
    "folder: a file": (lambda t, m: (["train", f"folder:{_file(t)}", *_out(t)], {}), "is a file"),
    "folder: empty": (lambda t, m: (["train", f"folder:{(t / 'e').mkdir() or t / 'e'}", *_out(t)], {}),
                      "no class subfolders"),
    "folder: loose images, no class folders": (lambda t, m: (["train", f"folder:{_loose(t)}", *_out(t)], {}),
                                               "3 loose image"),
    "folder: one class": (lambda t, m: (["train", f"folder:{_folder(t, {'a': 4})}", *_out(t)], {}),
                          "only one class"),
    "folder: an empty class folder": (lambda t, m: (["train", f"folder:{_empty_class(t)}", *_out(t)], {}),
                                      "contains no images"),
    "folder: a class of non-image files": (lambda t, m: (["train", f"folder:{_non_images_only(t)}", *_out(t)], {}),
                                           "contains no images (.txt)"),
    "folder: a class with one image": (lambda t, m: (["train", f"folder:{_folder(t, {'a': 4, 'b': 1})}",
                                                      *_out(t)], {}), "fewer than 2 images"),
    "folder: a class of corrupt images": (lambda t, m: (["train", f"folder:{_corrupt_class(t)}", *_out(t)], {}),
                                          "No readable image left"),
    "folder: train/ and val/ with other classes": (lambda t, m: (["train", f"folder:{_split_mismatch(t)}",
                                                                  *_out(t)], {}), "different class folders"),
    "hymenoptera offline without a mirror": (lambda t, m: (["train", "hymenoptera", *_out(t)],
                                                           {"TL_COURSE_OFFLINE": "1"}), "TL_COURSE_MIRROR"),
    # ---------------------------------------------------------------- train: options
    "--out is a file": (lambda t, m: (["train", "digits", "--out", str(_file(t))], {}), "is a file"),
    "--out below a file (cannot be created)": (lambda t, m: (["train", "digits", "--out", str(_file(t) / "sub")], {}),
                                               "Cannot write into"),
    "--image-size 0": (lambda t, m: (["train", "digits", "--image-size", "0", *_out(t)], {}), "between 16 and"),
    "--image-size 100000": (lambda t, m: (["train", "digits", "--image-size", "100000", *_out(t)], {}),
                            "between 16 and"),
    "--image-size -5": (lambda t, m: (["train", "digits", "--image-size", "-5", *_out(t)], {}), "between 16 and"),
    "--epochs 0": (lambda t, m: (["train", "digits", "--epochs", "0", *_out(t)], {}), "at least 1"),
    "--backbone vgg99": (lambda t, m: (["train", f"folder:{_folder(t, {'a': 2, 'b': 2})}", "--backbone", "vgg99",
                                        *_out(t)], {}), "Unknown backbone 'vgg99'"),
    # ---------------------------------------------------------------- train: environment
    "TL_COURSE_DATA is a file": (lambda t, m: (["train", "digits", *_out(t)], {"TL_COURSE_DATA": str(_file(t))}),
                                 "is a file"),
    "TL_COURSE_DATA below a file": (lambda t, m: (["train", "digits", *_out(t)],
                                                  {"TL_COURSE_DATA": str(_file(t) / "data")}), "Cannot create"),
    "TL_COURSE_DEVICE=bogus": (lambda t, m: (["train", "digits", *_out(t)], {"TL_COURSE_DEVICE": "bogus"}),
                               "is not a device"),
    "TL_COURSE_DEVICE=cuda without a GPU": (lambda t, m: (["train", "digits", *_out(t)], {"TL_COURSE_DEVICE": "cuda"}),
                                            "no CUDA device"),
    "a cache folder that cannot be written": (
        lambda t, m: (["train", f"folder:{_folder(t, {'a': 3, 'b': 3})}", "--image-size", "32", *_out(t)],
                      {"TL_COURSE_DATA": str(_blocked_cache(t))}),
        "Cannot write"),
    # ---------------------------------------------------------------- predict: the model folder
    "model folder missing": (lambda t, m: (["predict", str(t / "nope"), _img(t)], {}), "Model folder not found"),
    "model folder without model.pt": (lambda t, m: (["predict", str((t / "e").mkdir() or t / "e"), _img(t)], {}),
                                      "no model.pt"),
    "model.pt of 0 bytes": (lambda t, m: (["predict", str(_model_file(m, t, b"")), _img(t)], {}), "it is empty"),
    "model.pt of random bytes": (lambda t, m: (["predict", str(_model_file(m, t, os.urandom(300))), _img(t)], {}),
                                 "not a tl-course model"),
    "model.pt a zip that is no checkpoint": (lambda t, m: (["predict", str(_zip_as_model(m, t)), _img(t)], {}),
                                             "not a tl-course model"),
    "model.pt a pickle that runs code": (lambda t, m: (["predict", str(_pickle_model(m, t)), _img(t)], {}),
                                         "NOT unpickled"),
    "model.pt without state_dict": (lambda t, m: (["predict", str(_missing_state_dict(m, t)), _img(t)], {}),
                                    "'state_dict' is missing"),
    "a class name with a newline (forged rows)": (lambda t, m: (["predict", str(_newline_class(m, t)), _img(t)], {}),
                                                  "printable"),
    # ---------------------------------------------------------------- predict: the inputs
    "predict without any input": (lambda t, m: (["predict", str(m)], {}), "give image files"),
    "--text for an image model": (lambda t, m: (["predict", str(m), "--text", "hello"], {}), "image classifier"),
    "a folder without images": (lambda t, m: (["predict", str(m), str((t / "e").mkdir() or t / "e")], {}),
                                "No image files found"),
    "an image path that does not exist": (lambda t, m: (["predict", str(m), str(t / "nope.jpg")], {}),
                                          "Image not found"),
    "a text file named .jpg": (lambda t, m: (["predict", str(m), str(_file(t, "notes.jpg", b"hello"))], {}),
                               "notes.jpg"),
    "an empty image file among good ones": (lambda t, m: (["predict", str(m), _img(t), str(_file(t, "x.png", b""))],
                                                          {}), "x.png"),
    # ---------------------------------------------------------------- run / execute / student
    "run: a notebook that does not exist": (lambda t, m: (["run", str(t / "nope.ipynb"), *_out(t)], {}),
                                            "Notebook not found"),
    "run: a notebook that is not JSON": (lambda t, m: (["run", str(_file(t, "bad.ipynb", b"{no")), *_out(t)], {}),
                                         "JSON"),
    "execute: a notebook that is not JSON": (lambda t, m: (["execute", str(_file(t, "bad.ipynb", b"{no"))], {}),
                                             "JSON"),
    "student: the output folder is a file": (lambda t, m: (["student", str(_file(t))], {}), "is a file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cli_answers_hostile_input_with_a_message_and_status_2(case, model, tmp_path, monkeypatch, capfd):
    build, words = CASES[case]
    if "cuda" in case and torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    monkeypatch.chdir(tmp_path)
    argv, env = build(tmp_path, model)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capfd.readouterr()
    status = main(argv)
    out, err = capfd.readouterr()  # file-descriptor level: also what a subprocess would print
    assert status == 2, (out, err)
    assert "Traceback" not in out + err and "pwned" not in out
    assert words in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(f"tl-course {argv[0]}: "), err  # the message comes last
