"""Coupling layers: the trick that makes a flow both expressive and exactly invertible.

Direction convention (the same in every flowedu layer): the course writes x = f(z), with f
mapping latent z ~ N(0, I) to data x.

- ``forward(x) -> (z, log_det)``: z = f^-1(x), log_det = log|det df^-1/dx| per sample.
- ``inverse(z) -> (x, log_det)``: x = f(z), log_det = log|det df/dz| per sample.

A coupling layer splits x into a part x_a that it copies and a part x_b that it transforms:

    z_a = x_a
    z_b = x_b * exp(s(x_a)) + t(x_a)              (affine, RealNVP)
    z_b = x_b + t(x_a)                            (additive, NICE's couplings: s = 0)

The inverse needs s and t only at z_a, which equals x_a, so they never need inverting:

    x_a = z_a,   x_b = (z_b - t(z_a)) * exp(-s(z_a))

The Jacobian dz/dx is block-triangular with diagonal blocks I and diag(exp(s)), so
log|det| = sum(s).

Every layer describes itself: `kind` names its family ("coupling", "standardize", ...) and
`describe(direction)` says in words what it does, so that figures and the dashboard never
need to test which class a layer is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .checks import check_points, check_same_dtype_device


def mlp(n_in: int, n_out: int, hidden: tuple[int, ...] = (128, 128)) -> nn.Sequential:
    """A ReLU multilayer perceptron whose last layer starts at zero.

    A zero last layer makes s = t = 0 at initialisation, so a new coupling layer is the
    identity and a new flow starts as the base distribution itself.
    """
    sizes = (n_in, *hidden)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    last = nn.Linear(sizes[-1], n_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def half_mask(dim: int, flip: bool = False) -> torch.Tensor:
    """True on the first half of the coordinates (the copied part x_a); `flip` swaps halves."""
    mask = torch.arange(dim) < dim // 2
    return ~mask if flip else mask


def alternating_mask(dim: int, parity: int = 0) -> torch.Tensor:
    """True on every other coordinate, starting with coordinate `parity` (0 or 1)."""
    return torch.arange(dim) % 2 == parity


def checkerboard_mask(height: int, width: int, parity: int = 0) -> torch.Tensor:
    """A checkerboard over a (height, width) image, flattened to height * width coordinates."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return ((rows + cols) % 2 == parity).flatten()


def coordinate_names(dim: int, names: Sequence[str] | None = None) -> list[str]:
    """Names for the coordinates in descriptions: `names` if given, x and y in 2D, else
    x1 ... xD."""
    if names is not None:
        if len(names) != dim:
            raise ValueError(f"need {dim} coordinate names, got {len(names)}: {list(names)}")
        return list(names)
    return ["x", "y"] if dim == 2 else [f"x{i + 1}" for i in range(dim)]


