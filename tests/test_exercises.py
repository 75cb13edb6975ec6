"""tl_course.course.exercises: verdicts for no answer, wrong, right, and answers that crash the checker."""
from __future__ import annotations

import pytest

from tl_course.course.exercises import BEGIN, CHECKERS, END, Exercise, checker, exercise_texts, get_exercise


def _checker(answer):
    assert isinstance(answer, int), f"expected an int, got {type(answer).__name__}."
    assert answer * 2 == 84, f"{answer} doubled is {answer * 2}, not 84."


@pytest.fixture
def ex():
    return Exercise("t.double", "Which number doubled is 84?", "an int", ["divide 84 by 2", "84 / 2 as an int"],
                    _checker, explanation="42 * 2 == 84.", solution_code="answer = 84 // 2")


@pytest.mark.parametrize("answer", [None, Ellipsis])
def test_not_solved_yet(ex, answer, capsys):
    passed, message = ex.verdict(answer)
    assert not passed
    assert "not solved yet" in message and "Expected: an int" in message and "divide 84 by 2" in message
    assert ex.check(answer) is False
    assert capsys.readouterr().out.startswith("TODO t.double: not solved yet")


def test_wrong_answer(ex, capsys):
    passed, message = ex.verdict(41)
    assert not passed
    assert "not right yet: 41 doubled is 82, not 84." in message and "ex.hint()" in message
    assert ex.check(41) is False
    assert "TODO" in capsys.readouterr().out


def test_right_answer(ex, capsys):
    assert ex.verdict(42) == (True, "t.double: correct. 42 * 2 == 84.")
    assert ex.check(42) is True
    assert capsys.readouterr().out.strip() == "PASS t.double: correct. 42 * 2 == 84."


def test_answer_that_crashes_the_checker(capsys):
    def fragile(answer):
        assert answer["value"] == 42  # a str answer raises TypeError, a dict without key KeyError

    crashy = Exercise("t.crash", "?", "a dict with 'value'", ["h"], fragile)
    for bad in ("forty-two", {}, [1, 2]):
        passed, message = crashy.verdict(bad)
        assert not passed
        assert "could not check this answer" in message and "Expected: a dict with 'value'" in message
    assert crashy.check("forty-two") is False
    assert "TypeError" in capsys.readouterr().out


def test_hints_are_graded(ex, capsys):
    assert ex.hint() == "divide 84 by 2"
    assert "Hint for t.double (hint 1 of 2)" in capsys.readouterr().out
    assert ex.hint() == "84 / 2 as an int"
    assert ex.hint() == "84 / 2 as an int"  # the last one stays
    assert ex.hint(1) == "divide 84 by 2"


def test_solution_and_switching_it_off(ex, capsys, monkeypatch):
    assert ex.solution() == "answer = 84 // 2"
    assert "answer = 84 // 2" in capsys.readouterr().out
    monkeypatch.setenv("TL_COURSE_SOLUTIONS", "off")
    assert ex.solution() == ""
    assert "turned off" in capsys.readouterr().out


def test_checker_never_changes_the_answer():
    def greedy(answer):
        answer.append(99)
        assert answer == [1, 99]

    ex = Exercise("t.mutate", "?", "a list", ["h"], greedy)
    mine = [1]
    assert ex.verdict(mine)[0] and mine == [1]


def test_checker_registered_with_texts(monkeypatch):
    monkeypatch.setitem(CHECKERS, "00.class_index", CHECKERS.get("00.class_index"))
    get_exercise("00.class_index")  # loads every set
    assert set(exercise_texts()) == set(CHECKERS), "every exercise has texts and a checker"

    @checker("t.registered")
    def _(answer):
        assert answer == "yes"

    try:
        assert CHECKERS["t.registered"] is _
        with pytest.raises(KeyError):  # a checker without texts is not an exercise
            get_exercise("t.registered")
    finally:
        CHECKERS.pop("t.registered", None)


def test_unknown_exercise():
    with pytest.raises(KeyError, match="No exercise 'zz.none'. Known: "):
        get_exercise("zz.none")


def test_solution_markers():
    assert BEGIN == "# BEGIN SOLUTION" and END == "# END SOLUTION"


def test_class_index_exercise():
    ex = get_exercise("00.class_index")
    assert ex.verdict(281)[0]
    passed, message = ex.verdict(282)
    assert not passed and "not 'tabby'" in message
    assert not ex.verdict("281")[0]


def _registered():
    from tl_course.course.exercise_sets import load_all

    load_all()
    return sorted(CHECKERS)


@pytest.mark.parametrize("name", _registered())
def test_every_registered_exercise_handles_no_answer_and_garbage(name):
    ex = get_exercise(name)
    assert ex.question and ex.expected and ex.hints and ex.solution_code
    passed, message = ex.verdict(None)
    assert not passed and "not solved yet" in message
    passed, message = ex.verdict(object())  # never a crash, never a pass
    assert not passed and name in message


def test_a_checker_can_say_not_solved_yet_for_a_stub():
    from tl_course.course.asserts import NotSolvedYet as NotSolved

    def needs_a_function(answer):
        if answer() is None:
            raise NotSolved
        assert answer() == 42, "not 42."

    ex = Exercise("t.stub", "?", "a function returning 42", ["return 42"], needs_a_function)
    passed, message = ex.verdict(lambda: None)
    assert not passed and "not solved yet" in message and "return 42" in message
    assert not ex.verdict(lambda: 41)[0] and ex.verdict(lambda: 42)[0]
