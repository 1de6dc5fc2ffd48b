"""What every checker shares: the verdict (Result), calling student code safely, comparing."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2 * math.pi)

NONE_MESSAGE = "you returned None: write your answer in the cell above"


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


def as_tensor(got: object, like: torch.Tensor) -> torch.Tensor | None:
    """got as a tensor of like's dtype, or None if it cannot be one."""
    try:
        return torch.as_tensor(got, dtype=like.dtype).detach()
    except (TypeError, ValueError, RuntimeError):
        return None


def verdict(
    name: str,
    got: object,
    expected: torch.Tensor,
    mistakes: dict[str, torch.Tensor],
    where: str,
    nan_hint: str | None = None,
) -> Result:
    """Compare got with expected; if it matches a known mistake, name it.

    A mistake may have another shape than the answer (summing over the wrong dimension
    gives a scalar): it is named whenever got matches it, before any complaint about shape.
    nan_hint, if given, is what to say when the answer holds NaN where the reference does not
    (the usual cause: the log of a negative number, a missing absolute value).
    """
    if got is None:
        return Result(name, False, NONE_MESSAGE)
    got_t = as_tensor(got, expected)
    if got_t is None:
        return Result(
            name,
            False,
            f"expected a tensor of shape {tuple(expected.shape)}, got {type(got).__name__}",
        )
    if close(got_t, expected):
        return Result(name, True, f"matches the reference {where}")
    for hint, wrong in mistakes.items():
        if close(got_t, wrong.to(expected.dtype)):
            return Result(name, False, hint)
    if got_t.shape != expected.shape:
        return Result(
            name,
            False,
            f"expected shape {tuple(expected.shape)}, got {tuple(got_t.shape)} {where}",
        )
    bad = torch.isnan(got_t) & ~torch.isnan(expected)
    if bad.any():
        hint = f": {nan_hint}" if nan_hint else ""
        count = "" if bad.numel() == 1 else f" at {int(bad.sum())} of {bad.numel()} entries"
        return Result(name, False, f"your answer is NaN{count} {where}{hint}")
    err = (got_t - expected).abs()
    i = int(err.flatten().argmax())
    return Result(
        name,
        False,
        f"largest error {err.flatten()[i].item():.3g} {where}: "
        f"expected {expected.flatten()[i].item():.6g}, got {got_t.flatten()[i].item():.6g}",
    )
