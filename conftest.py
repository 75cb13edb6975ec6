"""pytest hooks shared by the unit tests and nbval.

Notebooks whose results depend on the data (07+) record in their metadata which dataset their
committed outputs were computed on (``metadata.tl_course.data``). When that dataset cannot be
loaded here (offline, no mirror), the notebook falls back to bundled data, so its outputs cannot
match: nbval still executes every cell (any error or failed in-notebook assertion fails the test)
but compares only cells marked ``# NBVAL_CHECK_OUTPUT``.

Under pytest-xdist (``make test`` runs two notebooks at a time), notebooks are handed out longest
first, by the duration papermill recorded when their committed outputs were made, so the longest
one does not start last and leave a worker idle (longest-processing-time-first scheduling).
"""
from pathlib import Path


def _longest_notebooks_first(items: list) -> None:
    """Reorder ``items`` in place: notebooks by recorded duration, longest first, cells of each
    notebook kept together and in order; everything else after them, in its order."""
    from tl_course.course.notebooks import recorded_seconds

    notebooks = {Path(str(item.fspath)) for item in items if Path(str(item.fspath)).suffix == ".ipynb"}
    order = sorted(notebooks, key=lambda f: (-recorded_seconds(f), f.name))
    rank = {f: i for i, f in enumerate(order)}
    position = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(Path(str(item.fspath)), len(rank)), position[id(item)]))


def pytest_collection_modifyitems(session, config, items):
    if not getattr(config.option, "nbval", False):
        return
    from tl_course.course.notebooks import notebook_data
    from tl_course.data import DATASETS

    status: dict[Path, bool] = {}
    for item in items:
        path = Path(str(getattr(item, "fspath", "")))
        if path.suffix != ".ipynb" or not hasattr(item, "options"):
            continue
        if path not in status:
            data = notebook_data(path)
            status[path] = data is None or data not in DATASETS or DATASETS[data].available()[0]
            if not status[path]:
                print(f"\nnbval: {path.name} was committed with outputs on {data!r}, which is not "
                      "available here; executing it on its fallback data without comparing outputs.")
        if not status[path] and "NBVAL_CHECK_OUTPUT" not in "".join(item.cell.source):
            item.options["check"] = False
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: every worker sorts the same way
        _longest_notebooks_first(items)
