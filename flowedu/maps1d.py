"""One-dimensional monotone bijections and the change of variables formula (Eq. 1).

Direction convention (the same in every flowedu module)
-------------------------------------------------------
The course writes x = f(z): f maps a latent z ~ N(0, 1) to data x, and f^-1 maps data back
to the latent. Each map below is named after f and is a ``torch.nn.Module`` with

* ``forward(x) -> (z, log_det)``: z = f^-1(x), log_det = log|d f^-1(x)/dx|  (data -> latent)
* ``inverse(z) -> (x, log_det)``: x = f(z),    log_det = log|d f(z)/dz|     (latent -> data)

for inputs of shape (batch, 1), with log_det of shape (batch,). Then

    p(x) = p_Z(f^-1(x)) |d f^-1(x)/dx|,   i.e.   log p(x) = log p_Z(z) + log_det      (Eq. 1)

and a round trip x -> z -> x gives back x, with the two log-dets negatives of each other.
The 1D maps therefore stack into a 1D flow with the same loop as the 2D layers.

For the notes each map also offers the elementwise pieces, on tensors of any shape:
``f``, ``f_inv``, ``df`` = f', ``log_abs_df`` = log|f'| and
``log_abs_df_inv`` = log|(f^-1)'| = -log|f'(f^-1(x))|.

f is defined for every real z, but its range (the x it reaches) can be smaller: exp only
reaches x > 0. ``f_inv`` refuses x outside the range; the density functions instead give
such x density 0. Parameters are stored in torch's default dtype: for float64 work, call
``torch.set_default_dtype(torch.float64)`` before building a map (``.double()`` afterwards
keeps values already rounded to float32, e.g. 0.2 -> 0.2000000030).
"""

import inspect
import math
import numbers
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Normal

# ----------------------------------------------------------------------------------------
# Input checks: errors say what was wrong and what to do.


def _plural(k: int, word: str) -> str:
    return f"{k} {word}" + ("" if k == 1 else "s")


