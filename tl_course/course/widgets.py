"""Live explorers for the notebooks: a few controls, a Run button, an output area.

Each explorer wraps a plain function that the notebook also calls once without the widget, so
headless execution (papermill, nbval, CI) shows a real result and the widget only adds the live
knobs. The wrapped function runs when the learner presses **Run**, not on every slider move: each
run trains something for a few seconds, and a queue of half-finished runs would feel anything but
live.

Usage::

    from tl_course.course.widgets import explorer
    explorer(compare_at_budget, {"labels_per_class": [1, 2, 5, 10, 20]}, title="Data efficiency")
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import ipywidgets as W
from IPython.display import display

__all__ = ["Explorer", "explorer", "control"]


def control(name: str, spec: Any) -> W.ValueWidget:
    """The widget for one argument of the wrapped function.

    ``spec`` may be: a list of numbers (a slider over exactly those values), a list of strings (a
    dropdown), ``("log", low, high)`` (a logarithmic slider, e.g. for a learning rate),
    ``(low, high, step)`` (an int or float slider), a bool (a checkbox) or a ready-made widget.
    The first value of a list is the initial one; pass ``(spec, initial)`` in a dict to choose.

    Usage: ``control("lr", ("log", 1e-5, 1e-2))``
    """
    description = name.replace("_", " ")
    style = {"description_width": "initial"}
    if isinstance(spec, W.ValueWidget):
        return spec
    if isinstance(spec, dict):
        widget = control(name, spec["values"])
        widget.value = spec["initial"]
        return widget
    if isinstance(spec, bool):
        return W.Checkbox(value=spec, description=description, style=style)
    if isinstance(spec, tuple) and len(spec) == 3 and spec[0] == "log":
        _, low, high = spec
        if not 0 < low < high:
            raise ValueError(f"{name}: a log slider needs 0 < low < high, got {spec}.")
        import math
        lo, hi = math.log10(low), math.log10(high)
        return W.FloatLogSlider(value=10 ** ((lo + hi) / 2), base=10, min=lo, max=hi, step=0.25,
                                description=description, readout_format=".0e", style=style,
                                continuous_update=False)
    if isinstance(spec, tuple) and len(spec) == 3:
        low, high, step = spec
        cls = W.IntSlider if all(isinstance(v, int) for v in spec) else W.FloatSlider
        return cls(value=low, min=low, max=high, step=step, description=description, style=style,
                   continuous_update=False)
    if isinstance(spec, (list, range)) and len(spec) > 0:
        values = list(spec)
        if all(isinstance(v, str) for v in values):
            return W.Dropdown(options=values, value=values[0], description=description, style=style)
        return W.SelectionSlider(options=values, value=values[0], description=description,
                                 style=style, continuous_update=False)
    raise TypeError(f"{name}: cannot make a control from {spec!r}; use a list of values, "
                    "(low, high, step), ('log', low, high), a bool or an ipywidgets widget.")


class Explorer(W.VBox):
    """A titled row of controls with a Run button; the wrapped function's printed output, return
    value and figures appear underneath, with how long the run took. ``run()`` does what the
    button does (tests and scripts use it); ``results`` keeps every run's inputs and return value.
    """

    def __init__(self, compute: Callable[..., Any], controls: Mapping[str, Any], title: str = "",
                 note: str = "", run_label: str = "Run"):
        self.compute = compute
        self.controls = {name: control(name, spec) for name, spec in controls.items()}
        self.button = W.Button(description=run_label, button_style="primary", icon="play")
        self.status = W.HTML(value=note or "Choose values, then press <b>Run</b>.")
        self.output = W.Output()
        self.results: list[tuple[dict, Any]] = []
        self.button.on_click(lambda _: self.run())
        header = [W.HTML(f"<h4 style='margin:4px 0'>{title}</h4>")] if title else []
        super().__init__(header + [W.HBox(list(self.controls.values()) + [self.button]), self.status,
                                   self.output])

    @property
    def values(self) -> dict:
        """The current value of every control, by argument name."""
        return {name: widget.value for name, widget in self.controls.items()}

    def run(self) -> Any:
        """Run the wrapped function with the current values and show what it produced."""
        import matplotlib.pyplot as plt

        values = self.values
        self.button.disabled = True
        self.status.value = "running " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in values.items()) + " ..."
        start = time.perf_counter()
        result, error = None, None
        self.output.clear_output(wait=True)
        with self.output:
            try:
                result = self.compute(**values)
                if isinstance(result, plt.Figure):
                    display(result)
                    plt.close(result)
                elif result is not None:
                    display(result)
                for number in plt.get_fignums():  # figures drawn with pyplot inside compute
                    display(plt.figure(number))
                plt.close("all")
            except Exception as exc:  # shown to the learner, the widget stays usable
                error = exc
                print(f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - start
        self.status.value = (f"failed after {seconds:.1f} s: {error}" if error is not None
                             else f"done in {seconds:.1f} s")
        self.button.disabled = False
        self.results.append((values, result))
        return result


def explorer(compute: Callable[..., Any], controls: Mapping[str, Any], title: str = "",
             note: str = "") -> Explorer:
    """A live explorer around ``compute``: one control per entry of ``controls`` (see
    :func:`control`), a Run button, and an output area.

    Usage: ``explorer(finetune_briefly, {"unfrozen_stages": [0, 1, 2, 3], "lr": ("log", 1e-5, 1e-2)})``
    """
    return Explorer(compute, controls, title=title, note=note)
