"""Running the course notebooks headless (papermill) and summarising their key results.

A notebook reports its key results as lines starting with ``RESULT`` (e.g.
``RESULT frozen head val accuracy: 0.941``); :func:`run_course` collects them into its summary.
Executed copies go to an output folder; the committed notebooks are never overwritten.

Usage::

    from tl_course.course.notebooks import run_notebook, run_course
    run_notebook("notebooks/07_frozen_classifier.ipynb", "build/run", {"EPOCHS": 3})
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from .. import settings


def course_notebooks(folder: str | Path | None = None) -> list[Path]:
    """The course notebooks in order (``NN_*.ipynb``).

    Usage: ``for nb in course_notebooks(): print(nb.name)``
    """
    folder = Path(folder) if folder else (settings.project_root() or Path.cwd()) / "notebooks"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def notebook_data(notebook: str | Path) -> str | None:
    """The dataset a notebook's committed outputs were computed on (its metadata
    ``tl_course.data``), or None for a notebook whose results do not depend on the data mode.

    Usage: ``notebook_data("notebooks/07_frozen_classifier.ipynb")  # 'hymenoptera'``
    """
    meta = json.loads(Path(notebook).read_text()).get("metadata", {})
    return meta.get("tl_course", {}).get("data")


def data_notebooks(folder: str | Path | None = None) -> list[Path]:
    """The course notebooks whose results depend on the data mode (a real dataset, or the offline
    fallback): the one list, read from each notebook's metadata, that the CLI, the Makefile, CI
    and the tests use.

    Usage: ``data_notebooks()  # [.../07_frozen_classifier.ipynb, ...]``
    """
    return [p for p in course_notebooks(folder) if notebook_data(p) is not None]


def result_lines(notebook: str | Path) -> list[str]:
    """The ``RESULT ...`` lines printed by an executed notebook, in order.

    Usage: ``result_lines("build/course/07_frozen_classifier.ipynb")``
    """
    nb = json.loads(Path(notebook).read_text())
    lines = []
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            lines += [ln.strip() for ln in text.splitlines() if ln.strip().startswith("RESULT")]
    return lines


def run_notebook(notebook: str | Path, out_dir: str | Path, parameters: dict | None = None,
                 progress: bool = False, cwd: str | Path | None = None) -> tuple[Path, float]:
    """Execute ``notebook`` in a fresh kernel with papermill, writing the executed copy into
    ``out_dir``; returns ``(executed path, seconds)``. The kernel runs in ``cwd`` (default: the
    notebook's folder). Raises papermill's ``PapermillExecutionError`` naming the failing cell.

    Usage: ``run_notebook("notebooks/01_why_transfer.ipynb", "build/run", {"SEED": 1})``
    """
    import papermill as pm

    notebook, out_dir = Path(notebook).resolve(), Path(out_dir).resolve()
    if not notebook.is_file():
        raise FileNotFoundError(f"Notebook not found: {notebook}")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / notebook.name
    start = time.perf_counter()
    # The kernel's folder goes to nbclient (resources.metadata.path), not to papermill's `cwd`:
    # papermill would chdir the whole process, and run_course runs notebooks side by side in
    # threads, where one notebook's chdir (and its restore) moved another's relative output path
    # and could start another's kernel in the wrong folder. Paths are absolute for the same reason.
    pm.execute_notebook(str(notebook), str(out), parameters=parameters or {},
                        resources={"metadata": {"path": str(Path(cwd or notebook.parent).resolve())}},
                        progress_bar=progress, kernel_name="python3", log_output=False,
                        # the kernel's own start-up warnings (e.g. "running over TCP without
                        # encryption": it listens on 127.0.0.1 only) are noise in the course summary
                        extra_arguments=["--IPKernelApp.log_level=ERROR"])
    return out, time.perf_counter() - start


@contextmanager
def kernel_threads(threads: int):
    """Within the block, kernels started from this process run ``threads`` threads for PyTorch,
    OpenMP and BLAS (the environment they inherit); the caller's environment is restored after.

    Usage: ``with kernel_threads(1): pm.execute_notebook(...)``
    """
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: str(threads) for k in names})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def recorded_seconds(notebook: str | Path) -> float:
    """How long the committed run of ``notebook`` took (papermill's record; 0 when unknown).

    Usage: ``sorted(course_notebooks(), key=recorded_seconds, reverse=True)``
    """
    try:
        seconds = json.loads(Path(notebook).read_text()).get("metadata", {}).get("papermill", {}).get("duration")
    except (OSError, ValueError):
        return 0.0
    return float(seconds) if isinstance(seconds, (int, float)) else 0.0


def course_jobs(cores: int | None = None) -> tuple[int, int]:
    """``(notebooks at a time, threads per kernel)`` for :func:`run_course` on ``cores`` cores
    (default: this machine's): one single-threaded kernel per core, up to 4 at a time (each
    kernel holds a backbone and its data in memory), the spare cores shared out as threads.
    On the 2-core machine two single-threaded kernels do more work per second than one kernel
    on two threads, and single-threaded kernels reproduce the committed outputs exactly.

    Usage: ``jobs, threads = course_jobs()``
    """
    cores = max(1, cores or os.cpu_count() or 1)
    jobs = min(cores, 4)
    return jobs, max(1, cores // jobs)


def run_course(out_dir: str | Path = "build/course", notebooks: list[Path] | None = None,
               cwd: str | Path | None = None, jobs: int | None = None, threads: int | None = None) -> list[dict]:
    """Execute every course notebook with its default parameters and print a summary: each
    notebook, seconds taken, and its ``RESULT`` lines. Returns the summary rows, in course order.
    ``cwd``: the kernels' working folder (default: each notebook's own; translated copies run in
    the English notebooks' folder, so their relative paths mean the same). ``jobs`` notebooks run
    at a time, longest first (by the duration recorded in each), each kernel with ``threads``
    threads for PyTorch, OpenMP and BLAS (default: :func:`course_jobs`).

    Usage: ``run_course("build/course")``
    """
    from concurrent.futures import ThreadPoolExecutor

    notebooks = list(notebooks or course_notebooks())
    auto_jobs, auto_threads = course_jobs()
    jobs, threads = max(1, jobs or auto_jobs), max(1, threads or auto_threads)
    print(f"running {len(notebooks)} notebooks, {jobs} at a time, {threads} thread(s) each", flush=True)

    def one(nb: Path) -> dict:
        print(f"running {nb.name} ...", flush=True)
        try:
            out, seconds = run_notebook(nb, out_dir, cwd=cwd)
            row = {"notebook": nb.name, "seconds": seconds, "ok": True, "results": result_lines(out)}
        except Exception as exc:  # report and go on: the summary says which failed
            row = {"notebook": nb.name, "seconds": float("nan"), "ok": False,
                   "results": [f"FAILED: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}"]}
        print(f"finished {nb.name}: {'ok' if row['ok'] else 'FAILED'}", flush=True)
        return row

    start = time.perf_counter()
    order = sorted(notebooks, key=lambda nb: -recorded_seconds(nb))  # longest first
    with kernel_threads(threads), ThreadPoolExecutor(max_workers=jobs) as pool:  # set once for every kernel
        done = dict(zip(order, pool.map(one, order)))
    wall = time.perf_counter() - start
    rows = [done[nb] for nb in notebooks]
    print("\n" + "=" * 78 + "\ncourse summary (executed copies in " + str(out_dir) + ")\n" + "=" * 78)
    for row in rows:
        print(f"{row['notebook']:<44} {row['seconds']:7.1f} s  {'ok' if row['ok'] else 'FAILED'}")
        for line in row["results"]:
            print(f"    {line}")
    total = sum(r["seconds"] for r in rows if r["ok"])
    print(f"total {total:.0f} s of notebooks in {wall:.0f} s wall clock ({jobs} at a time), "
          f"{sum(r['ok'] for r in rows)}/{len(rows)} notebooks ok")
    return rows


def execute_in_place(notebook: str | Path, threads: int = 1) -> float:
    """Execute a course notebook top to bottom in a fresh kernel, in place (the way committed
    outputs are made): the kernel declared as ``python3``, ``threads`` threads for PyTorch, OpenMP
    and BLAS (training results depend on it; the tests use 1). Returns the seconds taken. The
    notebook is replaced only when every cell ran: on an error it is left as it was, and the
    failed copy (with papermill's error marker) is kept beside it as ``.NAME.failed.ipynb``.

    Usage: ``execute_in_place("notebooks/01_why_transfer.ipynb")``
    """
    import nbformat
    import papermill as pm

    path = Path(notebook).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"Notebook not found: {notebook}")
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    staged = path.with_name(f".{path.stem}.executing.ipynb")
    failed = path.with_name(f".{path.stem}.failed.ipynb")
    nbformat.write(nb, str(staged))
    start = time.perf_counter()
    try:
        with kernel_threads(threads):  # inherited by the kernel
            pm.execute_notebook(str(staged), str(staged), cwd=str(path.parent), kernel_name="python3",
                                progress_bar=False, log_output=False,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"])
        done = nbformat.read(str(staged), as_version=4)
        done.metadata.get("papermill", {}).update(input_path=path.name, output_path=path.name)
        nbformat.write(done, str(staged))
        os.replace(staged, path)
        failed.unlink(missing_ok=True)
    except BaseException:
        if staged.exists():
            os.replace(staged, failed)
        raise
    return time.perf_counter() - start


def mark_slides(nb) -> int:
    """Give a notebook (an ``nbformat`` node) the slide metadata RISE / jupyterlab-rise present:
    its title (``# ``) and every section (``## ``) start a slide, every ``### `` a sub-slide;
    other cells follow the slide before them. Slide types already set by hand are kept.
    Returns how many cells changed.

    Usage: ``nb = nbformat.read(p, 4); mark_slides(nb); nbformat.write(nb, p)``
    """
    changed = 0
    for cell in nb.cells:
        if cell.cell_type != "markdown" or "slideshow" in cell.metadata:
            continue
        first = cell.source.lstrip().split("\n", 1)[0]
        kind = "slide" if first.startswith(("# ", "## ")) else "subslide" if first.startswith("### ") else None
        if kind:
            cell.metadata["slideshow"] = {"slide_type": kind}
            changed += 1
    return changed


def add_slide_metadata(notebooks: list[Path] | None = None) -> list[Path]:
    """:func:`mark_slides` on every course notebook (metadata only, no re-execution); returns the
    notebooks that changed.

    Usage: ``add_slide_metadata()``
    """
    import nbformat

    changed = []
    for path in notebooks or course_notebooks():
        nb = nbformat.read(str(path), as_version=4)
        if mark_slides(nb):
            nbformat.write(nb, str(path))
            changed.append(path)
    return changed
