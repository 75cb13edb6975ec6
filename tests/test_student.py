"""The student edition (``tl_course.course.student``, ``tl-course student``) and the exercise layer.

What "every exercise works in both editions" means, and where each half is tested:

- *the solution passes its check*: CI executes every instructor notebook top to bottom under nbval
  (``make test-notebooks``): each exercise cell runs its solution then ``ex.check(answer)``, and
  the committed output ("PASS ...") is compared. Here, in addition, each exercise cell
  (:func:`tl_course.course.student.solution_cells`) is executed on its own, in a fresh namespace holding
  only the notebook's parameters cell and its imports, and must print "PASS"; cells that need state
  computed earlier in the notebook (a ``NameError`` here) are skipped, nbval covers them.
- *the student skeleton gets a helpful "not solved yet", never a crash*: for every registered
  exercise, ``verdict(None)`` / ``check(None)`` say "not solved yet" with what is expected and the
  hint; every solution region of every notebook converts to a skeleton that parses and leaves no
  solution line; the same per-exercise execution of the *student* cell prints "not solved yet";
  and a whole student edition, ``00_setup_and_tour`` (a synthetic notebook while 00 does not
  exist), executes headless with papermill to the end (~15-45 s; deselect with
  ``-k "not headless"``).

Usage: ``.venv/bin/python -m pytest -q tests/test_student.py``
"""
from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tl_course.course.exercise_sets import load_all
from tl_course.course.exercises import CHECKERS, EXERCISES, Exercise, get_exercise
from tl_course.course.notebooks import course_notebooks, run_notebook
from tl_course.course.student import (StudentEditionError, solution_cells, student_notebook,
                               student_source, write_student_edition)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = course_notebooks(ROOT / "notebooks")
TODO = "# TODO: your code here"

load_all()
EXERCISE_NAMES = sorted(CHECKERS)
SOLUTION_CELLS = [(nb, name, source) for nb in NOTEBOOKS for name, source in solution_cells(nb)]


def _parses(source: str) -> bool:
    from IPython.core.inputtransformer2 import TransformerManager

    ast.parse(TransformerManager().transform_cell(source))
    return True


# --------------------------------------------------------------------------- student_source
def test_simple_assignment_becomes_none_todo():
    src = ('ex = get_exercise("00.feature_dim")\n# BEGIN SOLUTION\n'
           'answer = load_backbone("efficientnet_lite0").feature_dim\n# END SOLUTION\nex.check(answer)\n')
    assert student_source(src) == (f'ex = get_exercise("00.feature_dim")\nanswer = None  {TODO}\n'
                                   "ex.check(answer)\n")


def test_tuple_starred_and_repeated_assignments_each_name_once_in_order():
    src = ("# BEGIN SOLUTION\nx = 1\nacc, (loss, *rest) = 0.9, (0.1, 2, 3)\nobj.attr = 3\nd[k] = 4\n"
           "x += 1\nn: int = 5\nx = 2\n# END SOLUTION\nex.check((acc, loss))")
    out = student_source(src)
    assert out == "\n".join(f"{name} = None  {TODO}" for name in ["x", "acc", "loss", "rest", "n"]) + \
        "\nex.check((acc, loss))"  # no trailing newline, as in the input


def test_indented_region_inside_function_keeps_indentation_and_gets_pass():
    src = ("def predict(x):\n    # BEGIN SOLUTION\n    y = 2 * x\n    return y + 1\n"
           "    # END SOLUTION\n\nex.check(predict(1))\n")
    out = student_source(src)
    assert out == f"def predict(x):\n    y = None  {TODO}\n\nex.check(predict(1))\n"
    src = "def predict(x):\n    # BEGIN SOLUTION\n    return 2 * x\n    # END SOLUTION\n"
    out = student_source(src)
    assert out == f"def predict(x):\n    {TODO}\n    pass\n"
    ns: dict = {}
    exec(out, ns)
    assert ns["predict"](3) is None  # runs, and check() then says "not solved yet"


