"""The Chinese edition: every markdown cell of every course notebook has a current translation in
notebooks/zh/*.toml, and the translation tooling (catalogue, staleness, stubs, translated notebook,
student edition) works on small notebooks built here."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tl_course import settings
from tl_course.course.notebooks import course_notebooks
from tl_course.course.translation import (catalogue_path, document_path, document_status, dump_catalogue,
                                          load_catalogue, mark_document, markdown_sections, set_translations,
                                          source_hash, translated_notebook, translation_status, write_stubs,
                                          write_translated)

NOTEBOOKS = course_notebooks()
GUIDE = (settings.project_root() or Path.cwd()) / "docs" / "guide.md"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_markdown_cell_has_a_current_chinese_translation(notebook):
    rows = translation_status(notebook, "zh")
    bad = [r for r in rows if r.state in ("stale", "missing")]
    report = "\n".join(f"  cell {r.cell_id} ({r.state}): {r.english.strip().splitlines()[0][:90]}"
                       for r in bad)
    assert not bad, (
        f"{notebook.name}: {len(bad)} markdown cell(s) without a current Chinese translation in "
        f"{catalogue_path(notebook, 'zh')}:\n{report}\n"
        f"List them with their English: tl-course translations --stale {notebook}\n"
        f"Write entries to fill in:     tl-course translations --stubs {notebook}")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_translations_keep_math_code_and_numbers(notebook):
    """A translation keeps the English cell's inline code, math, numbers (written in digits; "1.28
    million" may become "128 万") and headings' levels."""
    import re

    nb = nbformat.read(str(notebook), as_version=4)
    entries = load_catalogue(catalogue_path(notebook, "zh"))
    problems = []
    for cell in nb.cells:
        entry = entries.get(cell.get("id"))
        if cell.cell_type != "markdown" or entry is None or entry["source"] != source_hash(cell.source):
            continue
        for pattern, what in ((r"`[^`]+`", "inline code"), (r"\$\$.+?\$\$|\$[^$]+\$", "math"),
                              (r"(?<![\w.])\d+(?:[.,]\d+)*(?!\d|[.,]\d| million| billion)", "number")):
            found = [{" ".join(m.split()) for m in re.findall(pattern, text, flags=re.S)}
                     for text in (cell.source, entry["text"])]
            missing = sorted(found[0] - found[1])
            if missing:
                problems.append(f"cell {cell.id}: {what} {missing[:3]} not in the translation")
        levels = [len(m) for m in re.findall(r"^(#+) ", cell.source, flags=re.M)]
        if levels != [len(m) for m in re.findall(r"^(#+) ", entry["text"], flags=re.M)]:
            problems.append(f"cell {cell.id}: headings {levels} differ in the translation")
    assert not problems, f"{notebook.name}:\n" + "\n".join(problems)


def test_the_guide_has_a_current_chinese_translation():
    rows = document_status(GUIDE, "zh")
    bad = [r for r in rows if r.state != "current"]
    report = "\n".join(f"  {r.state}: {r.cell_id}" for r in bad)
    assert not bad, (f"{document_path(GUIDE, 'zh')}: {len(bad)} section(s) do not translate the current "
                     f"{GUIDE.name}:\n{report}\nSee them with their English: tl-course translations --stale; "
                     "after translating, record them: tl-course translations --mark-guide")


def test_the_chinese_guide_keeps_code_and_numbers():
    import re

    english = markdown_sections(GUIDE.read_text(encoding="utf-8"))
    chinese = markdown_sections(document_path(GUIDE, "zh").read_text(encoding="utf-8"))
    problems = []
    for en, zh in zip(english, chinese):
        en_text, zh_text = (re.sub(r"```.*?```", "", t, flags=re.S) for t in (en, zh))  # code blocks aside
        for pattern, what in ((r"`[^`]+`", "inline code"), (r"(?<![\w.])\d+(?:[.,]\d+)*(?!\d|[.,]\d)", "number")):
            missing = sorted({" ".join(m.split()) for m in re.findall(pattern, en_text)}
                             - {" ".join(m.split()) for m in re.findall(pattern, zh_text)})
            if missing:
                problems.append(f"{en.splitlines()[0]}: {what} {missing[:5]} not in the translation")
    assert not problems, "\n".join(problems)


