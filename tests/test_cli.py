"""The ``tl-course`` command: ``info`` works offline, user errors exit 2 without a traceback."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import pytest

from tl_course.cli import main


def test_info(capsys, monkeypatch, isolated_env):
    monkeypatch.setenv("TL_COURSE_OFFLINE", "1")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tl_course ")
    assert "device: cpu" in out or "device: cuda" in out
    assert f"TL_COURSE_DATA={isolated_env}" in out and "TL_COURSE_OFFLINE=1" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "yes" in lines["efficientnet_lite0"].split()
    assert "no" in lines["resnet18"].split()
    assert "yes" in lines["digits_m"].split()
    assert "TL_COURSE_MIRROR" in lines["hymenoptera"]


def test_unknown_dataset_exits_2_without_traceback(capsys, tmp_path):
    assert main(["train", "no_such_dataset", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "tl-course train: error: Unknown dataset 'no_such_dataset'" in err
    assert "Traceback" not in err
    # --out is checked (and created) before the data is loaded; nothing is written into it
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_missing_folder_exits_2(capsys, tmp_path):
    assert main(["train", f"folder:{tmp_path / 'nope'}", "--out", str(tmp_path / "run")]) == 2
    assert "Folder not found" in capsys.readouterr().err


def test_unknown_backbone_exits_2(capsys, tmp_path, image_folder):
    root = image_folder({"a": 2, "b": 2})
    assert main(["train", f"folder:{root}", "--backbone", "vgg99", "--out", str(tmp_path / "r")]) == 2
    assert "Unknown backbone 'vgg99'" in capsys.readouterr().err


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "digits", "--mode", "sideways", "--out", "x"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_command_line_subprocess(tmp_path):
    env = {**os.environ, "TL_COURSE_OFFLINE": "1", "TL_COURSE_DATA": str(tmp_path / "data")}
    env.pop("TL_COURSE_MIRROR", None)
    proc = subprocess.run([sys.executable, "-m", "tl_course.cli", "train", "no_such_dataset",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2
    assert "Unknown dataset 'no_such_dataset'" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_train_then_predict_on_a_three_class_folder(mode, tmp_path, image_folder, isolated_env, capsys):
    """The flagship contract on a learner's own folder with another number of classes: both modes
    write model.pt + metrics.json with the required keys, and predict answers one line per image."""
    import json

    root = image_folder({"red": 6, "green": 6, "blue": 6}, size=(40, 40))
    out = tmp_path / f"model_{mode}"
    assert main(["train", f"folder:{root}", "--mode", mode, "--epochs", "1", "--seed", "0",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("val_accuracy", "train_seconds", "n_train", "n_val", "classes", "backbone", "mode"):
        assert key in metrics
    assert metrics["classes"] == ["blue", "green", "red"] and metrics["mode"] == mode
    assert metrics["n_train"] + metrics["n_val"] == 18
    capsys.readouterr()
    assert main(["predict", str(out), str(root / "red")]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 6
    for path, label, prob in rows:
        assert label in metrics["classes"] and 0.0 <= float(prob) <= 1.0


def test_notebooks_lists_the_course_and_the_data_dependent_ones(capsys):
    from pathlib import Path

    assert main(["notebooks"]) == 0
    every = capsys.readouterr().out.split()
    assert every and all(p.endswith(".ipynb") for p in every)
    assert main(["notebooks", "--data-dependent"]) == 0
    names = [Path(p).name[:2] for p in capsys.readouterr().out.split()]
    assert names == ["07", "08", "09", "10", "11"]


@pytest.mark.parametrize("how", ["absolute", "relative", "dot-dot", "symlink"])
def test_run_refuses_to_overwrite_the_notebook_itself(tmp_path, capsys, monkeypatch, how):
    import nbformat

    nb = tmp_path / "nbs" / "nb.ipynb"
    nb.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), str(nb))
    before = nb.read_bytes()
    monkeypatch.chdir(nb.parent)
    (tmp_path / "link").symlink_to(nb.parent)
    out = {"absolute": str(nb.parent), "relative": ".", "dot-dot": "../nbs/../nbs",
           "symlink": str(tmp_path / "link")}[how]
    assert main(["run", "nb.ipynb", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "would overwrite the notebook itself" in err and "Traceback" not in err
    assert nb.read_bytes() == before
