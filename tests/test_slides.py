"""Every course notebook can be presented: its title and every section start a slide."""
from pathlib import Path

import nbformat
import pytest

from tl_course.course.notebooks import course_notebooks, mark_slides

NOTEBOOKS = course_notebooks(Path(__file__).resolve().parents[1] / "notebooks")


def test_mark_slides_marks_headings_and_keeps_hand_made_choices():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("## Section"), nbformat.v4.new_markdown_cell("### Part"),
        nbformat.v4.new_markdown_cell("plain text"),
        nbformat.v4.new_markdown_cell("## Skipped", metadata={"slideshow": {"slide_type": "skip"}})])
    assert mark_slides(nb) == 3
    kinds = [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells]
    assert kinds == ["slide", None, "slide", "subslide", None, "skip"]
    assert mark_slides(nb) == 0  # idempotent


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_slide_metadata(path):
    nb = nbformat.read(path, as_version=4)
    missing = [c.source.split("\n", 1)[0] for c in nb.cells
               if c.cell_type == "markdown" and c.source.lstrip().startswith(("# ", "## "))
               and "slideshow" not in c.metadata]
    assert not missing, (f"{path.name}: headings without slide metadata {missing}; run "
                         "`make slides` to add it")
