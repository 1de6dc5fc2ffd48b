"""Checkers for the exercises of notebook 06 (splines and autoregressive flows)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from flowedu.exercises.verdicts import NONE_MESSAGE, Result, run, verdict


def _bins() -> tuple[torch.Tensor, ...]:
    """Test bins: width w, height h, slopes d_k and d_{k+1} at their ends, and points xi in
    [0, 1] across each, the knots xi = 0 and xi = 1 included."""
    gen = torch.Generator().manual_seed(6)
    n = 12
    w = 0.2 + torch.rand(n, generator=gen, dtype=torch.float64)
    h = 0.2 + torch.rand(n, generator=gen, dtype=torch.float64)
    d0 = 0.1 + 3 * torch.rand(n, generator=gen, dtype=torch.float64)
    d1 = 0.1 + 3 * torch.rand(n, generator=gen, dtype=torch.float64)
    xi = torch.rand(n, generator=gen, dtype=torch.float64)
    xi[:3], xi[3:6] = 0.0, 1.0  # at the knots the derivative must be the knot's slope
    return w, h, d0, d1, xi


def _rq_derivative(w, h, d0, d1, xi):
    s = h / w
    den = s + (d1 + d0 - 2 * s) * xi * (1 - xi)
    return s**2 * (d1 * xi**2 + 2 * s * xi * (1 - xi) + d0 * (1 - xi) ** 2) / den**2


def _spline_derivative(fn):
    """fn(w, h, d0, d1, xi) -> dy/du of one rational-quadratic bin at xi = (u - x_k) / w."""
    w, h, d0, d1, xi = _bins()
    got, err = run(fn, w, h, d0, d1, xi)
    if err:
        return Result("06.spline_derivative", False, err)
    s = h / w
    den = s + (d1 + d0 - 2 * s) * xi * (1 - xi)
    num = d1 * xi**2 + 2 * s * xi * (1 - xi) + d0 * (1 - xi) ** 2
    expected = _rq_derivative(w, h, d0, d1, xi)
    mistakes = {
        "square the denominator: y' = s^2 (...) / (s + (d_k+1 + d_k - 2s) xi (1 - xi))^2": (
            s**2 * num / den
        ),
        "the factor in front is s^2 = (h / w)^2, not s": s * num / den**2,
        "the slopes are swapped: d_k belongs to (1 - xi)^2 (the left knot, xi = 0) and "
        "d_k+1 to xi^2": _rq_derivative(w, h, d1, d0, xi),
        "s is the bin's height over its width, h / w, not w / h": _rq_derivative(h, w, d0, d1, xi),
    }
    return verdict(
        "06.spline_derivative",
        got,
        expected,
        mistakes,
        "on 12 bins (3 at xi = 0, 3 at xi = 1, where y' must equal the knot's slope)",
    )


CASES = [(d, kind, direction) for d in (2, 3, 5, 16) for kind in ("MAF", "IAF")
         for direction in ("density", "sample")]  # fmt: skip


def _passes(d: int, kind: str, direction: str) -> int:
    one = "density" if kind == "MAF" else "sample"
    return 1 if direction == one else d


def _maf_passes(fn):
    """fn(dim, kind, direction) -> network passes one layer needs; kind "MAF" or "IAF",
    direction "density" (x -> z) or "sample" (z -> x)."""
    got = []
    for d, kind, direction in CASES:
        value, err = run(fn, d, kind, direction)
        if err:
            return Result("06.maf_passes", False, err)
        if value is None:
            return Result("06.maf_passes", False, NONE_MESSAGE)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return Result(
                "06.maf_passes", False, f"return a number of passes, got {type(value).__name__}"
            )
        got.append(float(value))
    got_t = torch.tensor(got, dtype=torch.float64)

    def table(rule) -> torch.Tensor:
        return torch.tensor([float(rule(*c)) for c in CASES], dtype=torch.float64)

    mistakes = {
        "MAF and IAF are swapped: a MAF conditions on x, so its density (x known) takes 1 pass "
        "and its sampling D": table(lambda d, k, r: _passes(d, "IAF" if k == "MAF" else "MAF", r)),
        "one direction needs D passes: x_i depends on x_1 .. x_i-1, unknown until computed": (
            table(lambda d, k, r: 1)
        ),
        "one direction needs only 1 pass: the side whose inputs are all known": table(
            lambda d, k, r: d
        ),
        "D passes, not D - 1: the first pass gives x_1, the D-th gives x_D": table(
            lambda d, k, r: 1 if _passes(d, k, r) == 1 else d - 1
        ),
    }
    expected = table(_passes)
    return verdict("06.maf_passes", got_t, expected, mistakes, "for D = 2, 3, 5, 16")


EXERCISES: dict[str, tuple[Callable[[Callable], Result], str]] = {
    "06.spline_derivative": (
        _spline_derivative,
        "dy_du(w, h, d0, d1, xi): the derivative of one rational-quadratic bin",
    ),
    "06.maf_passes": (
        _maf_passes,
        'passes(dim, kind, direction): network passes of a "MAF"/"IAF" layer for "density" or '
        '"sample"',
    ),
}
