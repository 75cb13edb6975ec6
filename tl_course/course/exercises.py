"""Auto-checked exercises: every exercise has ``check(answer)`` that says what is right or wrong
and why, and ``hint()``.

Instructor notebooks hold solutions between ``# BEGIN SOLUTION`` and ``# END SOLUTION``; the
student edition replaces them with a ``TODO`` that leaves the answer as ``None``, for which
``check`` answers "not solved yet" with what is expected and a hint, never a crash.

Usage::

    from tl_course.course.exercises import get_exercise
    ex = get_exercise("01.data_efficiency")
    ex.hint()
    ex.check(answer)      # prints a verdict, returns True/False
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"


@dataclass
class Exercise:
    """One exercise: a checker that raises ``AssertionError(reason)`` for a wrong answer."""

    name: str
    question: str
    expected: str
    hint_text: str
    checker: Callable[[Any], None]
    explanation: str = ""

    def hint(self) -> str:
        """Print and return the hint."""
        print(f"Hint for {self.name}: {self.hint_text}")
        return self.hint_text

    def verdict(self, answer: Any, **context) -> tuple[bool, str]:
        """``(passed, message)`` without printing; used by ``check`` and the tests. ``context``
        passes notebook state the checker needs to compute the expected answer itself."""
        if answer is None or answer is Ellipsis:
            return False, (f"{self.name}: not solved yet. Expected: {self.expected}. "
                           f"Hint: {self.hint_text}")
        try:
            self.checker(answer, **context)
        except AssertionError as exc:
            return False, f"{self.name}: not right yet: {exc} Hint: {self.hint_text}"
        except Exception as exc:  # a malformed answer must never crash the notebook
            return False, (f"{self.name}: could not check this answer ({type(exc).__name__}: {exc}). "
                           f"Expected: {self.expected}.")
        return True, f"{self.name}: correct. {self.explanation}".rstrip()

    def check(self, answer: Any, **context) -> bool:
        """Print a verdict on ``answer`` and return whether it passed.

        Usage: ``ex.check(my_answer)`` or ``ex.check(my_answer, probs=probs, y=y)``
        """
        passed, message = self.verdict(answer, **context)
        print(("PASS " if passed else "TODO ") + message)
        return passed


EXERCISES: dict[str, Exercise] = {}


def register(name: str, question: str, expected: str, hint: str, explanation: str = ""):
    """Decorator turning a checker function into a registered :class:`Exercise`.

    Usage::

        @register("00.top1", "Which class...?", "a class name", "look at top_k")
        def _(answer): assert answer == "tabby", "..."
    """
    def wrap(fn):
        EXERCISES[name] = Exercise(name, question, expected, hint, fn, explanation)
        return EXERCISES[name]
    return wrap


def get_exercise(name: str) -> Exercise:
    """The registered exercise ``name`` (e.g. ``"00.imagenet_guess"``).

    Usage: ``ex = get_exercise("00.imagenet_guess")``
    """
    from .exercise_sets import load_all

    load_all()

    if name not in EXERCISES:
        raise KeyError(f"No exercise {name!r}. Known: {', '.join(sorted(EXERCISES))}.")
    return EXERCISES[name]
