"""A normalizing flow: a stack of bijections over a standard normal base.

Direction convention (the same in every flowedu layer): x = f(z) with z ~ N(0, I), and

- ``forward(x) -> (z, log_det)``: z = f^-1(x), log_det = log|det df^-1/dx|  (data -> latent)
- ``inverse(z) -> (x, log_det)``: x = f(z),    log_det = log|det df/dz|     (latent -> data)

With layers g_1, ..., g_L applied in that order in the forward direction,
f^-1 = g_L o ... o g_1, the log-dets of the layers add (chain rule), and

    log p(x) = log N(f^-1(x); 0, I) + sum_l log|det dg_l/dh_{l-1}|.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .checks import check_points, check_positive_int, skip_finite_checks


class NonFiniteError(FloatingPointError):
    """A layer produced NaN or infinity; the message names the layer."""


@dataclass
class Trace:
    """Every intermediate of one pass through a flow.

    points[0] is the input and points[-1] the output, so len(points) == n_layers + 1;
    log_dets[k] is the log|det| of the k-th layer applied, shape (batch,). Layers are
    applied in pass order: for "generate" the flow's last layer comes first.
    """

    direction: str  # "normalize" (data -> latent) or "generate" (latent -> data)
    points: list[torch.Tensor]
    log_dets: list[torch.Tensor]


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) for z of shape (batch, dim), returned with shape (batch,)."""
    return -0.5 * (z**2).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


class Flow(nn.Module):
    """A composition of bijections with a N(0, I) base distribution."""

    def __init__(self, layers: list[nn.Module], dim: int, config: dict | None = None):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.layers = nn.ModuleList(layers)
        # The recipe that builds this flow again (see `recipe` below); checkpoints store it.
        self.config = dict(config or {})

    def _some_tensor(self) -> torch.Tensor:
        for t in itertools.chain(self.parameters(), self.buffers()):
            if t.dtype.is_floating_point:
                return t
        return torch.empty(0)  # a flow without weights lives on the CPU in float32

    @property
    def device(self) -> torch.device:
        return self._some_tensor().device

    @property
    def dtype(self) -> torch.dtype:
        return self._some_tensor().dtype

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z = f^-1(x) and log|det df^-1/dx|: data -> latent."""
        check_points(x, self.dim)
        log_det = x.new_zeros(x.shape[0])
        with skip_finite_checks():  # x was checked once above; layers needn't scan it again
            for layer in self.layers:
                x, ld = layer(x)
                log_det = log_det + ld
        return x, log_det

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = f(z) and log|det df/dz|: latent -> data."""
        check_points(z, self.dim, "z")
        log_det = z.new_zeros(z.shape[0])
        with skip_finite_checks():
            for layer in reversed(self.layers):
                z, ld = layer.inverse(z)
                log_det = log_det + ld
        return z, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(f^-1(x); 0, I) + log|det df^-1/dx|, shape (batch,)."""
        z, log_det = self.forward(x)
        return standard_normal_log_prob(z) + log_det

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """n points x = f(z), z ~ N(0, I), shape (n, dim), on the flow's device and dtype."""
        z = self.sample_base(n, seed)
        with torch.no_grad():
            return self.inverse(z)[0]

    def sample_base(self, n: int, seed: int | None = None) -> torch.Tensor:
        """n draws from the base N(0, I), shape (n, dim); seeded draws are reproducible."""
        check_positive_int(n, "n")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.dim, generator=gen, dtype=self.dtype)
        return z.to(self.device)

    def trace(self, points: torch.Tensor, direction: str = "generate") -> Trace:
        """Run one pass and keep every intermediate and each layer's log-det.

        direction="generate" starts from latent points and applies f layer by layer
        (last layer first); direction="normalize" starts from data and applies f^-1.
        Raises NonFiniteError naming the first layer whose output is not finite.
        """
        if direction not in ("generate", "normalize"):
            raise ValueError(f'direction must be "generate" or "normalize", got {direction!r}')
        check_points(points, self.dim, "points")
        if direction == "generate":
            steps = [(i, layer.inverse) for i, layer in reversed(list(enumerate(self.layers)))]
        else:
            steps = [(i, layer.forward) for i, layer in enumerate(self.layers)]
        out, log_dets = [points], []
        for i, step in steps:
            h, ld = step(out[-1])
            if not (torch.isfinite(h).all() and torch.isfinite(ld).all()):
                raise NonFiniteError(
                    f"layer {i} ({type(self.layers[i]).__name__}) produced NaN or infinity "
                    f"in the {direction} direction"
                )
            out.append(h)
            log_dets.append(ld)
        return Trace(direction, out, log_dets)

    def first_non_finite_layer(self, x: torch.Tensor) -> str | None:
        """Name the first layer whose forward output on x is not finite, or None."""
        try:
            self.trace(x, "normalize")
        except NonFiniteError as err:
            return str(err)
        return None


def recipe(name: str) -> Callable[[Callable[..., Flow]], Callable[..., Flow]]:
    """Mark a function that builds a Flow as the recipe `name`.

    The flows it returns remember how they were made: flow.config becomes
    {"builder": name, **every argument of the call, defaults filled in}, as plain JSON
    (tuples become lists, tensors lists of numbers). A checkpoint stores that dict and
    flowedu.recipes.from_config calls the builder with it again, so the recipe is written
    once, in the builder's own signature.
    """

    def mark(builder: Callable[..., Flow]) -> Callable[..., Flow]:
        signature = inspect.signature(builder)

        @functools.wraps(builder)
        def build(*args, **kwargs) -> Flow:
            call = signature.bind(*args, **kwargs)
            call.apply_defaults()
            flow = builder(*call.args, **call.kwargs)
            flow.config = {"builder": name, **{k: _plain(v) for k, v in call.arguments.items()}}
            return flow

        build.recipe_name = name
        return build

    return mark


def _plain(value: object) -> object:
    """`value` as plain JSON: tuples and tensors become lists, numpy numbers Python ones."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):  # torch tensors, numpy arrays and numpy scalars
        return value.tolist()
    return value