def _as_tensor(x, name: str, who: str) -> Tensor:
    """x as a finite floating-point tensor (numbers, lists and integer tensors are converted)."""
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{who}: expected {name} as a torch.Tensor, got {type(x).__name__}"
            ) from None
    if x.is_complex():
        raise TypeError(f"{who}: expected a real {name}, got dtype {x.dtype}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())  # integers and booleans become floats
    finite = torch.isfinite(x)
    if not finite.all():
        n_nan = int(torch.isnan(x).sum())
        n_inf = int((~finite).sum()) - n_nan
        found = [
            f"{what} at {_plural(n, 'position')}"
            for what, n in [("NaN", n_nan), ("inf", n_inf)]
            if n
        ]
        raise ValueError(f"{who}: {name} contains {' and '.join(found)}; clean the input first")
    return x


def _check_batch_1d(x, name: str, who: str) -> Tensor:
    """x as a (batch, 1) tensor, the shape of a 1D flow layer's input."""
    x = _as_tensor(x, name, who)
    if x.ndim != 2 or x.shape[1] != 1:
        raise ValueError(
            f"{who}: expected {name} of shape (batch, 1), got {tuple(x.shape)}; "
            f"turn a flat batch into one with {name}.unsqueeze(-1)"
        )
    return x


def _check_finite_result(out: Tensor, inp: Tensor, name: str, who: str, hint: str) -> None:
    """Refuse results that overflowed: a flow must map finite numbers to finite numbers."""
    bad = ~torch.isfinite(out)
    if bad.any():
        raise ValueError(
            f"{who}: the result overflows {out.dtype} at {_plural(int(bad.sum()), 'position')} "
            f"({name} from {inp.min().item():.3g} to {inp.max().item():.3g}); {hint}"
        )


def _real(value, name: str, who: str) -> float:
    """A parameter value as a finite Python float that the default dtype can hold."""
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{who}: {name} must be a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(f"{who}: {name} must be finite, got {value}")
    info = torch.finfo(torch.get_default_dtype())
    if abs(value) > info.max or 0 < abs(value) < info.tiny:
        raise ValueError(
            f"{who}: {name} = {value:g} is outside what {info.dtype} parameters hold "
            f"(sizes {info.tiny:.1e} to {info.max:.1e})"
        )
    return value


def _positive(value, name: str, who: str) -> float:
    value = _real(value, name, who)
    if value <= 0:
        raise ValueError(f"{who}: {name} must be > 0, got {value:g}")
    return value


def _log_param(value: float) -> nn.Parameter:
    """A positive parameter stored as its log, so gradient steps can never make it <= 0."""
    return nn.Parameter(torch.tensor(math.log(value)))


def _log_cosh(u: Tensor) -> Tensor:
    """log cosh(u) = |u| + log(1 + exp(-2|u|)) - log 2, finite where cosh(u) overflows."""
    return u.abs() + torch.log1p(torch.exp(-2 * u.abs())) - math.log(2)


# ----------------------------------------------------------------------------------------
# The maps


class Map1D(nn.Module):
    """A strictly monotone, differentiable bijection x = f(z) of the real line onto the open
    interval ``range_bounds`` = (low, high).

    Subclasses write the math, unchecked, in ``_f``, ``_f_inv``, ``_df`` and
    ``_log_abs_df`` (and ``_log_abs_df_inv`` where a direct formula is nicer); the public
    methods below check their inputs first.
    """

    domain = "all real z"
    range_bounds: tuple[float, float] = (-math.inf, math.inf)

    @property
    def range(self) -> str:
        """The range of f (= the domain of f^-1) in words, e.g. 'x > 0'."""
        low, high = self.range_bounds
        if math.isinf(low) and math.isinf(high):
            return "all real x"
        if math.isinf(high):
            return f"x > {low:g}"
        if math.isinf(low):
            return f"x < {high:g}"
        return f"{low:g} < x < {high:g}"

    @property
    def name(self) -> str:
        return type(self).__name__

    # --- elementwise pieces, any shape ---

    def f(self, z: Tensor) -> Tensor:
        """x = f(z), elementwise."""
        z = _as_tensor(z, "z", f"{self.name}.f")
        x = self._f(z)
        _check_finite_result(x, z, "z", f"{self.name}.f", "use smaller |z| or float64")
        return x

    def f_inv(self, x: Tensor) -> Tensor:
        """z = f^-1(x), elementwise; x must lie in the range of f."""
        x = self._check_in_range(x, "f_inv")
        z = self._f_inv(x)
        hint = f"x is too large, or too close to the edge of the range {self.range}"
        _check_finite_result(z, x, "x", f"{self.name}.f_inv", hint)
        return z

    def df(self, z: Tensor) -> Tensor:
        """f'(z), elementwise (may over- or underflow: use log_abs_df in formulas)."""
        return self._df(_as_tensor(z, "z", f"{self.name}.df"))

    def log_abs_df(self, z: Tensor) -> Tensor:
        """log|f'(z)|, elementwise, computed without forming f'(z)."""
        return self._log_abs_df(_as_tensor(z, "z", f"{self.name}.log_abs_df"))

    def log_abs_df_inv(self, x: Tensor) -> Tensor:
        """log|d f^-1(x)/dx| = -log|f'(f^-1(x))|, elementwise; x must lie in the range."""
        return self._log_abs_df_inv(self._check_in_range(x, "log_abs_df_inv"))

    def _log_abs_df_inv(self, x: Tensor) -> Tensor:
        # Inverse function theorem: (f^-1)'(x) = 1 / f'(f^-1(x)).
        return -self._log_abs_df(self._f_inv(x))

    def _check_in_range(self, x, what: str) -> Tensor:
        x = _as_tensor(x, "x", f"{self.name}.{what}")
        low, high = self.range_bounds
        if low > -math.inf and (x <= low).any():
            found = f"min x = {x.min().item():.3g}"
        elif high < math.inf and (x >= high).any():
            found = f"max x = {x.max().item():.3g}"
        else:
            return x
        raise ValueError(f"{self.name}: {what} needs {self.range}; got {found}")

    # --- the flow-layer interface, (batch, 1) ---

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data -> latent. x: (batch, 1) -> z = f^-1(x): (batch, 1), log|d f^-1/dx|: (batch,)."""
        x = _check_batch_1d(x, "x", f"{self.name}.forward")
        z = self.f_inv(x)
        return z, self._log_abs_df_inv(x).sum(dim=1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Latent -> data. z: (batch, 1) -> x = f(z): (batch, 1), log|df/dz|: (batch,)."""
        z = _check_batch_1d(z, "z", f"{self.name}.inverse")
        x = self.f(z)
        return x, self._log_abs_df(z).sum(dim=1)

    def _f(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def _f_inv(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _df(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def _log_abs_df(self, z: Tensor) -> Tensor:
        raise NotImplementedError


class Affine(Map1D):
    """x = f(z) = scale * z + shift, scale != 0.

    f^-1(x) = (x - shift) / scale,   f'(z) = scale,   log|f'(z)| = log|scale|.

    A negative scale gives a decreasing map: f' < 0, which is why Eq. 1 has |f'|. Only
    log|scale| and shift are learned; the sign is fixed, so training can never move the
    scale through 0, where the map stops being invertible.
    """

    def __init__(self, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        scale = _real(scale, "scale", "Affine")
        if scale == 0:
            raise ValueError(
                "Affine: scale must be nonzero: scale 0 squashes every z to one point "
                "and has no inverse"
            )
        self.log_abs_scale = _log_param(abs(scale))
        self.register_buffer("sign", torch.tensor(math.copysign(1.0, scale)))
        self.shift = nn.Parameter(torch.tensor(_real(shift, "shift", "Affine")))

    @property
    def scale(self) -> Tensor:
        return self.sign * self.log_abs_scale.exp()

    def _f(self, z):
        return self.scale * z + self.shift

    def _f_inv(self, x):
        return (x - self.shift) / self.scale

    def _df(self, z):
        return torch.ones_like(z) * self.scale

    def _log_abs_df(self, z):
        return torch.ones_like(z) * self.log_abs_scale

    def extra_repr(self) -> str:
        return f"scale={self.scale.item():.4g}, shift={self.shift.item():.4g}"


class Exp(Map1D):
    """x = f(z) = exp(z); range x > 0.

    f^-1(x) = log x,   f'(z) = exp(z),   log|f'(z)| = z,   log|(f^-1)'(x)| = -log x.
    N(0, 1) pushed through it is the log-normal distribution.
    """

    range_bounds = (0.0, math.inf)

    def _f(self, z):
        return torch.exp(z)

    def _f_inv(self, x):
        return torch.log(x)

    def _df(self, z):
        return torch.exp(z)

    def _log_abs_df(self, z):
        return z.clone()  # exact: no exp, no log (a copy, so callers never alias their input)

    def _log_abs_df_inv(self, x):
        return -torch.log(x)


class Sinh(Map1D):
    """x = f(z) = scale * sinh(a z + b), a > 0, scale > 0.

    f^-1(x) = (asinh(x / scale) - b) / a,   f'(z) = scale * a * cosh(a z + b),
    log|f'(z)| = log scale + log a + log cosh(a z + b).
    sinh grows like exp(|z|), so N(0, 1) pushed through it has heavy tails; b != 0 makes
    them unequal (skew).
    """

    def __init__(self, a: float = 1.0, b: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.log_a = _log_param(_positive(a, "a", "Sinh"))
        self.b = nn.Parameter(torch.tensor(_real(b, "b", "Sinh")))
        self.log_scale = _log_param(_positive(scale, "scale", "Sinh"))

    @property
    def a(self) -> Tensor:
        return self.log_a.exp()

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp()

    def _f(self, z):
        return self.scale * torch.sinh(self.a * z + self.b)

    def _f_inv(self, x):
        return (torch.asinh(x / self.scale) - self.b) / self.a

    def _df(self, z):
        return self.scale * self.a * torch.cosh(self.a * z + self.b)

    def _log_abs_df(self, z):
        return self.log_scale + self.log_a + _log_cosh(self.a * z + self.b)

    def extra_repr(self) -> str:
        return f"a={self.a.item():.4g}, b={self.b.item():.4g}, scale={self.scale.item():.4g}"


class Logistic(Map1D):
    """x = f(z) = sigmoid(z) = 1 / (1 + exp(-z)); range 0 < x < 1.

    f^-1(x) = logit(x) = log x - log(1 - x),   f'(z) = sigmoid(z) (1 - sigmoid(z)),
    log|f'(z)| = -softplus(-z) - softplus(z),   log|(f^-1)'(x)| = -log x - log(1 - x).
    N(0, 1) pushed through it is the logit-normal distribution.
    """

    range_bounds = (0.0, 1.0)

    def _f(self, z):
        return torch.sigmoid(z)

    def _f_inv(self, x):
        return torch.log(x) - torch.log1p(-x)

    def _df(self, z):
        s = torch.sigmoid(z)
        return s * (1 - s)

    def _log_abs_df(self, z):
        # log sigmoid(z) + log sigmoid(-z), each = -softplus(.), exact for large |z|.
        return -nn.functional.softplus(-z) - nn.functional.softplus(z)

    def _log_abs_df_inv(self, x):
        return -torch.log(x) - torch.log1p(-x)


class Cubic(Map1D):
    """The monotone map defined by its inverse, a cubic:

        f^-1(x) = a x + b x^3,   a > 0, b >= 0,   so  p(x) = N(a x + b x^3; 0, 1) (a + 3 b x^2).

    With small a the factor a + 3 b x^2 is small near x = 0 and pushes mass outwards:
    N(0, 1) becomes bimodal.

    f(z) is the one real root of b x^3 + a x - z = 0 (Cardano's formula). Written with
    hyperbolic functions it has no cancellation at small z and no overflow at large z:

        x = 2 s sinh(asinh(3 z / (2 a s)) / 3),   s = sqrt(a / (3 b))

    (check: with x = 2 s sinh(t), b x^3 + a x = 2 b s^3 (4 sinh^3 t + 3 sinh t)
    = 2 b s^3 sinh(3 t) = z). For b = 0 the map is affine, x = z / a.

    f'(z) = 1 / (a + 3 b x^2),   log|f'(z)| = -log(a + 3 b x^2)  with x = f(z).
    b = 0 is stored as log b = -inf, which keeps b at 0 during training.
    """

    def __init__(self, a: float = 1.0, b: float = 1.0):
        super().__init__()
        self.log_a = _log_param(_positive(a, "a", "Cubic"))
        b = _real(b, "b", "Cubic")
        if b < 0:
            raise ValueError(f"Cubic: b must be >= 0, got {b:g} (b < 0 makes f^-1 non-monotone)")
        self.log_b = nn.Parameter(torch.tensor(math.log(b) if b > 0 else -math.inf))

    @property
    def a(self) -> Tensor:
        return self.log_a.exp()

    @property
    def b(self) -> Tensor:
        return self.log_b.exp()

    def _is_affine(self) -> bool:
        return bool(self.b == 0)  # also when a tiny b underflows in the parameters' dtype

    def _f(self, z):
        a, b = self.a, self.b
        if self._is_affine():
            return z / a
        s = torch.sqrt(a / (3 * b))
        return 2 * s * torch.sinh(torch.asinh(3 * z / (2 * a * s)) / 3)

    def _f_inv(self, x):
        if self._is_affine():
            return self.a * x  # avoids 0 * x^3 = 0 * inf when x^3 overflows
        return self.a * x + self.b * x**3

    def _df(self, z):
        return 1 / (self.a + 3 * self.b * self._f(z) ** 2)

    def _log_abs_df(self, z):
        return -self._log_abs_df_inv(self._f(z))

    def _log_abs_df_inv(self, x):
        # log(a + 3 b x^2) = 2 log hypot(sqrt a, sqrt(3 b) x): no overflow of x^2.
        return 2 * torch.log(torch.hypot(self.a.sqrt(), (3 * self.b).sqrt() * x))

    def extra_repr(self) -> str:
        return f"a={self.a.item():.4g}, b={self.b.item():.4g}"


class Tanh(Map1D):
    """x = f(z) = scale * tanh(z), scale > 0; range -scale < x < scale.

    f^-1(x) = atanh(x / scale),   f'(z) = scale (1 - tanh^2 z) = scale / cosh^2 z,
    log|f'(z)| = log scale - 2 log cosh z,
    log|(f^-1)'(x)| = -log scale - log(1 - u) - log(1 + u),  u = x / scale.
    A bounded map: N(0, 1) pushed through tanh piles up near the edges (bimodal).
    """

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.log_scale = _log_param(_positive(scale, "scale", "Tanh"))

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp()

    @property
    def range_bounds(self) -> tuple[float, float]:
        c = self.scale.item()
        return (-c, c)

    def _f(self, z):
        return self.scale * torch.tanh(z)

    def _f_inv(self, x):
        return torch.atanh(x / self.scale)

    def _df(self, z):
        return self.scale / torch.cosh(z) ** 2

    def _log_abs_df(self, z):
        return self.log_scale - 2 * _log_cosh(z)

    def _log_abs_df_inv(self, x):
        u = x / self.scale
        return -self.log_scale - torch.log1p(-u) - torch.log1p(u)

    def extra_repr(self) -> str:
        return f"scale={self.scale.item():.4g}"


class SinhArcsinh(Map1D):
    """Jones & Pewsey's sinh-arcsinh map, tail > 0:

        x = f(z) = sinh((asinh(z) + skew) / tail),   f^-1(x) = sinh(tail * asinh(x) - skew).

    skew = 0 and tail = 1 is the identity; skew moves mass to one side, tail < 1 gives
    heavier tails than N(0, 1), tail > 1 lighter ones. With w = (asinh z + skew) / tail,
    f'(z) = cosh(w) / (tail sqrt(1 + z^2)),
    log|f'(z)| = log cosh(w) - log tail - log sqrt(1 + z^2).
    """

    def __init__(self, skew: float = 0.0, tail: float = 1.0):
        super().__init__()
        self.skew = nn.Parameter(torch.tensor(_real(skew, "skew", "SinhArcsinh")))
        self.log_tail = _log_param(_positive(tail, "tail", "SinhArcsinh"))

    @property
    def tail(self) -> Tensor:
        return self.log_tail.exp()

    def _w(self, z: Tensor) -> Tensor:
        return (torch.asinh(z) + self.skew) / self.tail

    def _f(self, z):
        return torch.sinh(self._w(z))

    def _f_inv(self, x):
        return torch.sinh(self.tail * torch.asinh(x) - self.skew)

    def _df(self, z):
        return torch.cosh(self._w(z)) / (self.tail * torch.sqrt(1 + z**2))

    def _log_abs_df(self, z):
        # log sqrt(1 + z^2) = log hypot(1, z): no overflow of z^2.
        return _log_cosh(self._w(z)) - self.log_tail - torch.log(torch.hypot(torch.ones_like(z), z))

    def extra_repr(self) -> str:
        return f"skew={self.skew.item():.4g}, tail={self.tail.item():.4g}"


# ----------------------------------------------------------------------------------------
# Eq. 1 as functions, and a registry for the notebook's explorer


def _check_map(map) -> None:
    if not isinstance(map, Map1D):
        raise TypeError(
            f"expected a flowedu 1D map (e.g. make_map('exp')), got {type(map).__name__}"
        )


def _standard_normal(dtype: torch.dtype) -> Normal:
    return Normal(torch.zeros((), dtype=dtype), torch.ones((), dtype=dtype))


def pushforward_log_density(map: Map1D, x: Tensor, base: Distribution | None = None) -> Tensor:
    """log p(x) = log p_Z(f^-1(x)) + log|d f^-1(x)/dx|   (Eq. 1, in logs).

    x: any shape; returns the same shape. base: a scalar distribution for z, N(0, 1) if None.
    Points outside the range of f have density 0, so log p = -inf there; this is not an
    error, so that a density can be evaluated on any plotting grid.
    """
    _check_map(map)
    x = _as_tensor(x, "x", "pushforward_log_density")
    base = _standard_normal(x.dtype) if base is None else base
    low, high = map.range_bounds
    inside = (x > low) & (x < high)
    # Evaluate the formula at a harmless point inside the range wherever x is outside it.
    x_in = torch.where(inside, x, map._f(torch.zeros((), dtype=x.dtype)).detach())
    z = map._f_inv(x_in)
    log_p = base.log_prob(z) + map._log_abs_df_inv(x_in)
    # x so close to a finite edge that f^-1(x) overflows: the density there tends to 0.
    keep = inside & torch.isfinite(z)
    return torch.where(keep, log_p, torch.full_like(log_p, -math.inf))


def pushforward_density(map: Map1D, x: Tensor, base: Distribution | None = None) -> Tensor:
    """p(x) = p_Z(f^-1(x)) |d f^-1(x)/dx|   (Eq. 1); 0 outside the range of f.

    x: any shape; returns the same shape. base: a scalar distribution, N(0, 1) if None.
    """
    return pushforward_log_density(map, x, base).exp()


def sample_pushforward(
    map: Map1D, n: int, seed: int | None = None, base: Distribution | None = None
) -> Tensor:
    """n samples x = f(z), z ~ base (N(0, 1) if None): shape (n,), no gradient.

    A seed gives the same samples every time and leaves torch's global random stream alone.
    """
    _check_map(map)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"sample_pushforward: n must be a positive integer, got {n!r}")
    base = _standard_normal(torch.get_default_dtype()) if base is None else base
    if seed is None:
        z = base.sample((int(n),))
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            z = base.sample((int(n),))
    with torch.no_grad():
        return map.f(z)


# name -> constructor with teaching defaults; make_map(name, **params) overrides them.
MAPS: dict[str, Callable[..., Map1D]] = {
    "affine": partial(Affine, scale=2.0, shift=1.0),
    "exp": Exp,
    "sinh": partial(Sinh, a=1.0, b=0.5, scale=1.0),
    "logistic": Logistic,
    "cubic": partial(Cubic, a=0.2, b=1.0),  # small a: N(0, 1) becomes bimodal
    "tanh": partial(Tanh, scale=2.0),
    "sinh_arcsinh": partial(SinhArcsinh, skew=0.5, tail=0.7),
}


def map_params(name: str) -> dict[str, float]:
    """The parameters of map `name` and their teaching defaults, e.g. for sliders."""
    ctor = MAPS[_check_name(name)]
    params = inspect.signature(ctor).parameters.values()
    return {p.name: p.default for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _check_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"map name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in MAPS:
        raise ValueError(f"unknown map {name!r}; valid names: {', '.join(MAPS)}")
    return key


def make_map(name: str, **params: float) -> Map1D:
    """Build the map called `name` (see MAPS), with `params` replacing its defaults.

    Unknown names, unknown parameters and invalid values raise ValueError saying why.
    """
    key = _check_name(name)
    valid = map_params(key)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        takes = ", ".join(valid) if valid else "no parameters"
        raise ValueError(f"map {key!r} has no parameter {', '.join(unknown)}; it takes {takes}")
    return MAPS[key](**params)
