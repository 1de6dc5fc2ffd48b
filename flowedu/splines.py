"""The monotone rational-quadratic spline (Durkan et al. 2019, "Neural Spline Flows").

Direction convention (the same in every flowedu module): x = f(z), f maps latent to data.

On [-B, B] the spline is made of K bins. Bin k runs from knot (x_k, y_k) to knot
(x_{k+1}, y_{k+1}) and has slopes d_k, d_{k+1} at its ends. With s_k = h_k / w_k (the bin's
height over its width) and xi = (u - x_k) / w_k in [0, 1]:

    y(u) = y_k + h_k (s_k xi^2 + d_k xi (1 - xi)) / (s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi))

    y'(u) = s_k^2 (d_{k+1} xi^2 + 2 s_k xi (1 - xi) + d_k (1 - xi)^2)
            / (s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi))^2

Every bin is increasing when its heights and slopes are > 0, the bins meet at the knots in
value (y = y_k, y_{k+1} at xi = 0, 1) and in slope (y' = d_k, d_{k+1}), and outside [-B, B]
the map is the identity. The slopes at -B and B are fixed to 1, so the derivative is
continuous there too. The inverse solves one quadratic a xi^2 + b xi + c = 0 per point, with
the root written as xi = 2c / (-b - sqrt(b^2 - 4ac)): the textbook (-b + sqrt(...)) / 2a
loses every digit when a is tiny and subtracts nearly equal numbers.

Parameters come unconstrained (a network can output them): bin widths and heights by a
softmax, slopes by a softplus, each kept above a minimum so that no bin collapses.
`rq_spline` works on tensors of any shape with parameters of shape (*shape, K), (*shape, K),
(*shape, K - 1); `RQSpline` is the same spline as a 1D map of notebook 01 (flowedu.maps1d).
All-zero parameters give the identity: equal bins and slopes 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .maps1d import Map1D, _as_tensor

MIN_WIDTH = 1e-3
MIN_HEIGHT = 1e-3
MIN_SLOPE = 1e-3
# softplus(raw + SLOPE_SHIFT) + MIN_SLOPE = 1 at raw = 0: zero parameters give slope 1.
SLOPE_SHIFT = math.log(math.expm1(1 - MIN_SLOPE))


def check_bound(bound: float, who: str = "rq_spline") -> float:
    """The tail bound B as a float > 0, else a clear error."""
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        raise TypeError(f"{who}: bound must be a number > 0, got {type(bound).__name__}")
    if not 0 < bound < math.inf:
        raise ValueError(f"{who}: bound must be a finite number > 0, got {bound}")
    return float(bound)


def _bins(raw: Tensor, bound: float, minimum: float) -> tuple[Tensor, Tensor]:
    """Knot positions (..., K + 1) from -B to B, and bin sizes (..., K), all >= minimum * 2B."""
    k = raw.shape[-1]
    if minimum * k >= 1:
        raise ValueError(f"{k} bins cannot each be at least {minimum} of the interval")
    frac = minimum + (1 - minimum * k) * torch.softmax(raw, dim=-1)
    knots = F.pad(torch.cumsum(frac, dim=-1), (1, 0))
    knots = 2 * bound * knots - bound
    # The ends exactly at -B and B, whatever the rounding of the cumulative sum.
    knots = torch.cat([torch.full_like(knots[..., :1], -bound), knots[..., 1:-1],
                       torch.full_like(knots[..., :1], bound)], dim=-1)  # fmt: skip
    return knots, knots[..., 1:] - knots[..., :-1]


def spline_knots(
    widths: Tensor, heights: Tensor, slopes: Tensor, bound: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The knots (x_k, y_k) and slopes d_k (each (..., K + 1)) that unconstrained parameters
    of shapes (..., K), (..., K), (..., K - 1) describe. The end slopes are 1."""
    bound = check_bound(bound)
    xs, _ = _bins(widths, bound, MIN_WIDTH)
    ys, _ = _bins(heights, bound, MIN_HEIGHT)
    d = MIN_SLOPE + F.softplus(slopes + SLOPE_SHIFT)
    d = F.pad(d, (1, 1), value=1.0)
    return xs, ys, d


