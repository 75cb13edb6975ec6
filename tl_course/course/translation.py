"""Translations of the course notebooks, from one source.

Code cells are shared by every language; each markdown cell of a notebook has its translation in
a catalogue kept next to the notebooks, ``notebooks/<lang>/<notebook stem>.toml`` (e.g.
``notebooks/zh/08_fine_tuning.toml``), keyed by the cell's id::

    [cells."a1b2c3d4"]
    source = "3f2a9c0d1e4b"   # short sha256 of the English cell this text translates
    text = '''
    ## 微调 ...
    '''

An entry is *current* when ``source`` is the hash of the English cell as it is now, *stale* when
the English changed since (or the entry still carries ``todo = true``), and a cell without an
entry is *missing*. :func:`translated_notebook` builds the translated notebook: the same cells,
outputs and metadata, every markdown cell replaced by its translation (a stale or missing one
stays English and is counted). ``tl-course translations --stale`` lists what needs work with the
English text; ``tl-course translations --stubs`` writes, for each stale or missing cell, an entry
marked ``todo = true`` holding the new English (``en``), the new hash and the old translation:
translate ``text``, then delete the ``todo`` and ``en`` lines.

The course guide is translated as a whole file, ``docs/guide.<lang>.md``, with the same headings
in the same order; under each heading a marker ``<!-- en:3f2a9c0d1e4b -->`` holds the short
sha256 of the English section (heading to next heading) it translates, so
:func:`document_status` tells which sections are stale in the same way.

Usage::

    from tl_course.course.translation import translation_status, translated_notebook
    for row in translation_status("notebooks/08_fine_tuning.ipynb"): print(row.cell_id, row.state)
    nb = translated_notebook("notebooks/08_fine_tuning.ipynb", "zh")
"""
from __future__ import annotations

import copy
import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

LANGUAGES = {"zh": "中文"}
HASH_LENGTH = 12


class TranslationError(ValueError):
    """A catalogue cannot be read, or a language is unknown."""


@dataclass(frozen=True)
class CellStatus:
    """One markdown cell (or one orphaned catalogue entry) and the state of its translation:
    ``current``, ``stale``, ``missing`` or ``orphan`` (an entry whose cell no longer exists)."""

    notebook: str
    cell_id: str
    state: str
    english: str


def source_hash(text: str) -> str:
    """The short sha256 (first 12 hex digits) of an English markdown cell's source.

    Usage: ``source_hash(cell.source)``
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def _check_lang(lang: str) -> str:
    if lang not in LANGUAGES:
        raise TranslationError(f"Unknown language {lang!r}; known: {', '.join(LANGUAGES)}.")
    return lang


def catalogue_path(notebook: str | Path, lang: str = "zh") -> Path:
    """Where the ``lang`` catalogue of ``notebook`` lives: ``<its folder>/<lang>/<stem>.toml``.

    Usage: ``catalogue_path("notebooks/08_fine_tuning.ipynb")  # notebooks/zh/08_fine_tuning.toml``
    """
    notebook = Path(notebook)
    return notebook.parent / _check_lang(lang) / f"{notebook.stem}.toml"


def load_catalogue(path: str | Path) -> dict[str, dict]:
    """The entries of a catalogue file, ``{cell id: {"source": hash, "text": str, ...}}``;
    an absent file is an empty catalogue.

    Usage: ``load_catalogue("notebooks/zh/08_fine_tuning.toml")["a1b2c3d4"]["text"]``
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TranslationError(f"{path}: not valid TOML ({exc}).") from None
    cells = data.get("cells", {})
    for cell_id, entry in cells.items():
        if not isinstance(entry.get("text"), str) or not isinstance(entry.get("source"), str):
            raise TranslationError(f"{path}: entry {cell_id!r} needs a 'source' hash and a 'text'.")
        for key in ("text", "en"):  # the writer ends multi-line strings with a newline of its own
            if isinstance(entry.get(key), str) and entry[key].endswith("\n"):
                entry[key] = entry[key][:-1]
    return cells


