"""The checkers of notebook 06: the reference answers pass, an unanswered exercise says so,
and each usual mistake is named."""

from __future__ import annotations

import pytest
import torch

from flowedu.exercises import EXERCISES, check
from flowedu.exercises.verdicts import NONE_MESSAGE
from flowedu.splines import RQSpline


def _dy_du(w, h, d0, d1, xi):
    s = h / w
    den = s + (d1 + d0 - 2 * s) * xi * (1 - xi)
    return s**2 * (d1 * xi**2 + 2 * s * xi * (1 - xi) + d0 * (1 - xi) ** 2) / den**2


def _passes(dim, kind, direction):
    return 1 if (kind == "MAF") == (direction == "density") else dim


REFERENCES = {"06.spline_derivative": _dy_du, "06.maf_passes": _passes}

MISTAKES = [
    (
        "06.spline_derivative",
        lambda w, h, d0, d1, xi: (
            _dy_du(w, h, d0, d1, xi) * (h / w + (d1 + d0 - 2 * h / w) * xi * (1 - xi))
        ),
        "square the denominator",
    ),
    ("06.spline_derivative", lambda w, h, d0, d1, xi: _dy_du(w, h, d1, d0, xi), "swapped"),
    ("06.spline_derivative", lambda w, h, d0, d1, xi: _dy_du(h, w, d0, d1, xi), "h / w"),
    ("06.spline_derivative", lambda w, h, d0, d1, xi: _dy_du(w, h, d0, d1, xi) * w / h, "s^2"),
    ("06.spline_derivative", lambda w, h, d0, d1, xi: xi * 0 + 1, "largest error"),
    ("06.spline_derivative", lambda w, h, d0, d1, xi: 1 / 0, "ZeroDivisionError"),
    ("06.maf_passes", lambda d, k, r: _passes(d, "IAF" if k == "MAF" else "MAF", r), "swapped"),
    ("06.maf_passes", lambda d, k, r: 1, "needs D passes"),
    ("06.maf_passes", lambda d, k, r: d, "only 1 pass"),
    ("06.maf_passes", lambda d, k, r: 1 if _passes(d, k, r) == 1 else d - 1, "not D - 1"),
    ("06.maf_passes", lambda d, k, r: "D", "a number"),
    ("06.maf_passes", lambda d, k, r: 2, "largest error"),
]


def test_every_exercise_of_06_is_tested_here():
    assert {name for name in EXERCISES if name.startswith("06.")} == set(REFERENCES)


@pytest.mark.parametrize("exercise", sorted(REFERENCES))
def test_reference_passes(exercise):
    result = check(exercise, REFERENCES[exercise])
    assert result.passed, result.message
    assert "Correct" in repr(result)


@pytest.mark.parametrize("exercise", sorted(REFERENCES))
def test_none_says_write_your_answer(exercise):
    result = check(exercise, lambda *args: None)
    assert not result.passed
    assert result.message.endswith(NONE_MESSAGE), result.message


@pytest.mark.parametrize(
    ("exercise", "answer", "words"), MISTAKES, ids=[f"{m[0]}:{m[2]}" for m in MISTAKES]
)
def test_mistake_is_named(exercise, answer, words):
    result = check(exercise, answer)
    assert not result.passed
    assert words in result.message, result.message


def test_reference_derivative_is_the_splines_own():
    """The checker's formula is the derivative flowedu.splines computes, bin by bin."""
    xs = torch.tensor([-3.0, -1.0, 0.5, 3.0], dtype=torch.float64)
    ys = torch.tensor([-3.0, -2.0, 1.0, 3.0], dtype=torch.float64)
    spline = RQSpline.from_knots(xs, ys, [0.4, 2.5]).double()
    x_k, y_k, d_k = spline.knots()
    u = torch.linspace(-2.99, 2.99, 301, dtype=torch.float64)
    k = torch.searchsorted(x_k[1:-1], u, right=True)
    w, h = x_k[k + 1] - x_k[k], y_k[k + 1] - y_k[k]
    xi = (u - x_k[k]) / w
    ours = _dy_du(w, h, d_k[k], d_k[k + 1], xi)
    assert torch.allclose(ours, spline.df(u), atol=1e-10, rtol=1e-10)