def test_region_inside_if_and_nested_blocks():
    src = ("if True:\n    # BEGIN SOLUTION\n    if flag:\n        answer = 1\n    else:\n        answer = 2\n"
           "    with ctx() as handle:\n        score = 3\n    for i in range(3):\n        tmp = i\n"
           "    def helper():\n        inner = 1\n    # END SOLUTION\n    ex.check(answer)\n")
    out = student_source(src)
    assert out == (f"if True:\n    answer = None  {TODO}\n    score = None  {TODO}\n"
                   f"    def helper():\n        {TODO}\n"
                   f'        raise NotImplementedError("helper: TODO: your code here")\n    ex.check(answer)\n')
    assert "tmp" not in out and "handle" not in out and "inner" not in out and "i =" not in out


def test_function_or_class_solution_becomes_a_stub_never_none():
    src = ('ex = get_exercise("t.loss")\n# BEGIN SOLUTION\nimport math\n\n\n'
           "def my_loss(student, teacher, labels, temperature: float = 4.0, *, alpha=0.5) -> float:\n"
           "    return math.log(temperature) * alpha\n\n\nclass Adapter(nn.Module, metaclass=Meta):\n"
           "    def forward(self, x):\n        return x\n\n\n_ = print('x')\n# END SOLUTION\nex.check(my_loss)\n")
    out = student_source(src)
    assert "= None" not in out and "_ =" not in out and "return" not in out
    assert "def my_loss(student, teacher, labels, temperature: float=4.0, *, alpha=0.5) -> float:" in out
    assert "class Adapter(nn.Module, metaclass=Meta):" in out and out.count(TODO) == 2
    ns: dict = {"nn": __import__("torch").nn, "Meta": type}
    exec(out.replace("ex.check(my_loss)\n", "").replace('ex = get_exercise("t.loss")\n', ""), ns)
    with pytest.raises(NotImplementedError, match="my_loss"):
        ns["my_loss"](1, 2, 3)
    with pytest.raises(NotImplementedError, match="Adapter"):
        ns["Adapter"]()


def test_stub_function_check_says_not_solved_yet():
    from tl_course.course import asserts

    def checker(answer):
        assert asserts.call(answer, 2, what="a function") == 4, "not the double."

    ex = Exercise("t.fn", "double", "a function", ["multiply by 2"], checker)
    out = student_source("# BEGIN SOLUTION\ndef double(x):\n    return 2 * x\n# END SOLUTION\n")
    ns: dict = {}
    exec(out, ns)
    for stub in (ns["double"], lambda x: None):
        passed, message = ex.verdict(stub)
        assert not passed and "not solved yet" in message and "multiply by 2" in message
    assert ex.verdict(lambda x: 3)[1].startswith("t.fn: not right yet")
    assert "expected a function" in ex.verdict(3)[1]
    assert ex.verdict(lambda x: 2 * x)[0]


def test_region_without_assignment_top_level_has_no_pass():
    src = "import matplotlib.pyplot as plt\n# BEGIN SOLUTION\nplt.plot([1, 2])\nprint('done')\n# END SOLUTION\n"
    assert student_source(src) == f"import matplotlib.pyplot as plt\n{TODO}\n"


def test_several_regions_magics_and_untouched_cells():
    src = ("%matplotlib inline\n# BEGIN SOLUTION\na = 1\n# END SOLUTION\nprint(a)\n"
           "# BEGIN SOLUTION\nb = a + 1\n# END SOLUTION\nprint(b)\n")
    assert student_source(src) == (f"%matplotlib inline\na = None  {TODO}\nprint(a)\n"
                                   f"b = None  {TODO}\nprint(b)\n")
    plain = "x = 1  # BEGIN SOLUTION is mentioned but not a marker line\nprint(x)"
    assert student_source(plain) is plain


