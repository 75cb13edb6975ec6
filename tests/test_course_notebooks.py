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
