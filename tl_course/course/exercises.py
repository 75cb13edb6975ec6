"""Auto-checked exercises, in the style of Kaggle Learn's learntools: every exercise has
``check(answer)`` (what is right or wrong, and why), graded ``hint()`` and ``solution()``.

An exercise is two things kept apart: its *texts* (question, what is expected, hints from gentle
to explicit, the explanation shown on success, the solution code) in
``exercise_sets/nbNN.toml``, and its *checker*, a function registered with ``@checker(name)`` in
``exercise_sets/nbNN.py`` that computes the expected answer itself (never a hard-coded number)
and raises ``AssertionError`` with a reason for a wrong one. A checker sees a deep copy of the
answer and of its context, made in one go (an answer's parameters stay the parameters of the
context's model), so checking never changes the learner's objects.

Instructor notebooks hold solutions between ``# BEGIN SOLUTION`` and ``# END SOLUTION``; the
student edition replaces them with a ``TODO`` that leaves the answer as ``None`` (or, for a
function, a stub raising ``NotImplementedError``), for which ``check`` answers "not solved yet"
with what is expected, never a crash. ``solution()`` prints the
solution unless an instructor turned solutions off (``TL_COURSE_SOLUTIONS=off``).

Usage::

    from tl_course.course.exercises import get_exercise
    ex = get_exercise("01.whole_backbone")
    ex.hint()             # the first hint; call again for the next, more explicit one
    ex.check(answer)      # prints a verdict, returns True/False
    ex.solution()
"""
from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .asserts import NotSolvedYet

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
SETS = Path(__file__).with_name("exercise_sets")


@dataclass
class Exercise:
    """One exercise: its texts and a checker that raises ``AssertionError(reason)`` for a wrong answer."""

    name: str
    question: str
    expected: str
    hints: list[str]
    checker: Callable[..., None]
    explanation: str = ""
    solution_code: str = ""
    hints_shown: int = field(default=0, repr=False)

    def hint(self, level: int | None = None) -> str:
        """Print and return a hint: the next one each call (gentle first, then more explicit), or
        hint number ``level`` (1-based). A hint never is the solution.

        Usage: ``ex.hint()``; ``ex.hint(2)``
        """
        if level is None:
            self.hints_shown = min(self.hints_shown + 1, len(self.hints))
            level = self.hints_shown
        level = max(1, min(level, len(self.hints)))
        text = self.hints[level - 1]
        more = f" (hint {level} of {len(self.hints)})" if len(self.hints) > 1 else ""
        print(f"Hint for {self.name}{more}: {text}")
        return text

    def solution(self) -> str:
        """Print and return the solution code, unless solutions are turned off
        (``TL_COURSE_SOLUTIONS=off``, e.g. by an instructor during a class).

        Usage: ``ex.solution()``
        """
        if os.environ.get("TL_COURSE_SOLUTIONS", "").strip().lower() in {"0", "off", "no", "false"}:
            print("Solutions are turned off for this class (TL_COURSE_SOLUTIONS). Try ex.hint().")
            return ""
        print(f"Solution of {self.name}:\n{self.solution_code}")
        return self.solution_code

    def verdict(self, answer: Any, **context) -> tuple[bool, str]:
        """``(passed, message)`` without printing; used by ``check`` and the tests. ``context``
        passes notebook state the checker needs to compute the expected answer itself."""
        first_hint = self.hints[0] if self.hints else ""
        not_solved = (f"{self.name}: not solved yet. Expected: {self.expected}. "
                      f"Hint: {first_hint}")
        if answer is None or answer is Ellipsis:
            return False, not_solved
        try:
            answer, context = _copy((answer, context))  # one copy: an answer keeps pointing into the context
            self.checker(answer, **context)
        except (NotSolvedYet, NotImplementedError):  # a stub function of the student edition
            return False, not_solved
        except AssertionError as exc:
            return False, f"{self.name}: not right yet: {exc} Try ex.hint()."
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


def _copy(answer: Any) -> Any:
    """A deep copy of ``answer`` for the checker (the answer itself when it cannot be copied)."""
    try:
        return copy.deepcopy(answer)
    except Exception:
        return answer


CHECKERS: dict[str, Callable[..., None]] = {}


def checker(name: str):
    """Decorator registering the checker of exercise ``name`` (its texts live in the TOML file of
    the same notebook).

    Usage::

        @checker("00.class_index")
        def _(answer): assert imagenet_classes()[answer] == "tabby", "..."
    """
    def wrap(fn):
        CHECKERS[name] = fn
        return fn
    return wrap


TRIVIAL: dict[str, Callable[[], list[tuple[Any, dict]]]] = {}
"""For each exercise, a function returning trivial answers ``(answer, context)`` its checker must refuse."""


def trivial_answers(name: str):
    """Decorator registering the trivial answers of exercise ``name``: a function returning
    ``[(answer, context), ...]``, answers a student could hand in without doing the exercise (0, an
    empty list, ``nn.Identity()``, the number printed above the exercise, ...). The tests check that
    the checker refuses every one of them.

    Usage::

        @trivial_answers("00.class_index")
        def _(): return [(0, {}), (-1, {})]
    """
    def wrap(fn):
        TRIVIAL[name] = fn
        return fn
    return wrap


EXERCISES: dict[str, Exercise] = {}
"""Exercises defined in code with :func:`define` (an instructor's own, or a test's)."""


def define(name: str, question: str, expected: str, hints: list[str] | str, explanation: str = "",
           solution: str = ""):
    """Decorator turning a checker into a complete :class:`Exercise` defined in code, without a
    TOML file: for an instructor's own notebook.

    Usage::

        @define("my.double", "What is 2 * 21?", "an int", ["multiply"], solution="answer = 42")
        def _(answer): assert answer == 42, f"{answer} is not 42."
    """
    def wrap(fn):
        EXERCISES[name] = Exercise(name, question, expected, [hints] if isinstance(hints, str) else list(hints),
                                   fn, explanation, solution)
        return EXERCISES[name]
    return wrap


def exercise_texts() -> dict[str, dict]:
    """The texts of every exercise, by name, from ``exercise_sets/nb*.toml``.

    Usage: ``exercise_texts()["00.class_index"]["question"]``
    """
    texts: dict[str, dict] = {}
    for path in sorted(SETS.glob("nb*.toml")):
        texts.update(tomllib.loads(path.read_text(encoding="utf-8")))
    return texts


def get_exercise(name: str) -> Exercise:
    """The exercise ``name`` (e.g. ``"00.class_index"``): its texts and its checker.

    Usage: ``ex = get_exercise("00.class_index")``
    """
    from .exercise_sets import load_all

    if name in EXERCISES:
        return EXERCISES[name]
    load_all()
    texts = exercise_texts()
    if name not in texts or name not in CHECKERS:
        known = sorted((set(texts) & set(CHECKERS)) | set(EXERCISES))
        raise KeyError(f"No exercise {name!r}. Known: {', '.join(known)}.")
    t = texts[name]
    return Exercise(name, t["question"], t["expected"], list(t["hints"]), CHECKERS[name],
                    t.get("explanation", ""), t.get("solution", ""))
