"""What every checker shares: the verdict (Result), calling student code safely, comparing."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2 * math.pi)


@dataclass
class Result:
    """The verdict on one answer; shows as a coloured box in a notebook."""

    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"{'Correct' if self.passed else 'Not yet'} [{self.exercise}]: {self.message}"

    def _repr_html_(self) -> str:
        colour, word = ("#2e7d32", "Correct!") if self.passed else ("#c62828", "Not yet")
        return (
            f'<div style="border-left: 6px solid {colour}; padding: 4px 10px">'
            f"<b style='color: {colour}'>{word}</b> [{self.exercise}] "
            f"{html.escape(self.message)}</div>"
        )


def close(got: object, expected: torch.Tensor, atol: float = 1e-6) -> bool:
    got = torch.as_tensor(got, dtype=expected.dtype)
    return got.shape == expected.shape and bool(torch.allclose(got, expected, atol=atol, rtol=1e-5))


def run(fn: Callable, *args) -> tuple[object, str | None]:
    """Call the student's function; turn a crash into a message instead of a traceback."""
    if not callable(fn):
        return None, f"expected a function, got {type(fn).__name__}"
    try:
        return fn(*args), None
    except Exception as err:  # any error in student code is reported, not raised
        return None, f"your function raised {type(err).__name__}: {err}"


def verdict(name, got, expected, mistakes: dict[str, torch.Tensor], where: str) -> Result:
    """Compare got with expected; if it matches a known mistake, name it."""
    try:
        got_t = torch.as_tensor(got, dtype=expected.dtype)
    except (TypeError, ValueError, RuntimeError):
        return Result(name, False, f"expected a tensor of shape {tuple(expected.shape)}")
    if got_t.shape != expected.shape:
        return Result(
            name,
            False,
            f"expected shape {tuple(expected.shape)}, got {tuple(got_t.shape)} {where}",
        )
    if close(got_t, expected):
        return Result(name, True, f"matches the reference {where}")
    for hint, wrong in mistakes.items():
        if close(got_t, wrong):
            return Result(name, False, hint)
    err = (got_t - expected).abs()
    i = int(err.flatten().argmax())
    return Result(
        name,
        False,
        f"largest error {err.flatten()[i].item():.3g} {where}: "
        f"expected {expected.flatten()[i].item():.6g}, got {got_t.flatten()[i].item():.6g}",
    )
