"""Glow's layers for images, with the course's one layer signature.

Every layer takes a batch of images x of shape (batch, channels, height, width):

- ``forward(x) -> (z, log_det)``: z = g(x) in the normalizing direction (data -> latent),
  log_det = log|det dz/dx| per image, shape (batch,);
- ``inverse(z) -> (x, log_det)``: the exact inverse, log_det = log|det dx/dz| = -(the above).

Like the 2D layers, each says what it is (`kind`) and what it does (`describe`), and
`output_shape((C, H, W))` says the shape it returns.

- `LogitTransform`: grey levels in [0, 17) -> logit space, the flow's first layer.
- `ActNorm`: per-channel scale and shift, set from the first batch it sees (data-dependent
  initialisation) so each channel starts at mean 0, sd 1; then learned.
- `InvConv1x1`: an invertible C x C matrix W applied at every pixel (a 1x1 convolution). Its
  log-det over an H x W image is H * W * log|det W|; W = P L (U + diag(s)) (LU
  factorisation) makes log|det W| = sum(log|s|), cheap and exact.
- `Squeeze` / `Unsqueeze`: fold each 2x2 block of pixels into 4 channels and back; a
  permutation of the pixels, log-det 0.
- `ConvCoupling`: an affine coupling whose s and t come from a small convolutional network,
  with a checkerboard mask (copy the black squares, transform the white ones) or a channel
  mask (copy half of the channels, transform the other half).
- `Split`: the multi-scale architecture. It sends half of the channels straight to the
  base N(0, I) and runs its inner layers on the other half only; its output keeps the
  factored-out channels in place, so log N(z; 0, I) of the whole output counts both parts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .. import checks
from ..checks import check_finite, check_positive_int, check_same_dtype_device
from .data import LEVELS


def check_image_batch(
    x: object, channels: int | None = None, name: str = "x", size: tuple | None = None
) -> torch.Tensor:
    """Check that `x` is a finite float tensor of shape (batch, channels, height, width).

    Like checks.check_points, the scan for NaN and infinity is left out inside
    checks.skip_finite_checks() (a caller that checked its input once)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (batch, channels, height, width), got "
            f"{type(x).__name__}"
        )
    if x.dim() != 4 or (channels is not None and x.shape[1] != channels):
        want = f"(batch, {channels if channels is not None else 'channels'}, height, width)"
        hint = "; for one image use x[None]" if x.dim() == 3 else ""
        hint = "; add the channel axis with x[:, None]" if x.dim() == 3 and channels == 1 else hint
        raise ValueError(f"expected {name} of shape {want}, got {tuple(x.shape)}{hint}")
    if size is not None and tuple(x.shape[2:]) != tuple(size):
        raise ValueError(
            f"expected {name} of height x width {size[0]} x {size[1]}, got {tuple(x.shape[2:])}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one image")
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point tensor, got {x.dtype}; use {name}.float()"
        )
    if not getattr(checks._state, "skip", False):
        check_finite(x, name)
    return x


def _per_image(value: torch.Tensor, batch: int) -> torch.Tensor:
    """A log-det that is the same for every image, as a (batch,) tensor."""
    return value.reshape(()).expand(batch)


