"""The course's exercises, one module per notebook (``nb00.py`` for notebook 00, ...) with its checkers, and
one TOML file per notebook (``nb00.toml``) with their texts and solutions.

Each module registers its checkers with :func:`tl_course.course.exercises.checker`; checkers
compute the expected answer themselves (never a hard-coded result) and raise ``AssertionError``
with an explanation for a wrong answer.
"""
import importlib
import pkgutil


def load_all() -> None:
    """Import every ``nbNN`` module so its exercises are registered."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