class Coupling(nn.Module):
    """Shared split / merge logic; subclasses say how z_b depends on x_b."""

    kind = "coupling"
    how = "transforms"  # what the layer does to x_b, in words (subclasses say more)

    def __init__(self, mask: torch.Tensor, hidden: tuple[int, ...], n_params: int):
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool).flatten()
        if mask.all() or not mask.any():
            raise ValueError(
                "the mask must mark some coordinates True (copied, x_a) and some False "
                f"(transformed, x_b); got {mask.tolist()}. Use half_mask(dim) or "
                "alternating_mask(dim)"
            )
        self.dim = mask.numel()
        # Index tensors rather than the mask: one gather per half, and the same indices
        # split x and merge z, so the halves can never be joined in a different order.
        self.register_buffer("idx_a", torch.nonzero(mask).flatten())
        self.register_buffer("idx_b", torch.nonzero(~mask).flatten())
        self.net = mlp(len(self.idx_a), n_params * len(self.idx_b), hidden)
        # A half mask splits x into two contiguous blocks: slicing and concatenating them is
        # cheaper than gathering and scattering by index (the training step is ~15% faster).
        n_a = len(self.idx_a)
        self.a_first = bool(mask[:n_a].all())
        self.contiguous = self.a_first or bool(mask[-n_a:].all())

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (x_a, x_b): the copied and the transformed coordinates."""
        if not self.contiguous:
            return x[:, self.idx_a], x[:, self.idx_b]
        n_a = len(self.idx_a)
        if self.a_first:
            return x[:, :n_a], x[:, n_a:]
        return x[:, -n_a:], x[:, :-n_a]

    def _merge(self, part_a: torch.Tensor, part_b: torch.Tensor) -> torch.Tensor:
        """The exact inverse of _split: each half goes back where it came from."""
        if self.contiguous:
            return torch.cat([part_a, part_b] if self.a_first else [part_b, part_a], dim=1)
        out = part_a.new_empty(part_a.shape[0], self.dim)
        out[:, self.idx_a] = part_a
        out[:, self.idx_b] = part_b
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z = f^-1(x) and log|det dz/dx|, for x of shape (batch, dim)."""
        check_points(x, self.dim)
        check_same_dtype_device(x, self.net[-1].weight)
        x_a, x_b = self._split(x)
        z_b, log_det = self._transform(x_b, self.net(x_a))
        return self._merge(x_a, z_b), log_det

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = f(z) and log|det dx/dz|, for z of shape (batch, dim)."""
        check_points(z, self.dim, "z")
        check_same_dtype_device(z, self.net[-1].weight, "z")
        z_a, z_b = self._split(z)
        x_b, log_det = self._untransform(z_b, self.net(z_a))  # s, t from z_a == x_a
        return self._merge(z_a, x_b), log_det

    def describe(self, direction: str = "normalize", names: Sequence[str] | None = None) -> str:
        """What the layer does, e.g. "scales and shifts y, given x" (the same both ways)."""
        n = coordinate_names(self.dim, names)
        moved = ", ".join(n[i] for i in self.idx_b.tolist())
        given = ", ".join(n[i] for i in self.idx_a.tolist())
        return f"{self.how} {moved}, given {given}"


class AffineCoupling(Coupling):
    """RealNVP: z_b = x_b * exp(s(x_a)) + t(x_a), log|det| = sum(s).

    The log-scale is soft-bounded, s = b * tanh(s_raw / b): unbounded, exp(s) can grow until
    the loss becomes NaN; bounded, each layer scales by at most exp(b).
    """

    how = "scales and shifts"

    def __init__(
        self,
        mask: torch.Tensor,
        hidden: tuple[int, ...] = (128, 128),
        scale_bound: float | None = 3.0,
    ):
        super().__init__(mask, hidden, n_params=2)
        if scale_bound is not None and not 0 < scale_bound < float("inf"):
            # b = inf would give s = inf * tanh(0) = NaN; None is how to ask for no bound.
            raise ValueError(
                f"scale_bound must be a finite number > 0, or None (unbounded), got {scale_bound}"
            )
        self.scale_bound = scale_bound

    def _s_and_t(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = params.chunk(2, dim=1)
        if self.scale_bound is not None:
            s = self.scale_bound * torch.tanh(s / self.scale_bound)
        return s, t

    def _transform(self, x_b, params):
        s, t = self._s_and_t(params)
        return x_b * torch.exp(s) + t, s.sum(dim=1)

    def _untransform(self, z_b, params):
        s, t = self._s_and_t(params)
        return (z_b - t) * torch.exp(-s), -s.sum(dim=1)


class AdditiveCoupling(Coupling):
    """The additive coupling of NICE: z_b = x_b + t(x_a). Volume preserving: log|det| = 0.

    (The published NICE model ends with a learned diagonal scaling, which can change volume,
    by the same factor everywhere; a stack of these layers alone cannot.)
    """

    how = "shifts"

    def __init__(self, mask: torch.Tensor, hidden: tuple[int, ...] = (128, 128)):
        super().__init__(mask, hidden, n_params=1)

    def _transform(self, x_b, t):
        return x_b + t, x_b.new_zeros(x_b.shape[0])

    def _untransform(self, z_b, t):
        return z_b - t, z_b.new_zeros(z_b.shape[0])


class Permutation(nn.Module):
    """z = x[:, perm]: reorders coordinates so that the next coupling transforms others.

    A permutation matrix has |det| = 1, so log_det = 0.
    """

    kind = "permutation"

    def __init__(self, perm: torch.Tensor | list[int]):
        super().__init__()
        perm = torch.as_tensor(perm, dtype=torch.long)
        if sorted(perm.tolist()) != list(range(len(perm))):
            raise ValueError(
                f"perm must contain each of 0..{len(perm) - 1} exactly once, got {perm.tolist()}"
            )
        self.dim = len(perm)
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def describe(self, direction: str = "normalize", names: Sequence[str] | None = None) -> str:
        """What the layer does, e.g. "swaps x and y"."""
        n = coordinate_names(self.dim, names)
        if self.dim == 2 and self.perm.tolist() == [1, 0]:
            return f"swaps {n[0]} and {n[1]}"
        order = self.perm if direction == "normalize" else self.inv_perm
        return "reorders the coordinates to " + ", ".join(n[i] for i in order.tolist())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_points(x, self.dim)
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_points(z, self.dim, "z")
        return z[:, self.inv_perm], z.new_zeros(z.shape[0])


class Standardize(nn.Module):
    """z = (x - mean) / std per coordinate, fixed (not trained), log|det| = -sum(log std).

    Put first in a flow so that the couplings see data of unit scale, while log_prob stays
    in the data's own coordinates and can be compared with the data's true entropy.
    """

    kind = "standardize"

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        mean, std = torch.as_tensor(mean).flatten(), torch.as_tensor(std).flatten()
        ok = mean.shape == std.shape and bool((std > 0).all())
        if not (ok and bool(torch.isfinite(mean).all() and torch.isfinite(std).all())):
            raise ValueError(
                f"need finite mean and std of one shape with std > 0, got {mean}, {std}"
            )
        self.dim = mean.numel()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def describe(self, direction: str = "normalize", names: Sequence[str] | None = None) -> str:
        """What the layer does in the given direction, in words."""
        if direction == "normalize":
            return "standardises to mean 0, sd 1"
        return "undoes the standardisation (back to data units)"

    @classmethod
    def from_data(cls, x: torch.Tensor) -> Standardize:
        check_points(x)
        return cls(x.mean(dim=0), x.std(dim=0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_points(x, self.dim)
        log_det = -torch.log(self.std).sum().expand(x.shape[0])
        return (x - self.mean) / self.std, log_det

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_points(z, self.dim, "z")
        log_det = torch.log(self.std).sum().expand(z.shape[0])
        return z * self.std + self.mean, log_det