def _toml_string(text: str) -> str:
    """A TOML multi-line string holding ``text`` exactly: literal (no escapes, so LaTeX stays
    readable) unless the text contains three single quotes."""
    if "'''" not in text and "\r" not in text:
        return "'''\n" + text + "\n'''"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")
    return '"""\n' + escaped + '\n"""'


def dump_catalogue(entries: dict[str, dict], notebook_name: str, lang: str = "zh") -> str:
    """The text of a catalogue file for ``entries`` (in the given order).

    Usage: ``path.write_text(dump_catalogue(entries, "08_fine_tuning.ipynb"))``
    """
    lines = [f"# {LANGUAGES[_check_lang(lang)]} translation of notebooks/{notebook_name}, one entry per "
             "markdown cell, keyed by cell id.",
             "# source: short sha256 of the English cell the text translates "
             "(tl_course.course.translation).",
             "# `tl-course translations --stale` lists stale or missing cells; `--stubs` writes "
             "entries to fill in.", ""]
    for cell_id, entry in entries.items():
        lines.append(f'[cells."{cell_id}"]')
        if entry.get("todo"):
            lines.append("todo = true")
        lines.append(f'source = "{entry["source"]}"')
        if entry.get("todo") and "en" in entry:
            lines.append(f"en = {_toml_string(entry['en'])}")
        lines.append(f"text = {_toml_string(entry['text'])}")
        lines.append("")
    return "\n".join(lines)


def _read_notebook(notebook):
    import nbformat

    if isinstance(notebook, (str, Path)):
        return nbformat.read(str(notebook), as_version=4), Path(notebook)
    return notebook, None


def _markdown_cells(nb) -> list:
    cells = [c for c in nb.cells if c.cell_type == "markdown"]
    for cell in cells:
        if not cell.get("id"):
            raise TranslationError("A markdown cell has no id (nbformat < 4.5); run "
                                   "nbformat.validator.normalize or re-save the notebook.")
    return cells


def translation_status(notebook: str | Path, lang: str = "zh") -> list[CellStatus]:
    """The state of the ``lang`` translation of every markdown cell of ``notebook``, in cell
    order, then one ``orphan`` row per catalogue entry whose cell is gone.

    Usage: ``[r.cell_id for r in translation_status(nb) if r.state != "current"]``
    """
    nb, path = _read_notebook(notebook)
    entries = load_catalogue(catalogue_path(path, lang))
    rows, seen = [], set()
    for cell in _markdown_cells(nb):
        seen.add(cell.id)
        entry = entries.get(cell.id)
        if entry is None:
            state = "missing"
        elif entry.get("todo") or entry["source"] != source_hash(cell.source):
            state = "stale"
        else:
            state = "current"
        rows.append(CellStatus(path.name, cell.id, state, cell.source))
    rows += [CellStatus(path.name, cell_id, "orphan", "") for cell_id in entries if cell_id not in seen]
    return rows


def translated_notebook(notebook: str | Path, lang: str = "zh"):
    """``notebook`` (a path; the file is not changed) with every markdown cell replaced by its
    ``lang`` translation; code cells, outputs and metadata are shared. A cell whose translation is
    stale or missing stays English. The notebook metadata records ``tl_course.lang`` and, when
    any, ``tl_course.untranslated_cells`` (their ids).

    Usage: ``nbformat.write(translated_notebook("notebooks/08_fine_tuning.ipynb"), out)``
    """
    nb, path = _read_notebook(notebook)
    nb = copy.deepcopy(nb)
    entries = load_catalogue(catalogue_path(path, lang))
    untranslated = []
    for cell in _markdown_cells(nb):
        entry = entries.get(cell.id)
        if entry is None or entry.get("todo") or entry["source"] != source_hash(cell.source):
            untranslated.append(cell.id)
            continue
        cell.source = entry["text"]
    meta = nb.metadata.setdefault("tl_course", {})
    meta["lang"] = lang
    if untranslated:
        meta["untranslated_cells"] = untranslated
    return nb


