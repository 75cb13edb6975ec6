"""The student edition of the course notebooks.

The committed notebooks are the *instructor* edition: each exercise's solution sits between
``# BEGIN SOLUTION`` and ``# END SOLUTION``. The student edition, written into a separate folder
(the committed notebooks are never modified), differs in four ways:

- every solution region becomes a short skeleton with a ``TODO``: each name the solution assigns
  becomes ``name = None  # TODO: your code here`` (a function or class it defines at its top level
  becomes a stub of the same signature raising ``NotImplementedError``; ``_`` is left out), so the
  ``ex.check(answer)`` after it still runs and prints "not solved yet" with what is expected and a
  hint, never a ``NameError``;
- cells tagged ``instructor`` (cell metadata tags; typically markdown notes) are removed;
- outputs and execution counts are cleared for every code cell from the first cell holding a
  solution region onwards: those cells show solutions or results computed from them. Outputs of
  the teaching cells before the exercises are kept, so the edition still reads like a textbook
  chapter with its figures (``clear_all_outputs=True`` clears every output);
- the notebook metadata records ``{"tl_course": {"edition": "student"}}``.

Usage::

    from tl_course.course.student import student_source, write_student_edition
    write_student_edition("build/student")          # or: tl-course student build/student
    print(student_source(cell_source))
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from .exercises import BEGIN, END

INSTRUCTOR_TAG = "instructor"
TODO = "# TODO: your code here"

_BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)#\s*BEGIN SOLUTION\b")
_END_RE = re.compile(r"^(?P<indent>[ \t]*)#\s*END SOLUTION\b")
_EXERCISE_RE = re.compile(r"""get_exercise\(\s*(?P<q>["'])(?P<name>[^"']+)(?P=q)\s*\)""")
# Cell metadata written by an execution (papermill, nbclient): meaningless once outputs are cleared.
_EXECUTION_METADATA = ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled")


class StudentEditionError(ValueError):
    """A notebook cannot be turned into its student edition (e.g. unbalanced solution markers)."""


def _python(source: str) -> str:
    """``source`` with IPython syntax (``%magic``, ``!shell``) turned into Python, for ``ast``."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython ships with the course environment
        return source
    return TransformerManager().transform_cell(source)


def _parse(source: str, where: str, what: str) -> ast.Module:
    try:
        return ast.parse(_python(source))
    except SyntaxError as exc:
        raise StudentEditionError(f"{where}: {what} is not valid Python "
                                  f"(line {exc.lineno}: {exc.msg}).") from None


def _target_names(target: ast.AST) -> list[str]:
    """Names bound by an assignment target (``a``, ``a, (b, *c)``); not ``obj.x`` or ``d[k]``."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for elt in target.elts for name in _target_names(elt)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _assigned_names(body: list[ast.stmt]) -> list[str]:
    """Names a solution assigns at its top level, in order of first assignment.

    Top level includes the bodies of ``if``/``else``, ``try``/``except``/``finally``, ``with`` and
    ``match`` (they run at most once, so ``if ...: answer = 1 else: answer = 2`` assigns
    ``answer``), but not loop bodies (per-iteration temporaries), nested functions or classes.
    ``def``/``class`` statements count as assigning their name. Loop variables, ``with ... as``
    names and imports are helpers, not answers, and are left out.
    """
    names: list[str] = []
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            found = [n for t in stmt.targets for n in _target_names(t)]
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
            found = _target_names(stmt.target)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found = [stmt.name]
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.NamedExpr):
            found = _target_names(stmt.value.target)
        elif isinstance(stmt, ast.If):
            found = _assigned_names(stmt.body + stmt.orelse)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            found = _assigned_names(stmt.body)
        elif isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
            found = _assigned_names(stmt.body + [s for h in stmt.handlers for s in h.body]
                                    + stmt.orelse + stmt.finalbody)
        elif type(stmt).__name__ == "Match":
            found = _assigned_names([s for case in stmt.cases for s in case.body])
        else:
            found = []
        names += [n for n in found if n not in names]
    return names


def _stub(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, indent: str) -> list[str]:
    """A stub for a function or class the solution defines: same name and signature (bases), a
    ``TODO``, and a body raising ``NotImplementedError``, so the learner sees what to write and
    ``check`` says "not solved yet" (never ``name = None`` where a function is expected)."""
    message = f'raise NotImplementedError("{node.name}: {TODO[2:]}")'
    if isinstance(node, ast.ClassDef):
        bases = ", ".join(ast.unparse(b) for b in node.bases + node.keywords)
        return [f"{indent}class {node.name}{f'({bases})' if bases else ''}:\n",
                f"{indent}    {TODO}\n",
                f"{indent}    def __init__(self, *args, **kwargs):\n",
                f"{indent}        {message}\n"]
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    keyword = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    return [f"{indent}{keyword} {node.name}({ast.unparse(node.args)}){returns}:\n",
            f"{indent}    {TODO}\n",
            f"{indent}    {message}\n"]


def _skeleton(region: list[str], indent: str, where: str) -> list[str]:
    """The student lines replacing one solution region (its lines without the markers)."""
    code = "".join(line[len(indent):] if line.startswith(indent) else line.lstrip(" \t")
                   for line in region)
    body = _parse(code, where, "the solution region on its own").body
    definitions = {stmt.name: stmt for stmt in body
                   if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    names = [name for name in _assigned_names(body) if name != "_"]  # ``_``: a throwaway, not an answer
    if names:
        lines: list[str] = []
        for name in names:
            lines += _stub(definitions[name], indent) if name in definitions else [f"{indent}{name} = None  {TODO}\n"]
        return lines
    lines = [f"{indent}{TODO}\n"]
    if indent:  # the region may be the only statement of its block (e.g. a function body)
        lines.append(f"{indent}pass\n")
    return lines


def student_source(cell_source: str, where: str = "cell") -> str:
    """``cell_source`` with every ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` region replaced by a
    skeleton at the same indentation: ``name = None  # TODO: your code here`` for each name the
    solution assigns at its top level (a stub raising ``NotImplementedError`` for a function or class
    it defines), or ``# TODO: your code here`` (plus ``pass`` inside an indented block) when it
    assigns nothing. Raises :class:`StudentEditionError` naming ``where``
    for unbalanced or nested markers, or when the result is not valid Python.

    Usage: ``student_source(cell.source, where="notebooks/03_domain.ipynb, cell 17")``
    """
    if not _has_solution(cell_source):
        return cell_source
    lines = cell_source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
        trailing_newline = False
    else:
        trailing_newline = True
    out: list[str] = []
    region: list[str] | None = None
    indent, begin_line = "", 0
    for number, line in enumerate(lines, start=1):
        begin, end = _BEGIN_RE.match(line), _END_RE.match(line)
        if begin:
            if region is not None:
                raise StudentEditionError(f"{where}: nested '{BEGIN}' at line {number} (the region "
                                          f"opened at line {begin_line} has no '{END}' before it).")
            region, indent, begin_line = [], begin.group("indent"), number
        elif end:
            if region is None:
                raise StudentEditionError(f"{where}: '{END}' at line {number} without a '{BEGIN}' "
                                          "before it.")
            if end.group("indent") != indent:
                raise StudentEditionError(f"{where}: '{END}' at line {number} is not indented like "
                                          f"the '{BEGIN}' at line {begin_line}.")
            out += _skeleton(region, indent, f"{where}, solution at line {begin_line}")
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    if region is not None:
        raise StudentEditionError(f"{where}: '{BEGIN}' at line {begin_line} has no '{END}'.")
    result = "".join(out)
    if not trailing_newline:
        result = result[:-1]
    _parse(result, where, "the student version of this cell")
    return result


def _has_solution(source: str) -> bool:
    return any(_BEGIN_RE.match(line) or _END_RE.match(line) for line in source.splitlines())


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _read(notebook):
    import nbformat

    if isinstance(notebook, (str, Path)):
        return nbformat.read(str(notebook), as_version=4), str(notebook)
    return notebook, "notebook"


def solution_cells(notebook) -> list[tuple[str | None, str]]:
    """``(exercise name, instructor cell source)`` for every code cell holding a solution region,
    in notebook order. The name is the ``get_exercise("...")`` in the cell, else the last one in an
    earlier cell, else None. ``notebook`` is a path or an ``nbformat`` notebook.

    Usage: ``for name, source in solution_cells("notebooks/00_setup_and_tour.ipynb"): ...``
    """
    nb, _ = _read(notebook)
    cells, current = [], None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        names = [m.group("name") for m in _EXERCISE_RE.finditer(cell.source)]
        current = names[-1] if names else current
        if _has_solution(cell.source):
            cells.append((names[0] if len(names) == 1 else current, cell.source))
    return cells


def student_notebook(notebook, clear_all_outputs: bool = False):
    """The student edition of ``notebook`` (a path or an ``nbformat`` notebook, left unchanged) as a
    new ``nbformat`` notebook. See the module docstring for what changes.

    Usage: ``nb = student_notebook("notebooks/00_setup_and_tour.ipynb")``
    """
    import copy

    nb, name = _read(notebook)
    nb = copy.deepcopy(nb)
    cells, downstream = [], False
    for index, cell in enumerate(nb.cells):
        if INSTRUCTOR_TAG in _tags(cell):
            continue
        where = f"{name}, cell {index}"
        if cell.cell_type != "code":
            if _has_solution(cell.source):
                raise StudentEditionError(f"{where}: solution markers in a {cell.cell_type} cell; "
                                          f"tag the cell '{INSTRUCTOR_TAG}' instead.")
            cells.append(cell)
            continue
        if _has_solution(cell.source):
            cell.source = student_source(cell.source, where)
            downstream = True
        if downstream or clear_all_outputs:
            cell.outputs, cell.execution_count = [], None
            for key in _EXECUTION_METADATA:
                cell.metadata.pop(key, None)
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("papermill", None)  # the instructor run's paths, parameters and timings
    nb.metadata.setdefault("tl_course", {})["edition"] = "student"
    return nb


def write_student_edition(out_dir: str | Path, notebooks: list[Path] | None = None,
                          clear_all_outputs: bool = False) -> list[Path]:
    """Write the student edition of every course notebook (default:
    :func:`tl_course.notebooks.course_notebooks`) into ``out_dir``, same file names; returns the
    written paths. Refuses to write into a folder holding one of the input notebooks. Every
    notebook is converted before any is written, so an error leaves ``out_dir`` untouched.

    Usage: ``write_student_edition("build/student")``
    """
    import nbformat

    from .notebooks import course_notebooks

    sources = [Path(p) for p in (course_notebooks() if notebooks is None else notebooks)]
    if not sources:
        raise FileNotFoundError("No course notebooks (notebooks/NN_*.ipynb) to convert.")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file, not a folder: choose a folder for the student edition.")
    for src in sources:
        if not src.is_file():
            raise FileNotFoundError(f"Notebook not found: {src}")
        if out_dir.resolve() == src.resolve().parent:
            raise ValueError(f"Refusing to write the student edition into {out_dir}: it holds the "
                             f"instructor notebook {src.name}. Choose another folder.")
    converted = [(out_dir / src.name, student_notebook(src, clear_all_outputs)) for src in sources]
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, nb in converted:
        nbformat.validate(nb)
        nbformat.write(nb, str(path))
    return [path for path, _ in converted]
