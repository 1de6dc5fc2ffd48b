"""Checkers for the notebooks' exercises: they say whether an answer is right, and why not.

    from flowedu.exercises import check
    check("02.det2x2", my_det)        # -> Correct! / Not yet: ... with the reason

Each checker calls the student's function on test inputs, compares with the reference, and
for the usual mistakes (a missing absolute value, a wrong sign, exp(s) in place of exp(-s))
names the mistake. One module per part of the course holds its checkers and its table
EXERCISES (exercise name -> (checker, what the function must take)); this module joins them.
"""

from __future__ import annotations

from collections.abc import Callable

from flowedu.exercises import basics, images, splines
from flowedu.exercises.verdicts import Result

EXERCISES: dict[str, tuple[Callable[[Callable], Result], str]] = {
    **basics.EXERCISES,
    **images.EXERCISES,
    **splines.EXERCISES,
}


def check(exercise: str, answer: Callable) -> Result:
    """Check the student's function for `exercise` (a key of EXERCISES)."""
    if exercise not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise!r}; the exercises are {list(EXERCISES)}")
    return EXERCISES[exercise][0](answer)


def answer_or_solution(exercise: str, answer: Callable, solution: Callable) -> Callable:
    """The student's answer once it passes `exercise`'s checker, else the solution.

    Cells after an exercise call this, so that they run the student's own code as soon as it
    is right, and the notebook still runs from top to bottom before it is.
    """
    return answer if check(exercise, answer).passed else solution


__all__ = ["EXERCISES", "Result", "answer_or_solution", "check"]
