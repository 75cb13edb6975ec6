"""tl_course.course.notebooks: running a notebook headless with parameters, and reading its RESULT lines."""
import nbformat
import pytest

from tl_course.course.notebooks import result_lines, run_notebook


def _tiny_notebook(path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("SEED = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell('print(f"RESULT seed {SEED}")\nprint("not a result")')]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_run_notebook_injects_parameters_and_keeps_the_kernel_quiet(tmp_path, capfd):
    source = _tiny_notebook(tmp_path / "tiny.ipynb")
    out, seconds = run_notebook(source, tmp_path / "run", {"SEED": 7})
    assert out == tmp_path / "run" / "tiny.ipynb" and seconds > 0
    assert result_lines(out) == ["RESULT seed 7"]
    assert result_lines(source) == []  # the source notebook is never overwritten
    err = capfd.readouterr().err
    assert "IPKernelApp" not in err and "WARNING" not in err, err  # no kernel start-up noise


def test_run_notebook_names_a_missing_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="Notebook not found"):
        run_notebook(tmp_path / "nope.ipynb", tmp_path / "run")


def test_notebook_data_and_data_notebooks(tmp_path):
    from tl_course.course.notebooks import course_notebooks, data_notebooks, notebook_data

    for name, data in [("01_a.ipynb", None), ("07_b.ipynb", "hymenoptera"), ("08_c.ipynb", "digits_m")]:
        nb = nbformat.v4.new_notebook()
        if data:
            nb.metadata["tl_course"] = {"data": data}
        nbformat.write(nb, tmp_path / name)
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "scratch.ipynb")  # not a course notebook
    assert [p.name for p in course_notebooks(tmp_path)] == ["01_a.ipynb", "07_b.ipynb", "08_c.ipynb"]
    assert notebook_data(tmp_path / "07_b.ipynb") == "hymenoptera"
    assert notebook_data(tmp_path / "01_a.ipynb") is None
    assert [p.name for p in data_notebooks(tmp_path)] == ["07_b.ipynb", "08_c.ipynb"]


def test_course_jobs_one_single_threaded_kernel_per_core_up_to_four():
    from tl_course.course.notebooks import course_jobs

    assert course_jobs(1) == (1, 1)
    assert course_jobs(2) == (2, 1)  # the 2-core machine: two single-threaded kernels
    assert course_jobs(8) == (4, 2)
    assert course_jobs(6) == (4, 1)


def _meeting_notebook(path, me, other, seconds_recorded):
    """A notebook that writes ``me`` into its folder and waits (up to 60 s) for ``other``: two of
    them finish only when they run at the same time."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import os, time, pathlib\n"
        f"pathlib.Path({me!r}).touch()\n"
        "deadline = time.time() + 60\n"
        f"while not pathlib.Path({other!r}).exists() and time.time() < deadline:\n"
        "    time.sleep(0.1)\n"
        f"print('RESULT met', pathlib.Path({other!r}).exists(), 'threads', os.environ.get('OMP_NUM_THREADS'))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["papermill"] = {"duration": seconds_recorded}
    nbformat.write(nb, path)
    return path


def test_run_course_runs_notebooks_side_by_side_and_reports_in_course_order(tmp_path, monkeypatch, capsys):
    from tl_course.course.notebooks import run_course

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    a = _meeting_notebook(tmp_path / "01_a.ipynb", "a.flag", "b.flag", 10.0)
    b = _meeting_notebook(tmp_path / "02_b.ipynb", "b.flag", "a.flag", 99.0)  # longest: starts first
    rows = run_course(tmp_path / "out", [a, b], jobs=2, threads=1)
    assert [r["notebook"] for r in rows] == ["01_a.ipynb", "02_b.ipynb"]
    assert all(r["ok"] for r in rows), rows
    assert [r["results"] for r in rows] == [["RESULT met True threads 1"]] * 2
    assert __import__("os").environ["OMP_NUM_THREADS"] == "7"  # the caller's environment is restored
    out = capsys.readouterr().out
    assert "2/2 notebooks ok" in out and "2 at a time, 1 thread(s) each" in out


def test_run_course_never_moves_the_process_working_folder(tmp_path, monkeypatch):
    """Notebooks side by side run in threads: papermill's ``cwd`` would chdir the whole process, so
    one notebook's chdir moved another's relative output path (`make course` once lost 08 this
    way: "No such file or directory: 'build/course/08_fine_tuning.ipynb'"). The kernels get their
    folder directly; the process's folder never changes; a relative out_dir means the caller's."""
    import os
    import threading

    from tl_course.course.notebooks import run_course

    folder = tmp_path / "nbs"
    folder.mkdir()
    a = _meeting_notebook(folder / "01_a.ipynb", "a.flag", "b.flag", 10.0)
    b = _meeting_notebook(folder / "02_b.ipynb", "b.flag", "a.flag", 99.0)
    caller = tmp_path / "caller"
    caller.mkdir()
    monkeypatch.chdir(caller)
    seen, stop = set(), threading.Event()

    def watch():
        while not stop.is_set():
            seen.add(os.getcwd())
            stop.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        rows = run_course("out", [a, b], jobs=2, threads=1)
    finally:
        stop.set()
        watcher.join()
    assert all(r["ok"] for r in rows), rows
    assert (folder / "a.flag").exists() and (folder / "b.flag").exists()  # each kernel ran in its notebook's folder
    assert seen == {str(caller)}
    assert (caller / "out" / "01_a.ipynb").is_file() and (caller / "out" / "02_b.ipynb").is_file()


def test_run_course_starts_the_longest_notebook_first(tmp_path, capsys):
    from tl_course.course.notebooks import run_course

    paths = []
    for name, seconds in [("01_short.ipynb", 5.0), ("02_long.ipynb", 500.0), ("03_unknown.ipynb", None)]:
        path = _tiny_notebook(tmp_path / name)
        nb = nbformat.read(str(path), 4)
        if seconds:
            nb.metadata["papermill"] = {"duration": seconds}
        nbformat.write(nb, str(path))
        paths.append(path)
    rows = run_course(tmp_path / "out", paths, jobs=1, threads=1)
    assert [r["notebook"] for r in rows] == ["01_short.ipynb", "02_long.ipynb", "03_unknown.ipynb"]
    started = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("running ") and "..." in line]
    assert started == ["02_long.ipynb", "01_short.ipynb", "03_unknown.ipynb"]


def test_execute_in_place_runs_the_kernel_on_the_threads_asked_and_restores_the_environment(tmp_path, monkeypatch):
    import os

    from tl_course.course.notebooks import execute_in_place

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    path = tmp_path / "01_t.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nprint('RESULT threads', os.environ['OMP_NUM_THREADS'], os.environ['MKL_NUM_THREADS'])")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    assert execute_in_place(path, threads=1) > 0
    assert result_lines(path) == ["RESULT threads 1 1"]  # executed in place
    assert os.environ["OMP_NUM_THREADS"] == "7" and "MKL_NUM_THREADS" not in os.environ
