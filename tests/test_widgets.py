"""tl_course.course.widgets: controls from plain specs, the Run button calls the wrapped function with the
chosen values, shows its output, and survives its errors."""
import ipywidgets as W
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from tl_course.course.widgets import control, explorer  # noqa: E402


def test_controls_from_specs():
    assert isinstance(control("labels_per_class", [1, 2, 5]), W.SelectionSlider)
    assert control("labels_per_class", [1, 2, 5]).value == 1
    assert isinstance(control("method", ["coral", "dann"]), W.Dropdown)
    lr = control("learning_rate", ("log", 1e-5, 1e-2))
    assert isinstance(lr, W.FloatLogSlider) and 1e-5 <= lr.value <= 1e-2
    assert isinstance(control("n", (0, 4, 1)), W.IntSlider)
    assert isinstance(control("s", (0.0, 1.0, 0.1)), W.FloatSlider)
    assert isinstance(control("flag", True), W.Checkbox)
    assert control("n", {"values": [1, 2, 5], "initial": 5}).value == 5
    ready = W.IntText(value=3)
    assert control("x", ready) is ready


def test_bad_specs_are_explained():
    with pytest.raises(TypeError, match="cannot make a control"):
        control("x", object())
    with pytest.raises(ValueError, match="0 < low < high"):
        control("lr", ("log", 0, 1))


def test_run_calls_compute_with_current_values_and_records_results():
    calls = []

    def compute(n, method):
        calls.append((n, method))
        print(f"n={n} method={method}")
        return n * 10

    ex = explorer(compute, {"n": [1, 2, 5], "method": ["a", "b"]}, title="demo")
    assert calls == []  # nothing runs until asked
    ex.controls["n"].value = 5
    ex.controls["method"].value = "b"
    assert ex.run() == 50
    ex.button.click()  # the button does the same
    assert calls == [(5, "b"), (5, "b")]
    assert ex.results[-1] == ({"n": 5, "method": "b"}, 50)
    assert ex.status.value.startswith("done in") and not ex.button.disabled


def test_errors_are_shown_not_raised_and_the_widget_stays_usable():
    def compute(n):
        if n == 2:
            raise ValueError("two is not allowed")
        return n

    ex = explorer(compute, {"n": [1, 2]})
    ex.controls["n"].value = 2
    assert ex.run() is None
    assert "two is not allowed" in ex.status.value and not ex.button.disabled
    ex.controls["n"].value = 1
    assert ex.run() == 1 and ex.status.value.startswith("done")


def test_figures_are_closed_after_display():
    def compute(k):
        fig, ax = plt.subplots()
        ax.plot(range(k))
        return fig

    ex = explorer(compute, {"k": [3, 4]})
    ex.run()
    assert plt.get_fignums() == []
