"""Autoregressive flows: MADE (Germain et al. 2015), MAF (Papamakarios et al. 2017) and IAF
(Kingma et al. 2016), with an affine or a rational-quadratic spline transformer.

Direction convention (the same in every flowedu layer): forward(x) -> (z, log|det dz/dx|) is
data -> latent (normalizing: what the density needs); inverse(z) -> (x, log|det dx/dz|) is
latent -> data (generating: what sampling needs).

An autoregressive layer transforms coordinate i given the coordinates before it:

    MAF:  z_i = tau(x_i; theta_i(x_1 .. x_{i-1}))      (conditioned on the data side)
    IAF:  x_i = tau^-1(z_i; theta_i(z_1 .. z_{i-1}))   (conditioned on the latent side)

with tau increasing in its first argument (affine: x exp(s) + t; or a spline). Either way
the Jacobian is triangular, so log|det| = sum_i log tau'(.), one term per coordinate. A
coupling layer is the special case where theta_i depends on a fixed block x_a only, which
makes its Jacobian block-triangular.

All theta_i come from one network evaluation, MADE: an MLP whose weights are masked so that
output i depends only on inputs < i. So the side whose inputs are known costs one pass:

    MAF: density (forward, x -> z) in 1 pass;  sampling (inverse, z -> x) in D passes,
         since x_i needs x_1 .. x_{i-1} first.
    IAF: sampling (inverse, z -> x) in 1 pass; density (forward, x -> z) in D passes.

`network_passes` counts the passes each layer made, so the difference can be seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .checks import check_points, check_positive_int, check_same_dtype_device
from .couplings import Permutation, Standardize, coordinate_names
from .flow import Flow, recipe
from .splines import check_bound, rq_spline

TRANSFORMERS = ("affine", "spline")
CONDITIONED_ON = ("x", "z")  # MAF, IAF


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out_features, in_features)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """A masked MLP: x of shape (batch, D) -> theta of shape (batch, D, n_params) where
    theta[:, i] depends only on x[:, :i] (theta[:, 0] on nothing: it is a constant).

    Input i has degree i + 1; hidden unit k has degree 1 + (k mod (D - 1)), cycling through
    1 .. D - 1 so that every output can see all the inputs it may; a unit of degree m sees
    inputs of degree <= m, and output i (degree i + 1) sees units of degree < i + 1. The last
    layer starts at zero, so theta = 0 at initialisation.
    """

    def __init__(self, dim: int, n_params: int, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        check_positive_int(dim, "dim")
        check_positive_int(n_params, "n_params")
        if dim < 2:
            raise ValueError(
                "MADE needs dim >= 2 (with one coordinate there is nothing to condition on), "
                f"got {dim}"
            )
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be a non-empty list of layer widths >= 1, got {hidden}")
        self.dim, self.n_params = dim, n_params
        degrees = [torch.arange(1, dim + 1)]
        for width in hidden:
            degrees.append(1 + torch.arange(width) % (dim - 1))
        out_degrees = torch.arange(1, dim + 1).repeat(n_params)  # output p * D + i: degree i + 1
        layers: list[nn.Module] = []
        for d_in, d_out in zip(degrees[:-1], degrees[1:], strict=True):
            layers += [MaskedLinear(d_out[:, None] >= d_in[None, :]), nn.ReLU()]
        last = MaskedLinear(out_degrees[:, None] > degrees[-1][None, :])
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out.reshape(len(x), self.n_params, self.dim).transpose(1, 2)


class MaskedAutoregressive(nn.Module):
    """One autoregressive layer: MAF's (conditioned_on="x") or IAF's (conditioned_on="z"),
    with an affine or spline transformer tau; see the module's docstring for the passes."""

    kind = "autoregressive"

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (128, 128),
        transformer: str = "affine",
        conditioned_on: str = "x",
        n_bins: int = 8,
        bound: float = 4.0,
        scale_bound: float = 3.0,
    ):
        super().__init__()
        if transformer not in TRANSFORMERS:
            raise ValueError(f"transformer must be one of {TRANSFORMERS}, got {transformer!r}")
        if conditioned_on not in CONDITIONED_ON:
            raise ValueError(
                f'conditioned_on must be "x" (MAF: density in one pass) or "z" (IAF: sampling '
                f"in one pass), got {conditioned_on!r}"
            )
        check_positive_int(n_bins, "n_bins")
        if not 0 < scale_bound < float("inf"):
            raise ValueError(f"scale_bound must be a finite number > 0, got {scale_bound}")
        self.dim = dim
        self.transformer, self.conditioned_on = transformer, conditioned_on
        self.n_bins, self.bound, self.scale_bound = n_bins, check_bound(bound), scale_bound
        n_params = 2 if transformer == "affine" else 3 * n_bins - 1
        self.made = MADE(dim, n_params, hidden)
        self.network_passes = 0  # how many times the network ran, for teaching

    @property
    def one_pass_direction(self) -> str:
        """The direction that costs one network pass: "normalize" for MAF, "generate" for IAF."""
        return "normalize" if self.conditioned_on == "x" else "generate"

    def describe(self, direction: str = "normalize", names: Sequence[str] | None = None) -> str:
        n = coordinate_names(self.dim, names)
        how = "scales and shifts" if self.transformer == "affine" else "bends with a spline"
        passes = "1 pass" if direction == self.one_pass_direction else f"{self.dim} passes"
        return f"{how} {', '.join(n)}, each given those before it ({passes})"

    def _theta(self, h: torch.Tensor) -> torch.Tensor:
        self.network_passes += 1
        if self.transformer == "spline":
            h = h.clamp(-self.bound, self.bound)  # as in the spline coupling: see spline_flow
        return self.made(h)

    def _tau(self, u: torch.Tensor, theta: torch.Tensor, inverse: bool):
        """v = tau(u) (or tau^-1) per coordinate, and log|dv/du| per coordinate."""
        if self.transformer == "affine":
            s = self.scale_bound * torch.tanh(theta[..., 0] / self.scale_bound)
            t = theta[..., 1]
            return ((u - t) * torch.exp(-s), -s) if inverse else (u * torch.exp(s) + t, s)
        k = self.n_bins
        w, h, d = theta[..., :k], theta[..., k : 2 * k], theta[..., 2 * k :]
        return rq_spline(u, w, h, d, self.bound, inverse=inverse)

    def _one_pass(self, u: torch.Tensor, inverse: bool):
        v, log_d = self._tau(u, self._theta(u), inverse)
        return v, log_d.sum(dim=1)

    def _d_passes(self, v: torch.Tensor, inverse: bool):
        """Solve for u with v = tau(u; theta(u_<i)) coordinate by coordinate: pass i knows
        u_1 .. u_{i-1}, so it fixes u_i. After D passes theta from the last one is final."""
        u = torch.zeros_like(v)
        for i in range(self.dim):
            theta = self._theta(u)
            u_i, log_d = self._tau(v[:, i], theta[:, i], inverse)
            u = torch.cat([u[:, :i], u_i.unsqueeze(1), u[:, i + 1 :]], dim=1)
        _, log_d = self._tau(v, theta, inverse)  # theta_i of the last pass sees the final u_<i
        return u, log_d.sum(dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z = f^-1(x) and log|det dz/dx|: one pass for MAF, D passes for IAF."""
        check_points(x, self.dim)
        check_same_dtype_device(x, self.made.net[-1].weight)
        if self.conditioned_on == "x":
            return self._one_pass(x, inverse=False)
        return self._d_passes(x, inverse=True)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = f(z) and log|det dx/dz|: D passes for MAF, one pass for IAF."""
        check_points(z, self.dim, "z")
        check_same_dtype_device(z, self.made.net[-1].weight, "z")
        if self.conditioned_on == "x":
            return self._d_passes(z, inverse=True)
        return self._one_pass(z, inverse=False)

    def extra_repr(self) -> str:
        kind = "MAF" if self.conditioned_on == "x" else "IAF"
        return f"{kind}, dim={self.dim}, transformer={self.transformer}"


@recipe("autoregressive_flow")
def autoregressive_flow(
    dim: int = 2,
    n_layers: int = 4,
    hidden: tuple[int, ...] | list[int] = (128, 128),
    transformer: str = "affine",
    conditioned_on: str = "x",
    n_bins: int = 8,
    bound: float = 4.0,
    standardize: tuple[list[float], list[float]] | None = None,
) -> Flow:
    """A MAF (conditioned_on="x") or an IAF ("z"): `n_layers` autoregressive layers, the
    coordinates' order reversed between them so that each is conditioned on the others in
    turn. `standardize=(mean, std)` puts a fixed Standardize layer first."""
    check_positive_int(n_layers, "n_layers")
    dtype = torch.get_default_dtype()
    layers: list[nn.Module] = (
        []
        if standardize is None
        else [Standardize(*(torch.as_tensor(v, dtype=dtype) for v in standardize))]
    )
    for i in range(n_layers):
        if i > 0:
            layers.append(Permutation(torch.arange(dim).flip(0)))
        layers.append(MaskedAutoregressive(dim, hidden, transformer, conditioned_on, n_bins, bound))
    return Flow(layers, dim)