def test_markdown_sections_and_document_markers(tmp_path):
    en = tmp_path / "guide.md"
    en.write_text("# Guide\nIntro.\n\n## One\n```bash\n# not a heading\n```\n\n## Two\nText.\n")
    assert [s.splitlines()[0] for s in markdown_sections(en.read_text())] == ["# Guide", "## One", "## Two"]
    zh = document_path(en, "zh")
    assert zh == tmp_path / "guide.zh.md"
    assert [r.state for r in document_status(en)] == ["missing"] * 3
    zh.write_text("# 指南\n简介。\n\n## 一\n```bash\n# not a heading\n```\n\n## 二\n正文。\n")
    assert [r.state for r in document_status(en)] == ["stale"] * 3
    assert mark_document(en) == 3 and mark_document(en) == 0
    assert [r.state for r in document_status(en)] == ["current"] * 3
    assert zh.read_text().startswith("# 指南\n<!-- en:")
    en.write_text(en.read_text().replace("Text.", "New text."))
    assert [r.state for r in document_status(en)] == ["current", "current", "stale"]
    assert "<!-- en:" in document_status(en)[2].english  # the marker to write once translated


def _notebook(tmp_path, cells):
    folder = tmp_path / "notebooks"
    folder.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    path = folder / "01_demo.ipynb"
    nbformat.write(nb, str(path))
    return path


def _cells():
    md1 = nbformat.v4.new_markdown_cell("# 01 · Demo\n\nFine-tuning, with $\\alpha = 0.5$ and `lr`.")
    md2 = nbformat.v4.new_markdown_cell("## Exercises\nSet `answer`.")
    code = nbformat.v4.new_code_cell("answer = 1  # a comment stays English",
                                     outputs=[nbformat.v4.new_output("stream", text="1\n")])
    sol = nbformat.v4.new_code_cell("# BEGIN SOLUTION\nanswer = 2\n# END SOLUTION")
    return md1, md2, code, sol


def test_status_translated_notebook_and_stubs(tmp_path):
    md1, md2, code, sol = _cells()
    path = _notebook(tmp_path, [md1, code, md2, sol])
    assert [r.state for r in translation_status(path)] == ["missing", "missing"]

    set_translations(path, {md1.id: "# 01 · 演示\n\n微调，$\\alpha = 0.5$，`lr`。", md2.id: "## 练习\n设置 `answer`。"})
    assert catalogue_path(path) == tmp_path / "notebooks" / "zh" / "01_demo.toml"
    assert [r.state for r in translation_status(path)] == ["current", "current"]
    zh = translated_notebook(path)
    assert zh.cells[0].source == "# 01 · 演示\n\n微调，$\\alpha = 0.5$，`lr`。"  # backslashes kept as written
    assert zh.cells[1].source == code.source and zh.cells[1].outputs == code.outputs
    assert zh.metadata["tl_course"]["lang"] == "zh" and "untranslated_cells" not in zh.metadata["tl_course"]
    assert nbformat.read(str(path), as_version=4).cells[0].source == md1.source  # source untouched

    # the English changes: the entry is stale, the cell stays English, the stub keeps the old text
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[2].source = "## Exercises\nSet `answer` to two."
    nbformat.write(nb, str(path))
    rows = translation_status(path)
    assert [(r.cell_id, r.state) for r in rows] == [(md1.id, "current"), (md2.id, "stale")]
    zh = translated_notebook(path)
    assert zh.cells[2].source == "## Exercises\nSet `answer` to two."
    assert zh.metadata["tl_course"]["untranslated_cells"] == [md2.id]
    assert write_stubs(path) == [md2.id]
    entry = load_catalogue(catalogue_path(path))[md2.id]
    assert entry["todo"] is True and entry["en"] == "## Exercises\nSet `answer` to two."
    assert entry["text"] == "## 练习\n设置 `answer`。" and entry["source"] == source_hash(nb.cells[2].source)
    assert translation_status(path)[1].state == "stale"  # still todo until a translator clears it
    set_translations(path, {md2.id: "## 练习\n把 `answer` 设为二。"})
    assert [r.state for r in translation_status(path)] == ["current", "current"]
    assert "todo" not in catalogue_path(path).read_text(encoding="utf-8")


def test_orphans_are_reported_and_dropped_by_stubs(tmp_path):
    md1, md2, code, sol = _cells()
    path = _notebook(tmp_path, [md1, md2])
    set_translations(path, {md1.id: "# 01 · 演示", md2.id: "## 练习"})
    nb = nbformat.read(str(path), as_version=4)
    nb.cells = nb.cells[:1]
    nbformat.write(nb, str(path))
    assert [(r.cell_id, r.state) for r in translation_status(path)] == [(md1.id, "current"), (md2.id, "orphan")]
    assert write_stubs(path) == []
    assert list(load_catalogue(catalogue_path(path))) == [md1.id]


