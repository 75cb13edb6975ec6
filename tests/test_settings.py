"""tl_course.settings: data folder, mirror, offline switch, device, seeding."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tl_course import settings


def test_data_dir_comes_from_the_environment_and_is_created(isolated_env):
    assert not isolated_env.exists()
    assert settings.data_dir() == isolated_env.resolve()
    assert isolated_env.is_dir()


def test_data_dir_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TL_COURSE_DATA", "~/course-data")
    assert settings.data_dir() == (tmp_path / "course-data").resolve()


def test_data_dir_default_is_the_project_data_folder(monkeypatch):
    monkeypatch.delenv("TL_COURSE_DATA")
    root = settings.project_root()
    assert root is not None and (root / "pyproject.toml").is_file()
    assert settings.data_dir() == (root / "data").resolve()


def test_mirror_dir(tmp_path, monkeypatch):
    assert settings.mirror_dir() is None
    monkeypatch.setenv("TL_COURSE_MIRROR", str(tmp_path / "m" / ".." / "mirror"))
    assert settings.mirror_dir() == (tmp_path / "mirror").resolve()


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), (" YES ", True), ("on", True),
                                            ("0", False), ("", False), ("no", False), ("false", False)])
def test_offline(monkeypatch, value, expected):
    monkeypatch.setenv("TL_COURSE_OFFLINE", value)
    assert settings.offline() is expected


def test_offline_unset():
    assert settings.offline() is False


def test_device(monkeypatch):
    assert settings.device() == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("TL_COURSE_DEVICE", "CPU")
    assert settings.device() == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_forcing_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TL_COURSE_DEVICE", "cuda")
    with pytest.raises(settings.SettingsError, match="TL_COURSE_DEVICE=cpu"):
        settings.device()


def test_a_data_folder_that_is_a_file_or_below_one_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("TL_COURSE_DATA", str(blocker))
    with pytest.raises(settings.SettingsError, match="is a file; point it at a folder"):
        settings.data_dir()
    monkeypatch.setenv("TL_COURSE_DATA", str(blocker / "data"))
    with pytest.raises(settings.SettingsError, match="Cannot create the data folder"):
        settings.data_dir()


@pytest.mark.parametrize("value", ["bogus", "gpu", "cuda:x", "cpu;rm -rf /"])
def test_an_unknown_device_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("TL_COURSE_DEVICE", value)
    with pytest.raises(settings.SettingsError, match="is not a device"):
        settings.device()


def test_seed_everything():
    assert settings.seed_everything(11) == 11
    a = (random.random(), np.random.rand(), torch.rand(2).tolist())
    settings.seed_everything(11)
    assert (random.random(), np.random.rand(), torch.rand(2).tolist()) == a


def test_threads_limits_torch_and_blas_then_restores():
    from threadpoolctl import threadpool_info

    def blas():
        return {i["internal_api"]: i["num_threads"] for i in threadpool_info()}

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        before = blas()
        with settings.threads(1):
            assert torch.get_num_threads() == 1
            assert all(n == 1 for n in blas().values())
        assert torch.get_num_threads() == 2 and blas() == before
        with pytest.raises(RuntimeError):
            with settings.threads(1):
                raise RuntimeError("boom")
        assert torch.get_num_threads() == 2 and blas() == before  # restored on errors too
        with settings.threads(None):
            assert torch.get_num_threads() == 2  # None changes nothing
    finally:
        torch.set_num_threads(previous)