class LogitTransform(nn.Module):
    """Grey levels y in [0, levels) to the real line: p = a + (1 - 2a) y / levels, z = logit(p).

    The margin a keeps z finite at y = 0 (RealNVP used a = 0.05). The map acts on each pixel,
    so log|det| = sum over pixels of log((1 - 2a) / levels) - log p - log(1 - p); the flow's
    log-density stays in grey-level units, where the bins of the 17 levels have width 1.
    """

    kind = "preprocess"

    def __init__(self, levels: int = LEVELS, alpha: float = 0.05):
        super().__init__()
        self.levels = check_positive_int(levels, "levels")
        if not 0 < alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
        self.alpha = float(alpha)

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(shape)

    def describe(self, direction: str = "normalize", names: Sequence[str] | None = None) -> str:
        if direction == "normalize":
            return f"maps grey levels in [0, {self.levels}) to the real line (logit)"
        return f"maps the real line back to grey levels in [0, {self.levels}) (sigmoid)"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image_batch(x)
        a = self.alpha
        p = a + (1 - 2 * a) * x / self.levels
        if not bool(((p > 0) & (p < 1)).all()):
            low, high = -a * self.levels / (1 - 2 * a), (1 - a) * self.levels / (1 - 2 * a)
            raise ValueError(
                f"pixels must lie in ({low:.4g}, {high:.4g}), which holds the grey levels "
                f"[0, {self.levels}) with dequantization noise; got values from "
                f"{float(x.min()):.4g} to {float(x.max()):.4g}"
            )
        z = torch.log(p) - torch.log1p(-p)
        log_det = math.log((1 - 2 * a) / self.levels) - torch.log(p) - torch.log1p(-p)
        return z, log_det.flatten(1).sum(1)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image_batch(z, name="z")
        a = self.alpha
        p = torch.sigmoid(z)
        x = (p - a) * self.levels / (1 - 2 * a)
        # log dp/dz = log p + log(1 - p) = -softplus(-z) - softplus(z), stable for large |z|
        log_det = math.log(self.levels / (1 - 2 * a)) - F.softplus(-z) - F.softplus(z)
        return x, log_det.flatten(1).sum(1)


