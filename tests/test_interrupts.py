"""Killing `tl-course train` (SIGKILL, no chance to clean up) at several moments leaves nothing that
a later run trusts and nothing that grows: the next run succeeds, its model loads, and no temporary
file is left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch


def test_killed_training_leaves_nothing_a_later_run_trusts(tmp_path, image_folder):
    folder = image_folder({"red": 8, "green": 8}, size=(48, 48))
    env = {**os.environ, "TL_COURSE_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tl_course.cli", "train", f"folder:{folder}", "--image-size", "32",
           "--mode", "finetune", "--out", str(out)]
    for delay in (3.0, 5.0, 7.0):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (out / "model.pt").exists():  # whatever was written is complete: it loads
            torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    from tl_course.classifier import load_classifier

    assert load_classifier(out).classes == ["green", "red"]
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name or p.name.endswith(".part")]
    assert not leftovers, leftovers
