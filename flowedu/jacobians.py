"""Jacobians of maps of the plane, and what their determinant means: the local area scale.

Direction convention (the same in every flowedu module)
-------------------------------------------------------
The course writes x = f(z): f maps latent z ~ N(0, I) to data x. A flowedu layer's
``forward(x) -> (z, log_det)`` computes z = f^-1(x) and log_det = log|det d f^-1(x)/dx|;
its ``inverse(z) -> (x, log_det)`` computes x = f(z) and log_det = log|det d f(z)/dz|.

The functions here take any map ``fn: (batch, d) -> (batch, d)``. When ``fn`` returns a
tuple, as flowedu layers do, its first element is used, so ``log_abs_det_jacobian(layer, x)``
is log|det d f^-1(x)/dx|, the number ``layer(x)[1]`` should return.

The picture behind the determinant: near x0, fn(x) ~ fn(x0) + J(x0) (x - x0), so a small
square of area h^2 at x0 goes to (nearly) a parallelogram of signed area det J(x0) h^2.
"""

import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

Fn = Callable[[Tensor], Tensor | tuple[Tensor, ...]]

# ----------------------------------------------------------------------------------------
# Input checks: errors say what was wrong and what to do.


def _points(x, name: str, who: str, d: int | None = None) -> Tensor:
    """x as a finite floating-point tensor of shape (batch, d)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}: expected {name} as a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{who}: expected a floating-point {name}, got {x.dtype}; use {name}.float()"
        )
    want = "(batch, d)" if d is None else f"(batch, {d})"
    if x.ndim != 2 or (d is not None and x.shape[1] != d):
        raise ValueError(f"{who}: expected {name} of shape {want}, got {tuple(x.shape)}")
    n_bad = int((~torch.isfinite(x)).sum())
    if n_bad:
        raise ValueError(f"{who}: {name} has {n_bad} NaN or inf entries; clean the input first")
    return x


def _real(value, name: str, who: str) -> float:
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{who}: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{who}: {name} must be finite, got {value}")
    return value


def _call(fn: Fn, x: Tensor) -> Tensor:
    """fn(x), taking the first element when fn is a flow layer returning (output, log_det)."""
    y = fn(x)
    if isinstance(y, tuple):
        y = y[0]
    if not isinstance(y, Tensor) or y.ndim != 2 or y.shape[0] != x.shape[0]:
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            f"fn must map x of shape (batch, d_in) to (batch, d_out); "
            f"for x of shape {tuple(x.shape)} it returned {got}"
        )
    return y


# ----------------------------------------------------------------------------------------
# Jacobians


def jacobian(fn: Fn, x: Tensor) -> Tensor:
    """J[b, i, j] = d fn(x)[b, i] / d x[b, j]: x (batch, d_in) -> J (batch, d_out, d_in).

    fn must treat rows independently (row b of fn(x) depends only on row b of x), as flow
    layers do. Computed by autograd with the "sum trick": then the gradient of
    sum_b fn(x)[b, i] with respect to x has row b equal to d fn(x)[b, i] / d x[b, :], so one
    backward pass per output coordinate (d_out of them) gives the whole batch of rows i.
    (torch.func.vmap(torch.func.jacrev(...)) computes the same, but refuses functions that
    check their inputs with Python ifs, as flowedu's do.) The result carries no gradient.
    """
    x = _points(x, "x", "jacobian")
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = _call(fn, x)  # (batch, d_out)
        if not y.requires_grad:  # fn ignores x, e.g. a constant map
            return torch.zeros(x.shape[0], y.shape[1], x.shape[1], dtype=y.dtype)
        rows = [
            torch.autograd.grad(y[:, i].sum(), x, retain_graph=True, materialize_grads=True)[0]
            for i in range(y.shape[1])
        ]  # d_out tensors of shape (batch, d_in)
    return torch.stack(rows, dim=1)


def fd_jacobian(fn: Fn, x: Tensor, eps: float | None = None) -> Tensor:
    """Central finite differences, J[:, :, j] ~ (fn(x + h e_j) - fn(x - h e_j)) / (2 h).

    x: (batch, d_in) -> J: (batch, d_out, d_in). The error is O(h^2) from truncation plus
    O(machine eps / h) from rounding; the default h = eps^(1/3) * max(1, |x_j|) balances the
    two (about 6e-6 in float64, 5e-3 in float32). Use float64 for a sharp check.
    """
    x = _points(x, "x", "fd_jacobian")
    if eps is None:
        h = torch.finfo(x.dtype).eps ** (1 / 3) * x.abs().clamp(min=1)
    else:
        eps = _real(eps, "eps", "fd_jacobian")
        if eps <= 0:
            raise ValueError(f"fd_jacobian: eps must be > 0, got {eps:g}")
        h = torch.full_like(x, eps)
    columns = []
    with torch.no_grad():
        for j in range(x.shape[1]):
            step = torch.zeros_like(x)
            step[:, j] = h[:, j]
            x_plus, x_minus = x + step, x - step
            dx = (x_plus - x_minus)[:, j : j + 1]  # the step actually taken, after rounding
            columns.append((_call(fn, x_plus) - _call(fn, x_minus)) / dx)  # (batch, d_out)
    return torch.stack(columns, dim=2)


def log_abs_det_jacobian(fn: Fn, x: Tensor) -> Tensor:
    """log|det J(x)| for each row of x: (batch, d) -> (batch,), via torch.linalg.slogdet.

    slogdet works with the log directly, so it neither overflows nor underflows where det
    itself would.
    """
    J = jacobian(fn, x)  # (batch, d, d)
    if J.shape[1] != J.shape[2]:
        raise ValueError(
            f"log_abs_det_jacobian: the Jacobian is {J.shape[1]}x{J.shape[2]}; a determinant "
            "needs a square one (fn must map (batch, d) to (batch, d))"
        )
    return torch.linalg.slogdet(J).logabsdet


# ----------------------------------------------------------------------------------------
# Linear maps of the plane

# det A is called 0 when |det(A / max|entry|)| is below this: a tolerance relative to the
# entries' scale, so 1e-9 * I counts as invertible but [[1, 2], [2, 4 + 1e-15]] does not.
SINGULAR_RTOL = 1e-12


class LinearMap2D:
    """The linear map p -> A p of the plane, A = [[a, b], [c, d]].

    det A = a d - b c is the signed factor by which A scales areas: the unit square goes to
    the parallelogram spanned by the columns (a, c) and (b, d), of signed area det A.
    det > 0 keeps orientation (counter-clockwise stays counter-clockwise), det < 0 flips it
    (a mirror image), det = 0 squashes the plane onto a line or a point: no inverse.
    The inverse is A^-1 = [[d, -b], [-c, a]] / det A.
    """

    def __init__(self, a: float, b: float, c: float, d: float):
        entries = [_real(v, n, "LinearMap2D") for v, n in zip((a, b, c, d), "abcd", strict=True)]
        self.A = torch.tensor(entries, dtype=torch.float64).reshape(2, 2)
        # Test singularity on A / s, s = the largest |entry|, so that it does not depend on
        # units: det(A / s) = det A / s^2 is a number between -2 and 2.
        self._s = max(abs(v) for v in entries)
        an, bn, cn, dn = (v / self._s for v in entries) if self._s > 0 else (0.0,) * 4
        self._det_n = an * dn - bn * cn
        self._adj_n = torch.tensor([[dn, -bn], [-cn, an]], dtype=torch.float64)
        a, b, c, d = entries
        self.det = a * d - b * c  # signed; float, like area_scale and orientation

    @property
    def area_scale(self) -> float:
        """|det A|: area(A S) = |det A| area(S) for every region S."""
        return abs(self.det)

    @property
    def is_singular(self) -> bool:
        return abs(self._det_n) <= SINGULAR_RTOL

    @property
    def orientation(self) -> int:
        """+1 if A preserves orientation (det > 0), -1 if it flips it, 0 if singular."""
        return 0 if self.is_singular else int(math.copysign(1, self._det_n))

    def apply(self, points: Tensor) -> Tensor:
        """A p for each row p of points: (n, 2) -> (n, 2)."""
        points = _points(points, "points", "LinearMap2D.apply", d=2)
        return self._finite(points @ self.A.to(points.dtype).T, "apply")

    def _finite(self, out: Tensor, what: str) -> Tensor:
        if not torch.isfinite(out).all():
            raise ValueError(
                f"LinearMap2D.{what}: the result overflows {out.dtype} (entries of size up to "
                f"{self._s:.3g}); use float64 points or entries of moderate size"
            )
        return out

    __call__ = apply

    def inverse_apply(self, points: Tensor) -> Tensor:
        """A^-1 p for each row p of points: (n, 2) -> (n, 2); refused when det A = 0."""
        if self.is_singular:
            raise ValueError(
                "det A = 0: the map squashes the plane onto a line (or point) and has no "
                "inverse; change a, b, c or d"
            )
        points = _points(points, "points", "LinearMap2D.inverse_apply", d=2)
        A_inv = self._adj_n / (self._det_n * self._s)  # (A / s)^-1 / s = A^-1
        return self._finite(points @ A_inv.to(points.dtype).T, "inverse_apply")

    def __repr__(self) -> str:
        (a, b), (c, d) = self.A.tolist()
        return f"LinearMap2D(a={a:g}, b={b:g}, c={c:g}, d={d:g})"


def linear_map(A) -> LinearMap2D:
    """LinearMap2D from a 2x2 matrix (tensor or nested list) [[a, b], [c, d]]."""
    A = torch.as_tensor(A, dtype=torch.float64)
    if A.shape != (2, 2):
        raise ValueError(f"linear_map: expected a 2x2 matrix, got shape {tuple(A.shape)}")
    return LinearMap2D(*A.flatten().tolist())


# ----------------------------------------------------------------------------------------
# Polygons and grids, to draw what a map does to the plane. A polygon is a (n_vertices, 2)
# tensor of vertices in order; the edge from the last vertex back to the first is implied.


def unit_square(dtype: torch.dtype | None = None) -> Tensor:
    """The unit square [0, 1]^2, counter-clockwise from the origin: (4, 2)."""
    return torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=dtype)


def polygon_area(poly: Tensor) -> Tensor:
    """Signed area by the shoelace formula, A = 1/2 sum_i (x_i y_{i+1} - x_{i+1} y_i):
    positive for counter-clockwise vertices, negative for clockwise. poly: (n, 2) -> ()."""
    poly = _points(poly, "poly", "polygon_area", d=2)
    if poly.shape[0] < 3:
        raise ValueError(f"polygon_area: a polygon needs at least 3 vertices, got {poly.shape[0]}")
    x, y = poly[:, 0], poly[:, 1]
    x_next, y_next = x.roll(-1), y.roll(-1)
    return 0.5 * (x * y_next - x_next * y).sum()


def push_polygon(fn: Fn, poly: Tensor, n_per_edge: int = 50) -> Tensor:
    """The image of a polygon under fn: (n_vertices, 2) -> (n_vertices * n_per_edge, 2).

    Each edge is first cut into n_per_edge pieces, so that a nonlinear fn visibly bends it
    (mapping only the corners would draw straight edges). No gradient: this feeds plots.
    """
    poly = _points(poly, "poly", "push_polygon", d=2)
    if isinstance(n_per_edge, bool) or not isinstance(n_per_edge, int) or n_per_edge < 1:
        raise ValueError(f"push_polygon: n_per_edge must be a positive integer, got {n_per_edge!r}")
    # t in [0, 1) walks each edge without its end vertex, which starts the next edge.
    t = torch.arange(n_per_edge, dtype=poly.dtype) / n_per_edge  # (n_per_edge,)
    start, end = poly, poly.roll(-1, dims=0)  # (n_vertices, 2) each
    dense = start[:, None, :] + t[None, :, None] * (end - start)[:, None, :]
    with torch.no_grad():
        return _call(fn, dense.reshape(-1, 2))


def grid_lines(
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    n_lines: int = 11,
    n_points: int = 100,
    dtype: torch.dtype | None = None,
) -> list[Tensor]:
    """A grid over the rectangle xlim x ylim as 2 * n_lines polylines of shape (n_points, 2):
    first the n_lines vertical lines (x fixed, left to right), then the horizontal ones."""
    for n, name in [(n_lines, "n_lines"), (n_points, "n_points")]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"grid_lines: {name} must be an integer >= 2, got {n!r}")
    x0, x1 = (_real(v, "xlim", "grid_lines") for v in xlim)
    y0, y1 = (_real(v, "ylim", "grid_lines") for v in ylim)
    xs, ts = (
        torch.linspace(x0, x1, n_lines, dtype=dtype),
        torch.linspace(y0, y1, n_points, dtype=dtype),
    )
    ys, ss = (
        torch.linspace(y0, y1, n_lines, dtype=dtype),
        torch.linspace(x0, x1, n_points, dtype=dtype),
    )
    vertical = [torch.stack([torch.full_like(ts, x), ts], dim=1) for x in xs.tolist()]
    horizontal = [torch.stack([ss, torch.full_like(ss, y)], dim=1) for y in ys.tolist()]
    return vertical + horizontal


def push_grid(fn: Fn, lines: list[Tensor]) -> list[Tensor]:
    """Each polyline of `lines` pushed through fn (in one batch); same shapes out. No gradient."""
    if not lines:
        return []
    sizes = [_points(line, "each line", "push_grid", d=2).shape[0] for line in lines]
    with torch.no_grad():
        return list(_call(fn, torch.cat(lines)).split(sizes))


def small_square_area_ratio(fn: Fn, x0, h: float, n_per_edge: int = 50) -> float:
    """area(fn(S)) / h^2 for the square S of side h centred at x0, which tends to
    |det J(x0)| as h -> 0 (fn is locally linear). x0: (2,); area by push_polygon + shoelace.

    For small h use a float64 x0 (and a float64 fn): the area is a difference of nearly
    equal products.
    """
    if not isinstance(x0, Tensor):
        x0 = torch.as_tensor(x0, dtype=torch.get_default_dtype())
    if x0.shape != (2,):
        raise ValueError(
            f"small_square_area_ratio: expected x0 of shape (2,), got {tuple(x0.shape)}"
        )
    h = _real(h, "h", "small_square_area_ratio")
    if h <= 0:
        raise ValueError(f"small_square_area_ratio: h must be > 0, got {h:g}")
    square = x0 + h * (unit_square(x0.dtype) - 0.5)  # (4, 2), side h, centred at x0
    image = push_polygon(fn, square, n_per_edge)
    return (polygon_area(image).abs() / h**2).item()