class ActNorm(nn.Module):
    """z = (x - loc) * exp(-log_scale), one loc and log_scale per channel (Glow).

    Data-dependent initialisation: the first batch through `forward` sets loc and log_scale
    to that batch's per-channel mean and log sd, so that the layer's output starts at mean 0,
    sd 1 whatever the layers before it do; after that both are trained like any weight. The
    log-det is the same for every image: -H * W * sum(log_scale).
    """

    kind = "actnorm"

    def __init__(self, channels: int):
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(shape)

    def describe(self, direction: str = "normalize", names: Sequence[str] | None = None) -> str:
        if direction == "normalize":
            return f"scales and shifts each of the {self.channels} channels (ActNorm)"
        return f"undoes the per-channel scale and shift of the {self.channels} channels"

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set loc and log_scale so that `x` comes out with per-channel mean 0 and sd 1."""
        check_image_batch(x, self.channels)
        check_finite(x)
        flat = x.transpose(0, 1).reshape(self.channels, -1)
        self.loc.copy_(flat.mean(1).reshape(self.loc.shape))
        sd = flat.std(1, unbiased=False).clamp_min(1e-6)
        self.log_scale.copy_(sd.log().reshape(self.log_scale.shape))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image_batch(x, self.channels)
        check_same_dtype_device(x, self.loc)
        if not bool(self.initialized):
            self.initialize(x)
        z = (x - self.loc) * torch.exp(-self.log_scale)
        hw = x.shape[2] * x.shape[3]
        return z, _per_image(-hw * self.log_scale.sum(), x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image_batch(z, self.channels, "z")
        check_same_dtype_device(z, self.loc, "z")
        x = z * torch.exp(self.log_scale) + self.loc
        hw = z.shape[2] * z.shape[3]
        return x, _per_image(hw * self.log_scale.sum(), z.shape[0])


class InvConv1x1(nn.Module):
    """z[:, :, i, j] = W x[:, :, i, j] at every pixel: Glow's invertible 1x1 convolution.

    W is kept factored as W = P L (U + diag(sign * exp(log_s))), with P a fixed permutation,
    L unit lower-triangular and U strictly upper-triangular (both learned), so det W =
    det P * prod(sign * exp(log_s)) and log|det W| = sum(log_s). The same W acts at each of
    the H * W pixels, so the layer's log-det is H * W * sum(log_s). W starts as a random
    rotation (from torch's generator): invertible, and volume-preserving at first.
    """

    kind = "conv1x1"

    def __init__(self, channels: int):
        super().__init__()
        self.channels = c = check_positive_int(channels, "channels")
        rotation, _ = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(rotation)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1))
        self.lower = nn.Parameter(lower.float() * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).float())

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(shape)

    def describe(self, direction: str = "normalize", names: Sequence[str] | None = None) -> str:
        c = self.channels
        way = "an invertible" if direction == "normalize" else "the inverse of its"
        return f"mixes the {c} channels at every pixel with {way} {c} x {c} matrix (1x1 conv)"

    def weight(self) -> torch.Tensor:
        """W = P L (U + diag(sign * exp(log_s))), shape (channels, channels)."""
        eye = torch.eye(self.channels, dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image_batch(x, self.channels)
        check_same_dtype_device(x, self.log_s)
        w = self.weight()
        z = F.conv2d(x, w[:, :, None, None])
        hw = x.shape[2] * x.shape[3]
        return z, _per_image(hw * self.log_s.sum(), x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image_batch(z, self.channels, "z")
        check_same_dtype_device(z, self.log_s, "z")
        w_inv = torch.linalg.inv(self.weight())
        x = F.conv2d(z, w_inv[:, :, None, None])
        hw = z.shape[2] * z.shape[3]
        return x, _per_image(-hw * self.log_s.sum(), z.shape[0])


class Squeeze(nn.Module):
    """(C, H, W) -> (4C, H/2, W/2): each 2x2 block of pixels becomes 4 channels.

    Channel 4c + 2i + j of the output is pixel (i, j) of each block of input channel c
    (torch's pixel_unshuffle). Only a reordering of the numbers: log|det| = 0. After it, a
    coupling with a channel mask can copy half of each 2x2 block and transform the rest, and
    a 3x3 convolution sees a wider neighbourhood of the original image.
    """

    kind = "squeeze"
    factor = 2

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = shape
        return (c * 4, h // 2, w // 2)

    def describe(self, direction: str = "normalize", names: Sequence[str] | None = None) -> str:
        if direction == "normalize":
            return "folds each 2x2 block of pixels into 4 channels (squeeze)"
        return "unfolds each group of 4 channels into a 2x2 block of pixels (unsqueeze)"

    def _fold(self, x: torch.Tensor, name: str) -> torch.Tensor:
        check_image_batch(x, name=name)
        if x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(
                f"squeeze needs an even height and width, got {name} of shape {tuple(x.shape)}"
            )
        return F.pixel_unshuffle(x, 2)

    def _unfold(self, z: torch.Tensor, name: str) -> torch.Tensor:
        check_image_batch(z, name=name)
        if z.shape[1] % 4:
            raise ValueError(
                f"unsqueeze needs a multiple of 4 channels, got {name} of shape {tuple(z.shape)}"
            )
        return F.pixel_shuffle(z, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._fold(x, "x"), x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._unfold(z, "z"), z.new_zeros(z.shape[0])


class Unsqueeze(Squeeze):
    """(4C, H, W) -> (C, 2H, 2W): the inverse of Squeeze, as a layer; log|det| = 0."""

    kind = "unsqueeze"

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = shape
        return (c // 4, h * 2, w * 2)

    def describe(self, direction: str = "normalize", names: Sequence[str] | None = None) -> str:
        return super().describe("generate" if direction == "normalize" else "normalize")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._unfold(x, "x"), x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._fold(z, "z"), z.new_zeros(z.shape[0])


def image_checkerboard(height: int, width: int, parity: int = 0) -> torch.Tensor:
    """(1, 1, height, width) float mask: 1 where (row + col) % 2 == parity (copied), else 0."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return ((rows + cols) % 2 == parity).float()[None, None]


def conv_net(n_in: int, n_out: int, hidden: int = 64, dropout: float = 0.0) -> nn.Sequential:
    """3x3 conv -> ReLU -> 1x1 conv -> ReLU -> dropout -> 3x3 conv, the last one zero.

    A zero last layer gives s = t = 0: a new coupling is the identity (as in couplings.mlp).
    """
    last = nn.Conv2d(hidden, n_out, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(
        nn.Conv2d(n_in, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1),
        nn.ReLU(),
        nn.Dropout(dropout),
        last,
    )


MASKS = ("checkerboard", "channel")


class ConvCoupling(nn.Module):
    """Affine coupling on images: z_b = x_b * exp(s(x_a)) + t(x_a), z_a = x_a.

    mask="checkerboard": x_a are the pixels with (row + col) % 2 == parity, in every channel;
    the network sees x with x_b zeroed, plus the mask itself as one more channel (so it
    knows which squares it may read), and writes s and t at every pixel, of which those of
    x_b are used. mask="channel": x_a is the first half of the channels (parity 0) or the
    second (parity 1). log|det| = sum of s over x_b. The log-scale is soft-bounded,
    s = b tanh(s_raw / b), as in couplings.AffineCoupling. `cond_channels` > 0 lets the
    network also read a conditioning image (forward(x, cond=...)): the variational
    dequantizer uses this; the flow's own couplings have none.
    """

    kind = "coupling"

    def __init__(
        self,
        channels: int,
        mask: str = "checkerboard",
        parity: int = 0,
        hidden: int = 64,
        dropout: float = 0.0,
        scale_bound: float = 2.0,
        cond_channels: int = 0,
    ):
        super().__init__()
        self.channels = c = check_positive_int(channels, "channels")
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity!r}")
        if mask == "channel" and c < 2:
            raise ValueError(f"a channel mask needs at least 2 channels, got {c}")
        if not 0 < scale_bound < float("inf"):
            raise ValueError(f"scale_bound must be a finite number > 0, got {scale_bound!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.mask, self.parity, self.scale_bound = mask, parity, float(scale_bound)
        self.cond_channels = int(cond_channels)
        if mask == "checkerboard":
            n_in, n_out = c + 1, 2 * c
        else:
            self.n_a = c // 2 if parity == 0 else c - c // 2
            n_in, n_out = self.n_a, 2 * (c - self.n_a)
        self.net = conv_net(n_in + self.cond_channels, n_out, hidden, dropout)

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(shape)

    def describe(self, direction: str = "normalize", names: Sequence[str] | None = None) -> str:
        if self.mask == "checkerboard":
            moved, given = ("white", "black") if self.parity == 0 else ("black", "white")
            return f"scales and shifts the {moved} squares of a checkerboard, given the {given}"
        half = f"1-{self.n_a}", f"{self.n_a + 1}-{self.channels}"
        given, moved = half if self.parity == 0 else half[::-1]
        return f"scales and shifts channels {moved}, given channels {given}"

    def _s_t(self, x_a_input: torch.Tensor, cond: torch.Tensor | None):
        if self.cond_channels:
            if cond is None or cond.shape[1] != self.cond_channels:
                raise ValueError(
                    f"this coupling reads a conditioning image of {self.cond_channels} channels; "
                    "pass it as cond="
                )
            x_a_input = torch.cat([x_a_input, cond], dim=1)
        elif cond is not None:
            raise ValueError("this coupling takes no conditioning image; leave cond out")
        s, t = self.net(x_a_input).chunk(2, dim=1)
        return self.scale_bound * torch.tanh(s / self.scale_bound), t

    def _check(self, x: torch.Tensor, name: str) -> None:
        check_image_batch(x, self.channels, name)
        if self.mask == "checkerboard" and x.shape[2] * x.shape[3] < 2:
            raise ValueError(f"a checkerboard needs at least 2 pixels, got {tuple(x.shape)}")
        check_same_dtype_device(x, self.net[0].weight, name)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        """z = g(x) and log|det dz/dx| per image."""
        self._check(x, "x")
        if self.mask == "checkerboard":
            m = image_checkerboard(x.shape[2], x.shape[3], self.parity).to(x)
            s, t = self._s_t(torch.cat([x * m, m.expand(x.shape[0], 1, -1, -1)], 1), cond)
            s, t = s * (1 - m), t * (1 - m)
            return x * m + (1 - m) * (x * torch.exp(s) + t), s.flatten(1).sum(1)
        x_a, x_b = self._halves(x)
        s, t = self._s_t(x_a, cond)
        return self._join(x_a, x_b * torch.exp(s) + t), s.flatten(1).sum(1)

    def inverse(self, z: torch.Tensor, cond: torch.Tensor | None = None):
        """x = g^-1(z) and log|det dx/dz| per image; s and t from z_a, which equals x_a."""
        self._check(z, "z")
        if self.mask == "checkerboard":
            m = image_checkerboard(z.shape[2], z.shape[3], self.parity).to(z)
            s, t = self._s_t(torch.cat([z * m, m.expand(z.shape[0], 1, -1, -1)], 1), cond)
            s, t = s * (1 - m), t * (1 - m)
            return z * m + (1 - m) * ((z - t) * torch.exp(-s)), -s.flatten(1).sum(1)
        z_a, z_b = self._halves(z)
        s, t = self._s_t(z_a, cond)
        return self._join(z_a, (z_b - t) * torch.exp(-s)), -s.flatten(1).sum(1)

    def _halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.parity == 0:
            return x[:, : self.n_a], x[:, self.n_a :]
        return x[:, -self.n_a :], x[:, : -self.n_a]

    def _join(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([a, b] if self.parity == 0 else [b, a], dim=1)


class Split(nn.Module):
    """Multi-scale split: channels 1..C/2 go to the base N(0, I); `layers` act on the rest.

    forward(x) = (cat(x_out, z_in), log_det of the inner layers), where x_out = x[:, :C/2]
    is passed through unchanged and z_in is the inner layers' output on x[:, C/2:]. The
    inner layers must give back the shape they were given (end a Squeeze with an
    Unsqueeze). So the factored-out half costs nothing to compute beyond this point, and
    the flow's log N(z; 0, I) of the whole output is exactly
    log N(x_out; 0, I) + log N(z_in; 0, I): the density of x factors as the base density of
    the half that left early times the inner flow's density of the half that stayed.
    """

    kind = "split"

    def __init__(self, channels: int, layers: Sequence[nn.Module]):
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        if channels < 2:
            raise ValueError(f"a split needs at least 2 channels, got {channels}")
        self.n_out = channels // 2
        self.layers = nn.ModuleList(layers)

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = shape
        inner = (c - self.n_out, h, w)
        for layer in self.layers:
            inner = layer.output_shape(inner)
        if inner != (c - self.n_out, h, w):
            raise ValueError(
                f"the split's inner layers turn shape {(c - self.n_out, h, w)} into {inner}; "
                "they must give back the shape they get (end a Squeeze with an Unsqueeze)"
            )
        return tuple(shape)

    def describe(self, direction: str = "normalize", names: Sequence[str] | None = None) -> str:
        n = len(self.layers)
        if direction == "normalize":
            return (
                f"sends channels 1-{self.n_out} to the base N(0, I); its {n} inner layers "
                f"act on channels {self.n_out + 1}-{self.channels}"
            )
        return (
            f"runs its {n} inner layers backwards on channels {self.n_out + 1}-{self.channels} "
            f"and joins them to channels 1-{self.n_out}, drawn from the base"
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image_batch(x, self.channels)
        x_out, h = x[:, : self.n_out], x[:, self.n_out :]
        log_det = x.new_zeros(x.shape[0])
        for layer in self.layers:
            h, ld = layer(h)
            log_det = log_det + ld
        return torch.cat([x_out, h], dim=1), log_det

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image_batch(z, self.channels, "z")
        z_out, h = z[:, : self.n_out], z[:, self.n_out :]
        log_det = z.new_zeros(z.shape[0])
        for layer in reversed(self.layers):
            h, ld = layer.inverse(h)
            log_det = log_det + ld
        return torch.cat([z_out, h], dim=1), log_det
