"""tl_course.course.present: results are always computed outside PRESENT mode, replayed inside it when
the key and parameters match, and stored as plain data that loads with weights_only=True."""
import numpy as np
import pytest
import torch

from tl_course.course import present


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_COURSE_DATA", str(tmp_path))
    monkeypatch.delenv("TL_COURSE_PRESENT", raising=False)
    return tmp_path


def counter(value):
    calls = []

    def compute():
        calls.append(1)
        return value
    return compute, calls


def test_without_present_mode_everything_is_computed(monkeypatch):
    compute, calls = counter({"acc": 0.9})
    assert present.reuse("nb.cell", compute, seed=0) == {"acc": 0.9}
    assert present.reuse("nb.cell", compute, seed=0) == {"acc": 0.9}
    assert len(calls) == 2


def test_present_mode_replays_a_stored_result(monkeypatch, capsys):
    value = {"acc": np.float64(0.9), "curve": [0.1, 0.2], "pair": (1, "a"), "w": np.arange(3.0),
             "t": torch.ones(2), 3: None}
    compute, calls = counter(value)
    present.reuse("nb.cell", compute, seed=0, budgets=[1, 2])
    monkeypatch.setenv("TL_COURSE_PRESENT", "1")
    got = present.reuse("nb.cell", compute, seed=0, budgets=[1, 2])
    assert len(calls) == 1 and "PRESENT mode: reusing 'nb.cell'" in capsys.readouterr().out
    assert got["acc"] == 0.9 and got["curve"] == [0.1, 0.2] and got["pair"] == (1, "a") and got[3] is None
    assert isinstance(got["w"], np.ndarray) and np.array_equal(got["w"], np.arange(3.0))
    assert torch.equal(got["t"], torch.ones(2))


def test_other_parameters_are_recomputed(monkeypatch):
    compute, calls = counter(1)
    present.reuse("nb.cell", compute, seed=0)
    monkeypatch.setenv("TL_COURSE_PRESENT", "1")
    present.reuse("nb.cell", compute, seed=1)
    present.reuse("nb.other", compute, seed=0)
    assert len(calls) == 3


def test_datasets_are_keyed_by_their_contents_not_their_names(monkeypatch):
    """The real set and its bundled subset share a name (and here a size): passing the dataset
    itself keeps their stored results apart; the same contents replay."""
    import dataclasses

    from tl_course.data import load_dataset

    digits = load_dataset("digits")
    a, b = digits.per_class(5, 2, seed=0), digits.per_class(5, 2, seed=1)
    assert a.name == b.name and len(a.train) == len(b.train)
    compute, calls = counter(1)
    present.reuse("nb.cell", compute, data=a)
    monkeypatch.setenv("TL_COURSE_PRESENT", "1")
    present.reuse("nb.cell", compute, data=b)                 # other images: computed
    present.reuse("nb.cell", compute, data=a.train)           # one split is keyed apart from the splits
    present.reuse("nb.cell", compute, data=digits.per_class(5, 2, seed=0))  # the same contents: replayed
    assert len(calls) == 3
    same_name = dataclasses.replace(b, name=a.name)
    present.reuse("nb.cell", compute, data=same_name)        # b's contents, stored above: replayed
    assert len(calls) == 3


def test_a_damaged_store_is_recomputed_not_trusted(monkeypatch, capsys):
    compute, calls = counter([1, 2])
    present.reuse("nb.cell", compute, seed=0)
    for f in present.results_dir().glob("*.pt"):
        f.write_bytes(b"not a torch file")
    monkeypatch.setenv("TL_COURSE_PRESENT", "1")
    assert present.reuse("nb.cell", compute, seed=0) == [1, 2]
    assert len(calls) == 2 and "recomputing" in capsys.readouterr().out


def test_objects_are_refused_with_a_hint():
    class History:
        pass

    with pytest.raises(TypeError, match="plain data only.*history.rows"):
        present.reuse("nb.cell", lambda: {"h": History()}, seed=0)


def test_stored_files_load_with_weights_only():
    present.reuse("nb.cell", lambda: {"a": np.ones(2)}, seed=0)
    (f,) = present.results_dir().glob("nb.cell-*.pt")
    stored = torch.load(f, weights_only=True)
    assert stored["data"]["key"] == "nb.cell"  # written by tl_course.cache.save (checksummed)
    assert stored["format"].startswith("tl_course.cache/")


@pytest.mark.parametrize("field,value", [("seconds", "fast"), ("seconds", None), ("created", "yesterday"),
                                         ("created", 1e300), ("created", float("nan")), ("seconds", float("inf"))])
def test_mistyped_metadata_is_recomputed(monkeypatch, capsys, field, value):
    from tl_course import cache

    compute, calls = counter([1, 2])
    present.reuse("nb.cell", compute, seed=0)
    (f,) = present.results_dir().glob("nb.cell-*.pt")
    stored = cache.load(f)
    assert f.parent == cache.cache_path("results", "nb.cell", "x").parent
    stored[field] = value  # validly checksummed, but the wrong type or out of range
    cache.save(stored, f)
    monkeypatch.setenv("TL_COURSE_PRESENT", "1")
    assert present.reuse("nb.cell", compute, seed=0) == [1, 2]
    assert len(calls) == 2 and "recomputing" in capsys.readouterr().out


def test_results_folder_can_be_set_apart_from_the_data(tmp_path, monkeypatch):
    """``make test`` keeps its results apart (TL_COURSE_RESULTS): a lecture's stored results are
    never replayed in, nor overwritten by, a test run."""
    compute, calls = counter({"acc": 0.9})
    present.reuse("nb.cell", compute, seed=0)                      # a lecture's result, under the data
    monkeypatch.setenv("TL_COURSE_RESULTS", str(tmp_path / "test-results"))
    monkeypatch.setenv("TL_COURSE_PRESENT", "1")
    present.reuse("nb.cell", compute, seed=0)                      # not replayed from elsewhere
    assert len(calls) == 2 and present.results_dir() == tmp_path / "test-results"
    assert len(list((tmp_path / "test-results").glob("nb.cell-*.pt"))) == 1
    present.reuse("nb.cell", compute, seed=0)                      # replayed from its own folder
    assert len(calls) == 2


def test_an_unusable_results_folder_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TL_COURSE_RESULTS", str(blocker / "results"))
    with pytest.raises(ValueError, match="TL_COURSE_RESULTS"):
        present.reuse("nb.cell", lambda: 1, seed=0)
