"""Spline couplings (Durkan et al. 2019): a coupling layer whose transformer is the monotone
rational-quadratic spline of flowedu.splines, and the `spline_flow` recipe.

Direction convention (the same in every flowedu layer): forward(x) -> (z, log|det dz/dx|) is
data -> latent; inverse(z) -> (x, log|det dx/dz|) is latent -> data.

    z_a = x_a,   z_b = spline(x_b; theta(x_a))   (each coordinate of x_b its own spline)

theta(x_a) holds, for every coordinate of x_b, K bin widths, K bin heights and K - 1 inner
slopes, from an MLP whose last layer starts at zero: a new layer is the identity. The
Jacobian is block-triangular as for the affine coupling, with diagonal block diag(spline'),
so log|det| = sum log spline'(x_b). Inverting needs theta only at z_a = x_a and one
quadratic root per coordinate.

The network sees x_a clipped to [-B, B]: outside the bound the spline of x_b does not care
where x_a lies, and a point far out would otherwise feed the network a value it never saw in
training (its output, huge, makes the spline's bins of no use and the float32 inverse
imprecise).
"""

from __future__ import annotations

import torch
from torch import nn

from .checks import check_positive_int
from .couplings import Coupling, Standardize, half_mask
from .flow import Flow, recipe
from .splines import check_bound, rq_spline


class SplineCoupling(Coupling):
    """z_b = spline(x_b; theta(x_a)), a monotone RQ spline per coordinate of x_b with
    `n_bins` bins on [-bound, bound] and identity tails; log|det| = sum log spline'."""

    how = "bends with a spline"

    def __init__(
        self,
        mask: torch.Tensor,
        hidden: tuple[int, ...] = (128, 128),
        n_bins: int = 16,
        bound: float = 4.0,
    ):
        check_positive_int(n_bins, "n_bins")
        super().__init__(mask, hidden, n_params=3 * n_bins - 1)
        self.n_bins = n_bins
        self.bound = check_bound(bound, "SplineCoupling")
        # The conditioner sees x_a clipped to [-B, B] (see the module's docstring).
        self.net = nn.Sequential(nn.Hardtanh(-self.bound, self.bound), *self.net)

    def _params(self, params: torch.Tensor, n: int):
        k = self.n_bins
        theta = params.reshape(n, len(self.idx_b), 3 * k - 1)
        return theta[..., :k], theta[..., k : 2 * k], theta[..., 2 * k :]

    def _transform(self, x_b, params):
        z_b, log_d = rq_spline(x_b, *self._params(params, len(x_b)), self.bound)
        return z_b, log_d.sum(dim=1)

    def _untransform(self, z_b, params):
        x_b, log_d = rq_spline(z_b, *self._params(params, len(z_b)), self.bound, inverse=True)
        return x_b, log_d.sum(dim=1)


@recipe("spline_flow")
def spline_flow(
    dim: int = 2,
    n_layers: int = 6,
    hidden: tuple[int, ...] | list[int] = (128, 128),
    n_bins: int = 16,
    bound: float = 4.0,
    standardize: tuple[list[float], list[float]] | None = None,
) -> Flow:
    """A neural spline flow: `n_layers` spline couplings whose halves alternate.

    Layer l copies the first half of the coordinates when l is even and the second half when
    it is odd. `standardize=(mean, std)` puts a fixed Standardize layer first, so that the
    splines' interval [-bound, bound] covers the data (4 sd by default) while log_prob stays
    in the data's own coordinates. New flows are the identity.
    """
    check_positive_int(dim, "dim")
    check_positive_int(n_layers, "n_layers")
    check_positive_int(n_bins, "n_bins")
    if dim < 2:
        raise ValueError(f"a coupling flow needs dim >= 2 to split x into halves, got dim={dim}")
    if not isinstance(hidden, (tuple, list)) or not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must be a non-empty list of layer widths >= 1, got {hidden!r}")
    hidden = tuple(int(h) for h in hidden)
    dtype = torch.get_default_dtype()
    layers: list[nn.Module] = (
        []
        if standardize is None
        else [Standardize(*(torch.as_tensor(v, dtype=dtype) for v in standardize))]
    )
    for i in range(n_layers):
        layers.append(SplineCoupling(half_mask(dim, flip=i % 2 == 1), hidden, n_bins, bound))
    return Flow(layers, dim)