@pytest.mark.parametrize("text", ["plain", "has ''' quotes", "back\\slash \\\\ and \"\"\" too", "ends with '", "中文\n\n多行"])
def test_catalogue_round_trip(tmp_path, text):
    cat = tmp_path / "x.toml"
    cat.write_text(dump_catalogue({"abc-1": {"source": "0" * 12, "text": text}}, "01_demo.ipynb"), encoding="utf-8")
    assert load_catalogue(cat)["abc-1"]["text"] == text


def test_chinese_student_edition(tmp_path):
    from tl_course.course.student import write_student_edition

    md1, md2, code, sol = _cells()
    path = _notebook(tmp_path, [md1, code, md2, sol])
    set_translations(path, {md1.id: "# 01 · 演示", md2.id: "## 练习"})
    translated = write_translated(tmp_path / "zh", "zh", [path])
    (out,) = write_student_edition(tmp_path / "student-zh", translated)
    nb = nbformat.read(str(out), as_version=4)
    assert [c.source for c in nb.cells if c.cell_type == "markdown"] == ["# 01 · 演示", "## 练习"]
    assert "answer = None  # TODO" in nb.cells[3].source and "answer = 2" not in nb.cells[3].source
    assert nb.metadata["tl_course"] == {"lang": "zh", "edition": "student"}


def test_cli_translations_and_chinese_student_edition(tmp_path, capsys):
    from tl_course.cli import main

    assert main(["translations"]) == 0  # every cell current (the test above says which are not)
    out = capsys.readouterr().out
    assert "08_fine_tuning.ipynb" in out and "guide.md" in out
    assert main(["student", str(tmp_path / "student-zh"), "--lang", "zh"]) == 0
    written = sorted((tmp_path / "student-zh").glob("*.ipynb"))
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    nb = nbformat.read(str(written[NOTEBOOKS.index(next(p for p in NOTEBOOKS if p.name.startswith("08")))]), 4)
    assert nb.metadata["tl_course"]["edition"] == "student" and nb.metadata["tl_course"]["lang"] == "zh"
    assert nb.cells[0].source.startswith("# 08 · 微调")
    assert "# BEGIN SOLUTION" not in "".join(c.source for c in nb.cells)


def test_book_sources(tmp_path):
    """The staged book (what Sphinx builds; the browser test builds and opens it): every notebook is
    a page in the navigation, with download links; the downloads and the zh pages exist."""
    from tl_course.course.book import stage_book

    for lang in ("en", "zh"):
        src = stage_book(tmp_path / lang, lang, warn=lambda m: None)
        index = (src / "index.md").read_text(encoding="utf-8")
        for nb in NOTEBOOKS:
            assert f"\n{nb.stem}\n" in index, f"{nb.stem} not in the {lang} navigation"
            page = nbformat.read(str(src / nb.name), 4)
            banner = page.cells[1].source
            assert f"downloads/notebooks/{nb.name}" in banner and f"downloads/student/{nb.name}" in banner
            assert (src / "_extra" / "downloads" / "student" / nb.name).is_file()
            assert "widgets" not in page.metadata
        assert "guide\nglossary" in index
        assert (src / "_extra" / "downloads" / "tl-course-student.zip").stat().st_size > 0
        assert "nb_execution_mode = \"off\"" in (src / "conf.py").read_text()
    zh08 = nbformat.read(str(tmp_path / "zh" / "08_fine_tuning.ipynb"), 4)
    assert zh08.cells[0].source.startswith("# 08 · 微调") and "untranslated_cells" not in zh08.metadata["tl_course"]
    assert "# 课程指南" in (tmp_path / "zh" / "guide.md").read_text(encoding="utf-8")


def test_cli_course_lang_zh_runs_the_chinese_notebooks_in_the_notebooks_folder(tmp_path, monkeypatch):
    """`make course LANG=zh` = `tl-course course --lang zh`: the translated notebooks are executed
    (here: recorded) with the English notebooks' folder as working directory."""
    import tl_course.course.notebooks as notebooks
    from tl_course.cli import main

    calls = []

    def fake_run_course(out_dir, nbs=None, cwd=None, **_):
        calls.append((out_dir, [nbformat.read(str(p), 4).cells[0].source.splitlines()[0] for p in nbs], cwd))
        return [{"ok": True}]

    monkeypatch.setattr(notebooks, "run_course", fake_run_course)
    assert main(["course", "--lang", "zh"]) == 0
    (out_dir, titles, cwd), = calls
    assert out_dir == "build/course-zh" and cwd == NOTEBOOKS[0].parent
    assert len(titles) == len(NOTEBOOKS) and titles[8].startswith("# 08 · 微调")
