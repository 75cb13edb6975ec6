"""Every exercise's checker refuses the trivial answers a student could hand in without doing it."""
from __future__ import annotations

import pytest

from tl_course.course.exercises import CHECKERS, TRIVIAL, get_exercise
from tl_course.course.exercise_sets import load_all

load_all()
NAMES = sorted(CHECKERS)


@pytest.mark.parametrize("name", NAMES)
def test_trivial_answers_are_refused(name):
    assert name in TRIVIAL, f"{name} has no @trivial_answers: list what a lazy answer would be"
    cases = TRIVIAL[name]()
    assert cases, f"{name}: no trivial answers"
    ex = get_exercise(name)
    for answer, context in cases:
        passed, message = ex.verdict(answer, **context)
        assert not passed, f"{name} accepted the trivial answer {answer!r}: {message}"