def _check_params(u: Tensor, widths: Tensor, heights: Tensor, slopes: Tensor) -> None:
    k = widths.shape[-1]
    if heights.shape[-1] != k or slopes.shape[-1] != k - 1 or k < 1:
        raise ValueError(
            "rq_spline: need widths and heights of K values and slopes of K - 1 (the inner "
            f"knots) in the last dimension; got {widths.shape[-1]}, {heights.shape[-1]}, "
            f"{slopes.shape[-1]}"
        )
    for name, p in (("widths", widths), ("heights", heights), ("slopes", slopes)):
        if p.shape[:-1] != u.shape:
            raise ValueError(
                f"rq_spline: {name} must have shape {(*u.shape, p.shape[-1])} (one set of "
                f"parameters per input value), got {tuple(p.shape)}"
            )


def rq_spline(
    u: Tensor,
    widths: Tensor,
    heights: Tensor,
    slopes: Tensor,
    bound: float,
    inverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """Apply the spline (or, inverse=True, its inverse) elementwise: returns (v, log|dv/du|).

    u: any shape; widths, heights: (*u.shape, K); slopes: (*u.shape, K - 1), unconstrained.
    Points outside [-B, B] are left as they are, with log-det 0. Inputs are clipped into
    [-B, B] before the spline arithmetic, so the branch that `torch.where` throws away for
    them never makes NaN or inf, in the value or in the gradient.
    """
    bound = check_bound(bound)
    _check_params(u, widths, heights, slopes)
    xs, ys, d = spline_knots(widths, heights, slopes, bound)
    inside = (u >= -bound) & (u <= bound)
    uc = u.clamp(-bound, bound)
    # The bin of each point: how many inner knots lie at or below it (0 .. K - 1).
    edges = (ys if inverse else xs)[..., 1:-1].contiguous()
    k = torch.searchsorted(edges, uc.unsqueeze(-1).contiguous(), right=True)

    def at(t: Tensor, shift: int = 0) -> Tensor:
        return t.gather(-1, k + shift).squeeze(-1)

    x_k, w_k = at(xs), at(xs, 1) - at(xs)
    y_k, h_k = at(ys), at(ys, 1) - at(ys)
    d_k, d_k1 = at(d), at(d, 1)
    s = h_k / w_k
    bend = d_k1 + d_k - 2 * s
    if inverse:
        dy = uc - y_k
        a = h_k * (s - d_k) + dy * bend
        b = h_k * d_k - dy * bend
        c = -s * dy
        disc = (b * b - 4 * a * c).clamp_min(0)  # >= 0 in exact arithmetic; float32 may dip
        xi = (2 * c / (-b - torch.sqrt(disc))).clamp(0, 1)
        v = x_k + xi * w_k
    else:
        xi = ((uc - x_k) / w_k).clamp(0, 1)
        v = y_k + h_k * (s * xi * xi + d_k * xi * (1 - xi)) / (s + bend * xi * (1 - xi))
    one_minus = 1 - xi
    den = s + bend * xi * one_minus
    num = d_k1 * xi * xi + 2 * s * xi * one_minus + d_k * one_minus * one_minus
    log_slope = 2 * torch.log(s) + torch.log(num) - 2 * torch.log(den)  # log y'(x)
    if inverse:
        log_slope = -log_slope
    v = torch.where(inside, v, u)
    return v, torch.where(inside, log_slope, torch.zeros_like(log_slope))


class RQSpline(Map1D):
    """x = f(z): a monotone rational-quadratic spline of `n_bins` bins on [-bound, bound], the
    identity outside. Its parameters (unconstrained, see the module) are learned.

    f^-1 is the quadratic root of each bin; f' and log|f'| are the formulas of the module.
    New splines are the identity; `from_knots` builds one through given knots.
    """

    def __init__(self, n_bins: int = 8, bound: float = 3.0):
        super().__init__()
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"RQSpline: n_bins must be a positive integer, got {n_bins!r}")
        if n_bins * MIN_WIDTH >= 1:
            raise ValueError(f"RQSpline: at most {int(1 / MIN_WIDTH) - 1} bins, got {n_bins}")
        self.bound = check_bound(bound, "RQSpline")
        self.widths = nn.Parameter(torch.zeros(n_bins))
        self.heights = nn.Parameter(torch.zeros(n_bins))
        self.slopes = nn.Parameter(torch.zeros(n_bins - 1))

    @classmethod
    def from_knots(cls, x_knots, y_knots, slopes, bound: float | None = None) -> RQSpline:
        """The spline through knots (x_k, y_k), k = 0..K, with slopes d_k at the inner knots.

        x_knots and y_knots must increase strictly from -bound to bound (bound: their ends;
        default x_knots[-1]); slopes are the K - 1 inner slopes, each > 0 (the end slopes are 1).
        """
        xs = _as_tensor(x_knots, "x_knots", "RQSpline.from_knots").flatten().double()
        ys = _as_tensor(y_knots, "y_knots", "RQSpline.from_knots").flatten().double()
        ds = _as_tensor(slopes, "slopes", "RQSpline.from_knots").flatten().double()
        k = len(xs) - 1
        if len(ys) != k + 1 or len(ds) != k - 1 or k < 1:
            raise ValueError(
                "RQSpline.from_knots: need K + 1 x and y knots and K - 1 inner slopes, got "
                f"{len(xs)}, {len(ys)}, {len(ds)}"
            )
        bound = check_bound(float(xs[-1]) if bound is None else bound, "RQSpline.from_knots")
        for name, t in (("x_knots", xs), ("y_knots", ys)):
            if abs(t[0] + bound) > 1e-9 * bound or abs(t[-1] - bound) > 1e-9 * bound:
                raise ValueError(
                    f"RQSpline.from_knots: {name} must run from -{bound:g} to {bound:g}, got "
                    f"{t[0].item():g} to {t[-1].item():g}"
                )
            sizes = (t[1:] - t[:-1]) / (2 * bound)
            if (sizes <= MIN_WIDTH).any():
                raise ValueError(
                    f"RQSpline.from_knots: {name} must increase, each bin wider than "
                    f"{MIN_WIDTH:g} of the interval; got {[round(v, 4) for v in t.tolist()]}"
                )
        if (ds <= MIN_SLOPE).any():
            raise ValueError(
                f"RQSpline.from_knots: slopes must be > {MIN_SLOPE:g} (the spline must "
                f"increase), got {ds.tolist()}"
            )
        spline = cls(k, bound)

        def raw_bins(t: Tensor) -> Tensor:  # the inverse of _bins, up to a constant
            frac = ((t[1:] - t[:-1]) / (2 * bound) - MIN_WIDTH) / (1 - MIN_WIDTH * k)
            return torch.log(frac)

        dtype = spline.widths.dtype
        with torch.no_grad():
            spline.widths.copy_(raw_bins(xs).to(dtype))
            spline.heights.copy_(raw_bins(ys).to(dtype))
            # softplus^-1(d - MIN_SLOPE) - SLOPE_SHIFT, with softplus^-1(y) = log(expm1(y))
            spline.slopes.copy_((torch.log(torch.expm1(ds - MIN_SLOPE)) - SLOPE_SHIFT).to(dtype))
        return spline

    @property
    def n_bins(self) -> int:
        return self.widths.numel()

    def knots(self) -> tuple[Tensor, Tensor, Tensor]:
        """(x_k, y_k, d_k) for k = 0..K: knot positions and slopes, for plots (no gradient)."""
        with torch.no_grad():
            return spline_knots(self.widths, self.heights, self.slopes, self.bound)

    def _params_for(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        def expand(p: Tensor) -> Tensor:
            return p.to(u.dtype).expand(*u.shape, p.numel())

        return expand(self.widths), expand(self.heights), expand(self.slopes)

    def _f(self, z):
        return rq_spline(z, *self._params_for(z), self.bound)[0]

    def _f_inv(self, x):
        return rq_spline(x, *self._params_for(x), self.bound, inverse=True)[0]

    def _log_abs_df(self, z):
        return rq_spline(z, *self._params_for(z), self.bound)[1]

    def _log_abs_df_inv(self, x):
        return rq_spline(x, *self._params_for(x), self.bound, inverse=True)[1]

    def _df(self, z):
        return self._log_abs_df(z).exp()

    def extra_repr(self) -> str:
        return f"n_bins={self.n_bins}, bound={self.bound:g}"
