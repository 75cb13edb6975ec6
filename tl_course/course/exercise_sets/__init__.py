"""The course's exercises, one module per notebook (``nb00.py`` for notebook 00, ...).

Each module registers its exercises with :func:`tl_course.exercises.register`; checkers compute
the expected answer themselves (never a hard-coded result) and raise ``AssertionError`` with an
explanation for a wrong answer.
"""
import importlib
import pkgutil


def load_all() -> None:
    """Import every ``nbNN`` module so its exercises are registered."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