@pytest.mark.parametrize("src, message", [
    ("# BEGIN SOLUTION\nanswer = 1\nex.check(answer)\n", "'# BEGIN SOLUTION' at line 1 has no '# END SOLUTION'"),
    ("answer = 1\n# END SOLUTION\n", "'# END SOLUTION' at line 2 without a '# BEGIN SOLUTION'"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\nanswer = 1\n# END SOLUTION\n# END SOLUTION\n", "nested '# BEGIN SOLUTION' at line 2"),
    ("if x:\n    # BEGIN SOLUTION\n    answer = 1\n# END SOLUTION\n", "not indented like"),
    ("# BEGIN SOLUTION\nif x:\n# END SOLUTION\n    answer = 1\n", "solution region on its own is not valid Python"),
])
def test_unbalanced_or_broken_regions_raise_a_clear_error(src, message):
    where = "notebooks/99_demo.ipynb, cell 7"
    with pytest.raises(StudentEditionError) as info:
        student_source(src, where)
    assert str(info.value).startswith(where) and message in str(info.value)


def test_student_cell_runs_and_says_not_solved_yet(monkeypatch, capsys):
    def checker(answer):
        assert answer == 42, f"{answer} is not 42."

    monkeypatch.setitem(EXERCISES, "test.double", Exercise("test.double", "2 * 21?", "an int",
                                                           ["multiply 2 by 21"], checker))
    src = 'ex = get_exercise("test.double")\n# BEGIN SOLUTION\nanswer = 2 * 21\n# END SOLUTION\nok = ex.check(answer)\n'
    for source, passed, text in [(src, True, "PASS test.double: correct"),
                                 (student_source(src), False, "TODO test.double: not solved yet. "
                                  "Expected: an int. Hint: multiply 2 by 21")]:
        ns = {"get_exercise": get_exercise}
        exec(source, ns)
        assert ns["ok"] is passed and text in capsys.readouterr().out


# --------------------------------------------------------------------------- notebooks
def _instructor_notebook() -> nbformat.NotebookNode:
    """A small instructor notebook: teaching cell with output, instructor note, two exercises."""
    setup = new_code_cell(
        "from tl_course.course.exercises import define, get_exercise\n\n"
        "@define('test.double', 'What is 2 * 21?', 'an int', 'multiply 2 by 21')\n"
        "def _(answer):\n    assert answer == 42, f'{answer} is not 42.'\n\n"
        "@define('test.pair', 'Return the pair (1, 2)', 'a tuple of two ints', 'a tuple literal')\n"
        "def _(answer):\n    assert answer == (1, 2), f'{answer} is not (1, 2).'\n",
        execution_count=2)
    cells = [
        new_markdown_cell("# 99 · A demo"),
        new_code_cell("SEED = 0", metadata={"tags": ["parameters"]}, execution_count=1),
        new_code_cell("print('teaching')", execution_count=3,
                      outputs=[new_output("stream", name="stdout", text="teaching\n")]),
        setup,
        new_markdown_cell("Instructor: the answer is 42.", metadata={"tags": ["instructor"]}),
        new_code_cell('ex = get_exercise("test.double")\n# BEGIN SOLUTION\nanswer = 2 * 21\n'
                      "# END SOLUTION\nex.check(answer)", execution_count=4,
                      metadata={"tags": ["nbval-ignore-output"], "papermill": {"duration": 0.1}},
                      outputs=[new_output("stream", name="stdout", text="PASS test.double: correct.\n")]),
        new_code_cell('ex = get_exercise("test.pair")\n\ndef make_pair():\n    # BEGIN SOLUTION\n'
                      "    return 1, 2\n    # END SOLUTION\n\nex.check(make_pair())", execution_count=5),
        new_code_cell("print('after', answer)", execution_count=6,
                      outputs=[new_output("stream", name="stdout", text="after 42\n")]),
    ]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                            "display_name": "Python 3"},
                                             "papermill": {"input_path": "/somewhere/99_demo.ipynb"}})
    nbformat.validate(nb)
    return nb


