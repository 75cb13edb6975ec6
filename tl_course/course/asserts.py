"""Checking an exercise's answer: small assertions with messages a learner can act on, shared by
every exercise set. Each returns the answer in a clean form (a float, an int, an array) or raises
``AssertionError`` saying what was expected.

Usage::

    from tl_course.course import asserts
    value = asserts.accuracy_value(answer)               # a number between 0 and 1
    asserts.close(value, expected, 0.01, "check the seed of few_shot_indices")
"""
from __future__ import annotations

import numbers

import numpy as np


def number(answer, what: str = "a number") -> float:
    """``answer`` as a float: a Python, NumPy or one-element torch number, never a bool.

    Usage: ``value = number(answer)``
    """
    if isinstance(answer, bool) or not (isinstance(answer, numbers.Real) or
                                        (hasattr(answer, "item") and getattr(answer, "size", 1) in (1, ()))):
        raise AssertionError(f"expected {what}, got {type(answer).__name__}.")
    value = float(answer.item() if hasattr(answer, "item") else answer)
    if not np.isfinite(value):
        raise AssertionError(f"expected {what}, got {value}.")
    return value


def accuracy_value(answer) -> float:
    """``answer`` as an accuracy: a number between 0 and 1.

    Usage: ``value = accuracy_value(answer)``
    """
    value = number(answer, "a number (an accuracy between 0 and 1)")
    if not 0.0 <= value <= 1.0:
        raise AssertionError(f"{value} is not an accuracy: it should lie between 0 and 1.")
    return value


def integer(answer, what: str = "an int") -> int:
    """``answer`` as an int (Python or NumPy integer, never a bool or a float).

    Usage: ``n = integer(answer)``
    """
    if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)):
        raise AssertionError(f"expected {what}, got {type(answer).__name__}.")
    return int(answer)


def close(value: float, expected: float, tolerance: float, hint: str) -> None:
    """Pass when ``|value - expected| <= tolerance``; otherwise say by how much, and ``hint``.

    Usage: ``close(value, expected, 0.01, "use seed 0")``
    """
    if not abs(value - expected) <= tolerance:
        raise AssertionError(f"{value:.4g} is not the expected value; {hint}")


def one_of(answer, kinds: tuple, what: str):
    """Pass when ``answer`` is an instance of ``kinds``; returns it.

    Usage: ``trunk = one_of(answer["trunk"], (nn.Module,), "the trunk module")``
    """
    if not isinstance(answer, kinds):
        raise AssertionError(f"expected {what}, got {type(answer).__name__}.")
    return answer


def exact(answer, expected, what: str, mistakes: dict | None = None) -> None:
    """Pass when ``answer == expected``; a known wrong answer listed in ``mistakes`` gets its own
    explanation, any other one "``answer`` is not ``what``".

    Usage: ``exact(n, 6405, "the parameters of nn.Linear(1280, 5)", {6400: "you forgot the biases."})``
    """
    for wrong, message in (mistakes or {}).items():
        if answer == wrong and wrong != expected:
            raise AssertionError(message)
    if answer != expected:
        raise AssertionError(f"{answer} is not {what}.")


class NotSolvedYet(Exception):
    """Raised by a checker when the answer is still the student edition's stub (a function that
    returns None or raises ``NotImplementedError``): the verdict is then "not solved yet", not
    "wrong"."""


def call(function, *args, what: str = "a function", **kwargs):
    """Call the learner's ``function`` with ``args``; returns its result. Raises
    :class:`NotSolvedYet` when it is an unwritten stub (returns None or raises
    ``NotImplementedError``) and ``AssertionError`` when it is not callable.

    Usage: ``loss = call(answer, student_logits, teacher_logits, labels, what="a loss function")``
    """
    if not callable(function):
        raise AssertionError(f"expected {what}, got {type(function).__name__}.")
    try:
        result = function(*args, **kwargs)
    except NotImplementedError as exc:
        raise NotSolvedYet(str(exc)) from None
    if result is None:
        raise NotSolvedYet(f"{getattr(function, '__name__', 'the function')} returns None")
    return result
