"""ImageFlow: a multi-scale Glow-style flow for the 8x8 digits, and its recipe.

The recipe "image_flow" (in flowedu.recipes.BUILDERS, so checkpoints rebuild it):

    logit                                              (1, 8, 8)  grey levels -> real line
    n_couplings[0] x [ActNorm, checkerboard coupling]  (1, 8, 8)
    squeeze                                            (4, 4, 4)
    n_couplings[1] x [ActNorm, 1x1 conv, channel coupling]
    split: channels 1-2 go to the base; on the other 2 (multiscale=True):
        squeeze                                        (8, 2, 2)
        n_couplings[2] x [ActNorm, 1x1 conv, channel coupling]
        unsqueeze                                      (2, 4, 4)

With multiscale=False the last block acts on all 4 channels (squeezed to (16, 2, 2)) and
nothing leaves early. z is the last output, flattened to 64 numbers, and the base is
N(0, I) on them, so log q(x) = log N(z; 0, I) + the layers' log-dets, in grey-level units.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..checks import check_points, check_positive_int, skip_finite_checks
from ..flow import Flow, NonFiniteError, Trace, recipe, standard_normal_log_prob
from .data import LEVELS, N_PIXELS, SHAPE
from .dequantization import VariationalDequantizer
from .layers import (
    ActNorm,
    ConvCoupling,
    InvConv1x1,
    LogitTransform,
    Split,
    Squeeze,
    Unsqueeze,
    check_image_batch,
)

DEQUANTIZATIONS = ("uniform", "variational")


class ImageFlow(Flow):
    """A Flow over images of shape (channels, height, width), z flattened to dim numbers.

    forward(x) takes float images (batch, C, H, W) and returns z of shape (batch, dim);
    inverse(z) takes (batch, dim) and returns images. `dequantizer` (or None: uniform) is
    the noise density bits_per_dim and training use; it is part of the model and its
    checkpoint. The rest of Flow's API (log_prob, sample, trace) works on images.
    """

    def __init__(
        self,
        layers: list[nn.Module],
        shape: tuple[int, int, int] = (1, *SHAPE),
        dequantizer: nn.Module | None = None,
        config: dict | None = None,
    ):
        shape = tuple(int(s) for s in shape)
        super().__init__(layers, math.prod(shape), config)
        self.shape = shape
        latent = shape
        for layer in layers:
            latent = layer.output_shape(latent)
        self.latent_shape = latent
        self.dequantizer = dequantizer

    def _check_x(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        check_image_batch(x, self.shape[0], name, self.shape[1:])
        weight = next(iter(self.parameters()), None)
        if weight is not None and (x.dtype != weight.dtype or x.device != weight.device):
            raise TypeError(
                f"{name} is {x.dtype} on {x.device} but the flow is {weight.dtype} on "
                f"{weight.device}; convert one of them, e.g. {name}.to(flow.dtype)"
            )
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z = f^-1(x), flattened to (batch, dim), and log|det df^-1/dx|."""
        h = self._check_x(x)
        log_det = x.new_zeros(x.shape[0])
        with skip_finite_checks():  # x was checked once above; layers needn't scan it again
            for layer in self.layers:
                h, ld = layer(h)
                log_det = log_det + ld
        return h.reshape(x.shape[0], self.dim), log_det

    def _latent(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.dim:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"expected z of shape (batch, {self.dim}), got {got}")
        check_points(z, self.dim, "z")  # NaN, infinities, dtype: once here, not in every layer
        return z.reshape(z.shape[0], *self.latent_shape)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = f(z) as images (batch, C, H, W) and log|det df/dz|, for z of shape (batch, dim)."""
        h = self._latent(z)
        log_det = z.new_zeros(z.shape[0])
        with skip_finite_checks():
            for layer in reversed(self.layers):
                h, ld = layer.inverse(h)
                log_det = log_det + ld
        return h, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log q(x) = log N(f^-1(x); 0, I) + log|det df^-1/dx| for images x, shape (batch,)."""
        z, log_det = self.forward(x)
        return standard_normal_log_prob(z) + log_det

    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0) -> torch.Tensor:
        """n continuous images x = f(T z), z ~ N(0, I): temperature T < 1 samples nearer the
        mode (Glow's trick), sharper but less varied."""
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        z = self.sample_base(n, seed) * temperature
        with torch.no_grad():
            return self.inverse(z)[0]

    def sample_images(
        self, n: int, seed: int | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """n samples as integer grey levels (n, H, W): floor of the continuous sample,
        clipped to 0..16 (a dequantized value y lies in the bin of level floor(y))."""
        x = self.sample(n, seed, temperature)
        return x.floor().clamp(0, LEVELS - 1).long()[:, 0]

    def trace(self, points: torch.Tensor, direction: str = "generate") -> Trace:
        """Every intermediate of one pass (images, z as the last layer's output shape)."""
        if direction not in ("generate", "normalize"):
            raise ValueError(f'direction must be "generate" or "normalize", got {direction!r}')
        if direction == "generate":
            start = self._latent(points)
            steps = [(i, layer.inverse) for i, layer in reversed(list(enumerate(self.layers)))]
        else:
            start = self._check_x(points, "points")
            steps = [(i, layer.forward) for i, layer in enumerate(self.layers)]
        out, log_dets = [start], []
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

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation: run images x (dequantized) through the flow once,
        so that every ActNorm sets its scale and shift from the batch it sees."""
        for module in self.modules():
            if isinstance(module, ActNorm):
                module.initialized.fill_(False)
        was_training = self.training
        self.eval()
        self.forward(self._check_x(x))
        self.train(was_training)


def _glow_steps(channels: int, n: int, hidden: int, dropout: float, scale_bound: float):
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [
            ActNorm(channels),
            InvConv1x1(channels),
            ConvCoupling(channels, "channel", i % 2, hidden, dropout, scale_bound),
        ]
    return layers


@recipe("image_flow")
def image_flow(
    n_couplings: tuple[int, int, int] | list[int] = (4, 4, 4),
    hidden: tuple[int, int, int] | list[int] = (64, 96, 96),
    multiscale: bool = True,
    dequantization: str = "variational",
    dropout: float = 0.2,
    scale_bound: float = 2.0,
    dequantizer_hidden: int = 32,
    dequantizer_couplings: int = 4,
    seed: int = 0,
) -> ImageFlow:
    """The digits flow described in this module's docstring; new flows are seeded by `seed`
    (their 1x1 convolutions start as random rotations) and, untrained, the identity after
    the logit, until `initialize` sets the ActNorms from data."""
    n_couplings, hidden = list(n_couplings), list(hidden)
    if len(n_couplings) != 3 or len(hidden) != 3:
        raise ValueError(
            "n_couplings and hidden need 3 entries each (8x8, 4x4, 2x2 scales), got "
            f"{n_couplings} and {hidden}"
        )
    for name, values in (("n_couplings", n_couplings), ("hidden", hidden)):
        for v in values:
            check_positive_int(v, name)
    if dequantization not in DEQUANTIZATIONS:
        raise ValueError(f"dequantization must be one of {DEQUANTIZATIONS}, got {dequantization!r}")
    if not isinstance(multiscale, bool):
        raise ValueError(f"multiscale must be True or False, got {multiscale!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = [LogitTransform(LEVELS)]
        for i in range(n_couplings[0]):
            layers += [
                ActNorm(1),
                ConvCoupling(1, "checkerboard", i % 2, hidden[0], dropout, scale_bound),
            ]
        layers.append(Squeeze())
        layers += _glow_steps(4, n_couplings[1], hidden[1], dropout, scale_bound)
        kept = 2 if multiscale else 4
        last = [Squeeze(), *_glow_steps(4 * kept, n_couplings[2], hidden[2], dropout, scale_bound)]
        if multiscale:
            layers.append(Split(4, [*last, Unsqueeze()]))
        else:
            layers += last
        dequantizer = (
            VariationalDequantizer(dequantizer_hidden, dequantizer_couplings)
            if dequantization == "variational"
            else None
        )
        flow = ImageFlow(layers, (1, *SHAPE), dequantizer)
    assert flow.dim == N_PIXELS
    return flow


PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained" / "images"
SHIPPED = ("digits", "digits_uniform", "digits_single_scale")


def load_pretrained(name: str = "digits") -> tuple[ImageFlow, dict]:
    """(flow in eval mode, metadata) of a shipped digits flow, read with the safe loader.

    "digits": the shipped flow (variational dequantization, multi-scale); "digits_uniform"
    and "digits_single_scale" the same recipe with uniform dequantization, or no split.
    """
    from .. import checkpoint

    if name not in SHIPPED:
        raise ValueError(f"unknown shipped image flow {name!r}; choose one of {SHIPPED}")
    path = PRETRAINED_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint {path.name} in {PRETRAINED_DIR.name}/; train it with "
            "python -m flowedu.images (see --help)"
        )
    return checkpoint.load(path)
