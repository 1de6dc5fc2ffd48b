"""The RealNVP recipe: a stack of affine (or additive) couplings whose halves alternate."""

from __future__ import annotations

import torch

from .checks import check_positive_int
from .couplings import AdditiveCoupling, AffineCoupling, Standardize, half_mask
from .flow import Flow, recipe

COUPLINGS = ("affine", "additive")


@recipe("realnvp")
def realnvp(
    dim: int = 2,
    n_layers: int = 8,
    hidden: tuple[int, ...] | list[int] = (128, 128),
    coupling: str = "affine",
    scale_bound: float | None = 3.0,
    standardize: tuple[list[float], list[float]] | None = None,
) -> Flow:
    """A RealNVP-style flow: `n_layers` couplings whose halves alternate.

    Layer l copies the first half of the coordinates when l is even and the second half
    when l is odd, so after two layers every coordinate has been transformed.
    `standardize=(mean, std)` puts a fixed Standardize layer first (see couplings.py), so
    the flow's log_prob is in the data's own coordinates. New flows are the identity.
    """
    check_positive_int(dim, "dim")
    check_positive_int(n_layers, "n_layers")
    if dim < 2:
        raise ValueError(f"a coupling flow needs dim >= 2 to split x into halves, got dim={dim}")
    if not isinstance(hidden, (tuple, list)):
        raise ValueError(f"hidden must be a list of layer widths, e.g. [128, 128], got {hidden!r}")
    hidden = tuple(int(h) for h in hidden)
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must be a non-empty list of layer widths >= 1, got {hidden}")
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
    # In the flow's dtype: float64 statistics (numpy's default) would turn the couplings'
    # input into float64 and break them.
    dtype = torch.get_default_dtype()
    layers = (
        []
        if standardize is None
        else [Standardize(*(torch.as_tensor(v, dtype=dtype) for v in standardize))]
    )
    for i in range(n_layers):
        mask = half_mask(dim, flip=i % 2 == 1)
        if coupling == "affine":
            layers.append(AffineCoupling(mask, hidden, scale_bound))
        else:
            layers.append(AdditiveCoupling(mask, hidden))
    return Flow(layers, dim)