def test_synthetic_notebook_round_trip(tmp_path):
    src = tmp_path / "instructor" / "99_demo.ipynb"
    src.parent.mkdir()
    nbformat.write(_instructor_notebook(), str(src))
    before = src.read_bytes()

    paths = write_student_edition(tmp_path / "student", [src])
    assert paths == [tmp_path / "student" / "99_demo.ipynb"] and src.read_bytes() == before
    nb = nbformat.read(str(paths[0]), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["tl_course"]["edition"] == "student" and "papermill" not in nb.metadata
    assert not any("instructor" in c.metadata.get("tags", []) for c in nb.cells)
    assert all("42" not in c.source or c.cell_type == "code" for c in nb.cells)  # the note is gone
    assert len(nb.cells) == 7
    teaching, setup, double, pair, after = nb.cells[2:]
    # teaching cells before the exercises keep their outputs; exercise cells and later ones lose them
    assert teaching.outputs[0]["text"] == "teaching\n" and teaching.execution_count == 3
    assert setup.execution_count == 2
    for cell in (double, pair, after):
        assert cell.outputs == [] and cell.execution_count is None
    assert "papermill" not in double.metadata and double.metadata["tags"] == ["nbval-ignore-output"]
    assert double.source == f'ex = get_exercise("test.double")\nanswer = None  {TODO}\nex.check(answer)'
    assert "    pass\n" in pair.source and "return 1, 2" not in pair.source
    assert [name for name, _ in solution_cells(src)] == ["test.double", "test.pair"]

    everything = student_notebook(src, clear_all_outputs=True)
    assert all(c.get("outputs", []) == [] for c in everything.cells if c.cell_type == "code")


def test_errors_name_notebook_and_cell_and_write_nothing(tmp_path):
    nb = _instructor_notebook()
    nb.cells[5].source = nb.cells[5].source.replace("# END SOLUTION\n", "")
    src = tmp_path / "99_broken.ipynb"
    nbformat.write(nb, str(src))
    with pytest.raises(StudentEditionError, match=r"99_broken\.ipynb, cell 5: '# BEGIN SOLUTION' at line 2"):
        write_student_edition(tmp_path / "out", [src])
    assert not (tmp_path / "out").exists()

    nb = _instructor_notebook()
    nb.cells[0].source += "\n# BEGIN SOLUTION\n42\n# END SOLUTION"
    nbformat.write(nb, str(src))
    with pytest.raises(StudentEditionError, match="markdown cell; tag the cell 'instructor'"):
        student_notebook(src)
    with pytest.raises(ValueError, match="Refusing to write the student edition"):
        write_student_edition(tmp_path, [src])


def test_cli_student_writes_every_course_notebook(tmp_path, capsys):
    from tl_course.cli import main

    if not NOTEBOOKS:
        pytest.skip("no course notebooks in notebooks/ yet")
    before = {nb: nb.read_bytes() for nb in NOTEBOOKS}
    assert main(["student", str(tmp_path / "student")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "student" / nb.name) for nb in NOTEBOOKS]
    for nb in NOTEBOOKS:
        assert nb.read_bytes() == before[nb]
        assert nbformat.read(str(tmp_path / "student" / nb.name), 4).metadata["tl_course"]["edition"] == "student"
    assert main(["student", str(ROOT / "notebooks")]) == 2
    assert "Refusing to write" in capsys.readouterr().err


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_every_solution_region_of_course_notebooks_converts(notebook):
    instructor = nbformat.read(str(notebook), as_version=4)
    edition = student_notebook(notebook)
    assert not any(re.search(r"#\s*(BEGIN|END) SOLUTION", c.source) for c in edition.cells)
    kept = [c for c in instructor.cells if "instructor" not in c.metadata.get("tags", [])]
    assert len(kept) == len(edition.cells)
    for index, (before, after) in enumerate(zip(kept, edition.cells)):
        if before.source == after.source:
            continue
        assert _parses(after.source) and TODO in after.source, f"cell {index}"
        solution = re.findall(r"#\s*BEGIN SOLUTION[^\n]*\n(.*?)#\s*END SOLUTION", before.source, re.S)
        outside = re.sub(r"#\s*BEGIN SOLUTION.*?#\s*END SOLUTION", "", before.source, flags=re.S)
        for line in "".join(solution).splitlines():
            code = line.strip()
            stub = code.startswith(("def ", "async def ", "class "))  # a stub keeps the signature
            if code and not code.startswith("#") and not stub and code not in outside:
                assert code not in after.source, f"cell {index} leaks solution line {code!r}"


def test_every_exercise_used_by_a_notebook_is_registered():
    used = {name for nb in NOTEBOOKS for name, _ in solution_cells(nb)}
    assert None not in used, "a solution region with no get_exercise(...) before it"
    assert used <= set(CHECKERS), f"not registered: {sorted(used - set(CHECKERS))}"


# --------------------------------------------------------------------------- exercise layer
@pytest.mark.parametrize("name", EXERCISE_NAMES)
def test_unsolved_exercise_says_not_solved_yet_with_expected_and_hint(name, capsys):
    ex = get_exercise(name)
    assert ex.name == name and ex.question and ex.expected and ex.hints
    for unsolved in (None, ...):
        passed, message = ex.verdict(unsolved)
        assert passed is False
        assert "not solved yet" in message and ex.expected in message and ex.hints[0] in message
    assert ex.check(None) is False
    out = capsys.readouterr().out
    assert out.startswith(f"TODO {name}: not solved yet") and ex.hints[0] in out
    assert ex.hint() == ex.hints[0]


def _context(notebook: Path) -> str:
    """The notebook's parameters cell and every import statement of its code cells."""
    from IPython.core.inputtransformer2 import TransformerManager

    nb, parts = nbformat.read(str(notebook), as_version=4), []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "parameters" in cell.metadata.get("tags", []):
            parts.append(cell.source)
        code = TransformerManager().transform_cell(cell.source)
        parts += [ast.get_source_segment(code, node) for node in ast.parse(code).body
                  if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(parts)


@pytest.mark.parametrize("notebook, name, source", SOLUTION_CELLS,
                         ids=[f"{nb.stem[:2]}-{name}" for nb, name, _ in SOLUTION_CELLS])
def test_exercise_cell_alone_passes_and_its_student_version_says_not_solved_yet(notebook, name, source,
                                                                                monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    context = _context(notebook)
    for edition, cell, expected in [("student", student_source(source), f"TODO {name}: not solved yet"),
                                    ("instructor", source, f"PASS {name}: correct")]:
        namespace: dict = {"__name__": "__main__"}
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(context, f"<{notebook.name} context>", "exec"), namespace)
                exec(compile(cell, f"<{notebook.name} {edition} {name}>", "exec"), namespace)
        except NameError as exc:
            pytest.skip(f"the {edition} cell of {name} needs notebook state ({exc}); nbval covers it")
        assert expected in out.getvalue(), f"{edition} cell of {name} printed:\n{out.getvalue()}"


# --------------------------------------------------------------------------- headless execution
def _executed_text(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
    return "".join(texts)


NOTEBOOK_00 = ROOT / "notebooks" / "00_setup_and_tour.ipynb"


def test_synthetic_student_edition_executes_headless(tmp_path):
    """Fallback while notebook 00 does not exist (a kernel start costs ~10 s on 2 busy cores)."""
    if NOTEBOOK_00.is_file():
        pytest.skip("notebook 00 exists: test_student_edition_of_notebook_00_executes_headless covers this")
    src = tmp_path / "instructor" / "99_demo.ipynb"
    src.parent.mkdir()
    nbformat.write(_instructor_notebook(), str(src))
    [edition] = write_student_edition(tmp_path / "student", [src])
    executed, _ = run_notebook(edition, tmp_path / "run")
    text = _executed_text(executed)
    assert "TODO test.double: not solved yet. Expected: an int. Hint: multiply 2 by 21" in text
    assert "TODO test.pair: not solved yet" in text and "after None" in text


@pytest.mark.timeout(600)
def test_student_edition_of_notebook_00_executes_headless(tmp_path):
    """The cheapest real notebook (seconds of work: one pretrained model, four photos)."""
    notebook = NOTEBOOK_00
    if not notebook.is_file():
        pytest.skip("notebooks/00_setup_and_tour.ipynb does not exist yet")
    [edition] = write_student_edition(tmp_path / "student", [notebook])
    executed, _ = run_notebook(edition, tmp_path / "run")
    text = _executed_text(executed)
    for name, _ in solution_cells(notebook):
        assert f"TODO {name}: not solved yet" in text and f"PASS {name}" not in text
