"""The field's standard 2D toy datasets, with their exact densities and true entropies.

The eight sets are those of FFJORD (Grathwohl et al., 2019), with the same scales and noise,
so numbers here compare with papers. Each is a distribution p on R^2; its differential entropy

    H = -E_{x ~ p}[log p(x)]   (nats)

is the floor of any model's test negative log-likelihood: NLL = H + KL(p || model) >= H.
So "test NLL minus H" says how far a flow is from perfect.

Where FFJORD draws a fixed number of points per component (sklearn splits n evenly between
the two moons or circles, and spaces angles evenly), we draw each point's component and
angle at random instead: any n then works, and the points are i.i.d. from the same
equal-weight mixture, which is the density the entropies refer to.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it: sample_array, the names and the
# entropies need numpy alone (the dashboard's kernel shows the shipped flows without torch).

NAMES: tuple[str, ...] = (
    "checkerboard",
    "8gaussians",
    "circles",
    "rings",
    "moons",
    "swissroll",
    "2spirals",
    "pinwheel",
)

# True differential entropy in nats. Monte-Carlo estimates on the exact density (standard
# errors 0.0001 to 0.0024): mixtures, Bessel-I0 ring densities, quadrature along the curve
# for moons, swissroll and 2spirals, and an exact change of variables for pinwheel.
# Checkerboard is exact: uniform on an area of 32, so H = log 32.
ENTROPY: dict[str, float] = {
    "checkerboard": math.log(32.0),
    "8gaussians": 2.8318,
    "circles": 3.2684,
    "rings": 2.6242,
    "moons": 2.3948,
    "swissroll": 2.6681,
    "2spirals": 2.6516,
    "pinwheel": 2.3181,
}
# The standard errors of those estimates (0 for checkerboard's exact value): a gap NLL - H
# carries this uncertainty on top of the NLL's own.
ENTROPY_STDERR: dict[str, float] = {
    "checkerboard": 0.0,
    "8gaussians": 0.0001,
    "circles": 0.0008,
    "rings": 0.0009,
    "moons": 0.0024,
    "swissroll": 0.0024,
    "2spirals": 0.0023,
    "pinwheel": 0.0006,
}

# pinwheel's constants: 5 arms, radius ~ N(1, 0.3^2), tangential offset ~ N(0, 0.1^2),
# and an arm turns by RATE * exp(radius).
_ARMS, _RADIAL_SD, _TANGENTIAL_SD, _RATE = 5, 0.3, 0.1, 0.25


# ---------------------------------------------------------------------------------------
# Sampling. Each sampler takes a numpy Generator and n, and returns (n, 2) float64 points.
# ---------------------------------------------------------------------------------------


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    """x1 ~ U[-2, 2); x2 ~ U[0, 1) - 2 B + (floor(x1) mod 2), B ~ Bernoulli(1/2); all * 2."""
    x1 = rng.uniform(-2.0, 2.0, n)
    # Shifting x2 by one in every other column makes the squares alternate.
    x2 = rng.uniform(0.0, 1.0, n) - 2 * rng.integers(0, 2, n) + np.floor(x1) % 2
    return 2 * np.stack([x1, x2], axis=1)


def _8gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    """(4 u_k + N(0, 0.5^2 I)) / 1.414, with u_k one of the 8 unit vectors at angles 2 pi k/8."""
    angle = 2 * np.pi * rng.integers(0, 8, n) / 8
    centre = 4 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return (centre + 0.5 * rng.standard_normal((n, 2))) / 1.414  # FFJORD's 1.414, not sqrt 2


def _circles(rng: np.random.Generator, n: int) -> np.ndarray:
    """sklearn make_circles(factor=0.5, noise=0.08), * 3: radius 1 or 0.5, angle uniform."""
    radius = rng.choice([1.0, 0.5], n)
    return 3 * _on_circles(rng, radius, noise=0.08)


def _rings(rng: np.random.Generator, n: int) -> np.ndarray:
    """Radii 1, 0.75, 0.5, 0.25 equally likely, * 3; then N(0, 0.08^2 I) noise (after scaling)."""
    radius = 3 * rng.choice([1.0, 0.75, 0.5, 0.25], n)
    return _on_circles(rng, radius, noise=0.08)


def _on_circles(rng: np.random.Generator, radius: np.ndarray, noise: float) -> np.ndarray:
    """radius * (cos a, sin a) + N(0, noise^2 I), with a ~ U[0, 2 pi)."""
    angle = rng.uniform(0.0, 2 * np.pi, len(radius))
    on_circle = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return on_circle + noise * rng.standard_normal((len(radius), 2))


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    """sklearn make_moons(noise=0.1), * 2 + (-1, -0.2).

    Upper moon (cos t, sin t) or lower moon (1 - cos t, 1/2 - sin t), t ~ U[0, pi],
    plus N(0, 0.1^2 I).
    """
    t = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where(rng.random((n, 1)) < 0.5, upper, lower) + 0.1 * rng.standard_normal((n, 2))
    return 2 * x + np.array([-1.0, -0.2])


def _swissroll(rng: np.random.Generator, n: int) -> np.ndarray:
    """sklearn make_swiss_roll(noise=1) keeping (x, z), / 5.

    t = 1.5 pi (1 + 2 U), (x, z) = (t cos t, t sin t) + N(0, I); the roll's height y is dropped.
    """
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) + rng.standard_normal((n, 2))
    return x / 5


def _2spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    """s = sqrt(U) 3 pi; +-(-s cos s + U'/2, s sin s + U''/2) / 3 + N(0, 0.1^2 I)."""
    s = np.sqrt(rng.random(n)) * 3 * np.pi  # up to 540 degrees: one and a half turns
    arm = np.stack([-s * np.cos(s), s * np.sin(s)], axis=1) + 0.5 * rng.random((n, 2))
    sign = rng.choice([-1.0, 1.0], (n, 1))  # the second spiral is the first turned by 180
    return sign * arm / 3 + 0.1 * rng.standard_normal((n, 2))


def _pinwheel(rng: np.random.Generator, n: int) -> np.ndarray:
    """2 R(-phi) (r, t): r ~ N(1, 0.3^2), t ~ N(0, 0.1^2), phi = 2 pi k/5 + 0.25 exp(r).

    R(-phi) rotates by -phi; k ~ U{0..4} picks the arm, and exp(r) bends it into a spiral.
    """
    r = rng.normal(1.0, _RADIAL_SD, n)
    t = rng.normal(0.0, _TANGENTIAL_SD, n)
    phi = 2 * np.pi * rng.integers(0, _ARMS, n) / _ARMS + _RATE * np.exp(r)
    c, s = np.cos(phi), np.sin(phi)
    return 2 * np.stack([c * r + s * t, -s * r + c * t], axis=1)


_SAMPLERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "checkerboard": _checkerboard,
    "8gaussians": _8gaussians,
    "circles": _circles,
    "rings": _rings,
    "moons": _moons,
    "swissroll": _swissroll,
    "2spirals": _2spirals,
    "pinwheel": _pinwheel,
}


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name not in NAMES:
        close = difflib.get_close_matches(str(name), NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown dataset {name!r}{hint}; valid names: {', '.join(NAMES)}")
    return name


def sample(name: str, n: int, seed: int | None = None, dtype=None) -> torch.Tensor:
    """n i.i.d. points from the dataset `name`, as a tensor of shape (n, 2).

    The same `seed` gives the same points; seed=None gives fresh random points. Global
    random state (numpy's or torch's) is neither used nor changed. dtype: a floating-point
    torch dtype (default torch.float32).
    """
    import torch

    from .checks import check_positive_int

    _check_name(name)
    check_positive_int(n, "n")
    dtype = torch.float32 if dtype is None else dtype
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch dtype, got {dtype!r}")
    return torch.as_tensor(sample_array(name, n, seed), dtype=dtype)  # (n, 2)


def sample_array(name: str, n: int, seed: int | None = None) -> np.ndarray:
    """The same points as sample(name, n, seed), as a float64 numpy array, without torch."""
    _check_name(name)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return _SAMPLERS[name](np.random.default_rng(seed), int(n))  # (n, 2)


def entropy(name: str) -> float:
    """The true differential entropy H = -E[log p(x)] of dataset `name`, in nats."""
    return ENTROPY[_check_name(name)]


def entropy_stderr(name: str) -> float:
    """The standard error of entropy(name): 0 where H is exact (checkerboard)."""
    return ENTROPY_STDERR[_check_name(name)]


def has_log_density(name: str) -> bool:
    """Whether log_density(name, x) is known in closed form."""
    return _check_name(name) in _LOG_DENSITIES


# ---------------------------------------------------------------------------------------
# Exact log densities. Each takes x of shape (n, 2) in float64 and returns shape (n,).
# ---------------------------------------------------------------------------------------


def _checkerboard_log_density(x: torch.Tensor) -> torch.Tensor:
    """log(1/32) on the 8 squares of side 2 (total area 32), -inf elsewhere."""
    import torch

    u = x / 2  # the unscaled board: unit squares [i, i+1] x [j, j+1] with i + j even
    corners = torch.tensor(
        [(i, j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0], dtype=x.dtype
    )  # (8, 2)
    # Closed squares, so that a point rounded onto an edge (e.g. in float32) still counts.
    inside = ((u[:, None] >= corners) & (u[:, None] <= corners + 1)).all(dim=2).any(dim=1)
    return torch.where(inside, -math.log(32.0), -math.inf).to(x.dtype)


def _8gaussians_log_density(x: torch.Tensor) -> torch.Tensor:
    """log (1/8) sum_k N(x; 4 u_k / 1.414, (0.5 / 1.414)^2 I)."""
    import torch

    angle = 2 * math.pi * torch.arange(8, dtype=x.dtype) / 8
    centres = 4 * torch.stack([angle.cos(), angle.sin()], dim=1) / 1.414  # (8, 2)
    var = (0.5 / 1.414) ** 2
    sq_dist = ((x[:, None, :] - centres) ** 2).sum(dim=2)  # (n, 8)
    log_components = -sq_dist / (2 * var) - math.log(2 * math.pi * var)
    return torch.logsumexp(log_components, dim=1) - math.log(8)


def _ring_log_density(x: torch.Tensor, radii: list[float], sd: float) -> torch.Tensor:
    """Equal mixture of rings: a point r (cos a, sin a), a ~ U[0, 2 pi), plus N(0, sd^2 I) noise.

    Averaging the gaussian over the angle a gives, with rho = |x| and u = rho r / sd^2,

        p_r(x) = exp(-(rho^2 + r^2) / (2 sd^2)) I0(u) / (2 pi sd^2)

    (I0 the modified Bessel function). I0(u) grows like e^u, so we use the scaled
    i0e(u) = e^-u I0(u):  log p_r(x) = -(rho - r)^2 / (2 sd^2) + log i0e(u) - log(2 pi sd^2).
    """
    import torch

    rho = x.norm(dim=1, keepdim=True)  # (n, 1)
    r = torch.tensor(radii, dtype=x.dtype)  # (k,)
    u = rho * r / sd**2
    log_rings = (
        -((rho - r) ** 2) / (2 * sd**2) + torch.special.i0e(u).log() - math.log(2 * math.pi * sd**2)
    )  # (n, k)
    return torch.logsumexp(log_rings, dim=1) - math.log(len(radii))


def _circles_log_density(x: torch.Tensor) -> torch.Tensor:
    """Rings of radius 3 and 1.5 with noise sd 0.08 * 3 = 0.24."""
    return _ring_log_density(x, [3.0, 1.5], 0.24)


def _rings_log_density(x: torch.Tensor) -> torch.Tensor:
    """Rings of radius 3, 2.25, 1.5, 0.75 with noise sd 0.08 (added after scaling)."""
    return _ring_log_density(x, [3.0, 2.25, 1.5, 0.75], 0.08)


def _pinwheel_log_density(x: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Change of variables through the pinwheel map x = 2 R(-phi(r)) (r, t).

    Jacobian: in the frame rotated by -phi, dx/dr = 2 (1 + phi'(r) t, -phi'(r) r) and
    dx/dt = 2 (0, 1), with phi'(r) = 0.25 exp(r); so |det dx/d(r, t)| = 4 |1 + 0.25 e^r t|.

    Preimages: write (r, t) = rho (cos a, sin a) with rho = |x| / 2. The angle of x/2 is
    theta = a - phi(r), so a preimage on arm k solves

        a - 0.25 exp(rho cos a) = theta + 2 pi k / 5   (mod 2 pi),   a in [-pi, pi).

    The five arms together ask for F(a) = (a - 0.25 exp(rho cos a) - theta) / (2 pi / 5)
    to be an integer; we find each crossing on a grid of angles and refine it by bisection.
    Summing over all preimages,

        p(x) = (1/5) sum_{(r, t)} N(r; 1, 0.3^2) N(t; 0, 0.1^2) / (4 |1 + 0.25 e^r t|).

    Preimages more than e^50 times less likely than a point's best one are dropped: they
    cannot change log p. The map folds over itself where 1 + 0.25 e^r t = 0, and the grid
    may miss a pair of preimages close to a fold; but every fold lies at least 5.9
    standard deviations out in (r, t), a region of probability below 3e-8 (where p < 1e-6).
    Elsewhere this is exact to rounding. Beyond |x| = 40, p < e^-2000 (zero in float64),
    and we return -inf.
    """
    import torch

    out = torch.full((x.shape[0],), -math.inf, dtype=x.dtype)
    rows = (x.norm(dim=1) <= 40).nonzero().flatten()
    for start in range(0, len(rows), chunk):  # chunks bound the (points, grid) memory
        part = rows[start : start + chunk]
        out[part] = _pinwheel_log_density_near(x[part])
    return out


def _pinwheel_log_density_near(x: torch.Tensor, grid: int = 128) -> torch.Tensor:
    import torch

    rho = x.norm(dim=1) / 2  # (n,)
    theta = torch.atan2(x[:, 1], x[:, 0])  # (n,)

    def turns(a: torch.Tensor, rho: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return (a - _RATE * torch.exp(rho * a.cos()) - theta) / (2 * math.pi / _ARMS)

    def gauss_exponent(a: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        r, t = rho * a.cos(), rho * a.sin()
        return 0.5 * ((r - 1) / _RADIAL_SD) ** 2 + 0.5 * (t / _TANGENTIAL_SD) ** 2

    a = torch.linspace(-math.pi, math.pi, grid + 1, dtype=x.dtype)  # (g+1,)
    f = turns(a, rho[:, None], theta[:, None])  # (n, g+1)
    whole = f.floor()
    point, cell = (whole[:, :-1] != whole[:, 1:]).nonzero(as_tuple=True)  # (m,) each
    target = torch.maximum(whole[point, cell], whole[point, cell + 1])  # the integer crossed

    # Far from the origin there are dozens of preimages; keep those whose gaussian factor
    # is within e^-50 of the point's largest.
    q = torch.minimum(gauss_exponent(a[cell], rho[point]), gauss_exponent(a[cell + 1], rho[point]))
    best = torch.full_like(rho, math.inf).scatter_reduce(0, point, q, "amin")
    keep = q <= best[point] + 50
    point, cell, target = point[keep], cell[keep], target[keep]

    # Bisection in each grid cell that holds a crossing, then one secant step: after 20
    # halvings F is a straight line across the bracket to within rounding.
    lo, hi = a[cell], a[cell + 1]
    f_lo, f_hi = f[point, cell] - target, f[point, cell + 1] - target
    for _ in range(20):
        mid = (lo + hi) / 2
        f_mid = turns(mid, rho[point], theta[point]) - target
        right = torch.sign(f_mid) == torch.sign(f_lo)  # the root lies in [mid, hi]
        lo, f_lo = torch.where(right, mid, lo), torch.where(right, f_mid, f_lo)
        hi, f_hi = torch.where(right, hi, mid), torch.where(right, f_hi, f_mid)
    root = lo + (hi - lo) * f_lo / (f_lo - f_hi)
    r, t = rho[point] * root.cos(), rho[point] * root.sin()

    log_terms = (
        _normal_log_prob(r, 1.0, _RADIAL_SD)
        + _normal_log_prob(t, 0.0, _TANGENTIAL_SD)
        - torch.log(4 * (1 + _RATE * torch.exp(r) * t).abs())
        - math.log(_ARMS)
    )  # (m,)
    # log of the sum over each point's preimages: a logsumexp over a ragged index.
    top = torch.full_like(rho, -math.inf).scatter_reduce(0, point, log_terms, "amax")
    total = torch.zeros_like(rho).index_add(0, point, torch.exp(log_terms - top[point]))
    return top + total.log()


def _normal_log_prob(v: torch.Tensor, mean: float, sd: float) -> torch.Tensor:
    return -0.5 * ((v - mean) / sd) ** 2 - math.log(sd * math.sqrt(2 * math.pi))


_LOG_DENSITIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "checkerboard": _checkerboard_log_density,
    "8gaussians": _8gaussians_log_density,
    "circles": _circles_log_density,
    "rings": _rings_log_density,
    "pinwheel": _pinwheel_log_density,
}


def log_density(name: str, x: torch.Tensor) -> torch.Tensor:
    """The exact log p(x) of dataset `name` at points x: (n, 2), returned with shape (n,).

    Known for checkerboard, 8gaussians, circles, rings and pinwheel; moons, swissroll and
    2spirals have no closed form (their density is an integral along a curve).
    """
    from .checks import check_points

    _check_name(name)
    if name not in _LOG_DENSITIES:
        raise NotImplementedError(
            f"no exact density for {name!r}; log_density knows {', '.join(_LOG_DENSITIES)}"
        )
    check_points(x, dim=2)
    # float64 throughout: the densities span hundreds of orders of magnitude.
    return _LOG_DENSITIES[name](x.detach().cpu().double()).to(dtype=x.dtype, device=x.device)


def monte_carlo_entropy(name: str, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """Estimate H = -E[log p(x)] as -mean(log p(x_i)) over n samples, with its standard error.

    Returns (estimate, standard error), the error being std(log p(x_i)) / sqrt(n).
    """
    import torch

    x = sample(name, n, seed=seed, dtype=torch.float64)
    log_p = log_density(name, x)  # (n,)
    return -log_p.mean().item(), log_p.std().item() / math.sqrt(n)