def write_translated(out_dir: str | Path, lang: str = "zh", notebooks: list[Path] | None = None,
                     warn=print) -> list[Path]:
    """Write the ``lang`` edition of every course notebook (default: all of them) into
    ``out_dir``, same file names; returns the paths. ``warn`` gets one line per notebook with
    untranslated cells.

    Usage: ``write_translated("build/zh/notebooks")``
    """
    import nbformat

    from .notebooks import course_notebooks

    sources = [Path(p) for p in (course_notebooks() if notebooks is None else notebooks)]
    out_dir = Path(out_dir)
    for src in sources:
        if out_dir.resolve() == src.resolve().parent:
            raise ValueError(f"Refusing to write translations over the English notebooks in {out_dir}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sources:
        nb = translated_notebook(src, lang)
        missing = nb.metadata["tl_course"].get("untranslated_cells", [])
        if missing:
            warn(f"{src.name}: {len(missing)} markdown cell(s) without a current {lang} translation "
                 f"stay English (tl-course translations --stale {src})")
        nbformat.write(nb, str(out_dir / src.name))
        written.append(out_dir / src.name)
    return written


def write_stubs(notebook: str | Path, lang: str = "zh") -> list[str]:
    """Rewrite the ``lang`` catalogue of ``notebook`` in cell order: every stale or missing cell
    gets an entry marked ``todo = true`` with the current English (``en``), its hash and the old
    translation (or the English, for a missing one) as ``text``; orphaned entries are dropped.
    Current entries are kept as they are. Returns the ids of the cells marked ``todo``.

    Usage: ``write_stubs("notebooks/08_fine_tuning.ipynb")``
    """
    nb, path = _read_notebook(notebook)
    cat = catalogue_path(path, lang)
    entries = load_catalogue(cat)
    out, todo = {}, []
    for cell in _markdown_cells(nb):
        entry = entries.get(cell.id)
        if entry is not None and not entry.get("todo") and entry["source"] == source_hash(cell.source):
            out[cell.id] = {"source": entry["source"], "text": entry["text"]}
            continue
        out[cell.id] = {"todo": True, "source": source_hash(cell.source), "en": cell.source,
                        "text": entry["text"] if entry is not None else cell.source}
        todo.append(cell.id)
    cat.parent.mkdir(parents=True, exist_ok=True)
    cat.write_text(dump_catalogue(out, path.name, lang), encoding="utf-8")
    return todo


def set_translations(notebook: str | Path, texts: dict[str, str], lang: str = "zh") -> None:
    """Store ``texts`` (``{cell id: translated text}``) as the current translations of those
    markdown cells of ``notebook`` (hashing the English as it is now); other entries are kept.
    The catalogue is rewritten in cell order.

    Usage: ``set_translations("notebooks/08_fine_tuning.ipynb", {"a1b2c3d4": "## 微调"})``
    """
    nb, path = _read_notebook(notebook)
    cat = catalogue_path(path, lang)
    entries = load_catalogue(cat)
    cells = {c.id: c for c in _markdown_cells(nb)}
    unknown = sorted(set(texts) - set(cells))
    if unknown:
        raise TranslationError(f"{path.name}: no markdown cell with id {', '.join(unknown)}.")
    out = {}
    for cell_id, cell in cells.items():
        if cell_id in texts:
            out[cell_id] = {"source": source_hash(cell.source), "text": texts[cell_id].strip("\n")}
        elif cell_id in entries:
            out[cell_id] = entries[cell_id]
    cat.parent.mkdir(parents=True, exist_ok=True)
    cat.write_text(dump_catalogue(out, path.name, lang), encoding="utf-8")


_MARKER = re.compile(r"<!-- en:([0-9a-f]{%d}) -->" % HASH_LENGTH)


def markdown_sections(text: str) -> list[str]:
    """``text`` split before every ATX heading (``#`` to ``######`` at the start of a line, outside
    fenced code blocks); the part before the first heading, if any, is the first section.

    Usage: ``[s.splitlines()[0] for s in markdown_sections(Path("docs/guide.md").read_text())]``
    """
    sections, current, fence = [], [], None
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
        elif fence is not None and stripped.startswith(fence):
            fence = None
        elif fence is None and re.match(r"#{1,6} ", line) and current:
            sections.append("".join(current))
            current = []
        current.append(line)
    if current:
        sections.append("".join(current))
    return sections


def _section_hash(section: str) -> str:
    return source_hash(section.strip())


def document_path(english: str | Path, lang: str = "zh") -> Path:
    """The ``lang`` translation of a course document: ``docs/guide.md`` -> ``docs/guide.zh.md``.

    Usage: ``document_path("docs/guide.md")``
    """
    english = Path(english)
    return english.with_name(f"{english.stem}.{_check_lang(lang)}{english.suffix}")


def document_status(english: str | Path, lang: str = "zh") -> list[CellStatus]:
    """The state of each section of the ``lang`` translation of a markdown document, in order:
    ``current`` when the section's ``<!-- en:HASH -->`` marker is the hash of the English section
    at the same position, ``stale`` otherwise (``english`` holds the section's English and, on
    its last line, the hash to write into the marker once translated), ``missing`` when the
    translation has fewer sections; ``orphan`` for extra translated sections.

    Usage: ``[r.cell_id for r in document_status("docs/guide.md") if r.state != "current"]``
    """
    english = Path(english)
    target = document_path(english, lang)
    en = markdown_sections(english.read_text(encoding="utf-8"))
    tr = markdown_sections(target.read_text(encoding="utf-8")) if target.is_file() else []
    rows = []
    for i, section in enumerate(en):
        heading = section.strip().splitlines()[0] if section.strip() else f"section {i}"
        if i >= len(tr):
            state = "missing"
        else:
            marker = _MARKER.search(tr[i])
            state = "current" if marker and marker.group(1) == _section_hash(section) else "stale"
        note = f"\n(marker for the translated section: <!-- en:{_section_hash(section)} -->)"
        rows.append(CellStatus(target.name, heading, state, section.strip() + note))
    rows += [CellStatus(target.name, s.strip().splitlines()[0], "orphan", "") for s in tr[len(en):]]
    return rows


def mark_document(english: str | Path, lang: str = "zh") -> int:
    """Write (or rewrite) under each heading of the ``lang`` translation the marker of the English
    section at the same position: for a translator who has just brought those sections up to
    date. Refuses when the two documents have different numbers of sections. Returns how many
    markers changed.

    Usage: ``mark_document("docs/guide.md")``
    """
    english = Path(english)
    target = document_path(english, lang)
    en = markdown_sections(english.read_text(encoding="utf-8"))
    tr = markdown_sections(target.read_text(encoding="utf-8"))
    if len(en) != len(tr):
        raise TranslationError(f"{target} has {len(tr)} sections, {english} has {len(en)}: "
                               "translate the missing sections (same headings, same order) first.")
    out, changed = [], 0
    for en_section, section in zip(en, tr):
        marker = f"<!-- en:{_section_hash(en_section)} -->"
        old = _MARKER.search(section)
        if old and old.group(0) == marker:
            out.append(section)
            continue
        changed += 1
        if old:
            section = section.replace(old.group(0), marker, 1)
        else:
            head, _, rest = section.partition("\n")
            section = f"{head}\n{marker}\n{rest}"
        out.append(section)
    target.write_text("".join(out), encoding="utf-8")
    return changed
