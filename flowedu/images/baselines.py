"""Three baselines for the digits, each a density on dequantized pixels, scored with the same
`bits_per_dim` as the flows (uniform dequantization: none has a `dequantizer`).

- `UniformLevels`: uniform on [0, 17)^64, i.e. every grey level equally likely in every
  pixel: exactly log2(17) = 4.087 bits/dim, the ceiling.
- `PixelCategorical`: each pixel independent, with its own histogram of the 17 levels
  fitted on training images (add-`alpha` smoothing). Its density is constant on each unit
  bin, so the dequantized bound equals its discrete NLL exactly.
- `FullGaussian`: one multivariate normal with full covariance fitted to dequantized
  training pixels: it sees correlations between pixels, but no shapes.

All three take float pixels of shape (n, 1, 8, 8) in grey-level units, like the flows.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .data import LEVELS, N_PIXELS, check_images


def _flat(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1:] != (1, 8, 8):
        raise ValueError(
            "expected float pixels of shape (n, 1, 8, 8), got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    return x.reshape(x.shape[0], N_PIXELS)


def _inside(x: torch.Tensor) -> torch.Tensor:
    """True for the images whose every pixel lies in [0, 17)."""
    return ((x >= 0) & (x < LEVELS)).all(dim=1)


class UniformLevels(nn.Module):
    """q uniform on [0, 17)^64: log q = -64 log 17 inside, -inf outside."""

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = _flat(x)
        inside = torch.full((x.shape[0],), -N_PIXELS * math.log(LEVELS), dtype=x.dtype)
        return torch.where(_inside(x), inside, torch.full_like(inside, -math.inf))


class PixelCategorical(nn.Module):
    """Independent pixels, each with a categorical over the 17 levels fitted on `images`.

    P_j(k) = (count of level k at pixel j + alpha) / (n + 17 alpha). As a density on
    dequantized pixels it is P_j(floor(x_j)) on each unit bin.
    """

    def __init__(self, images: torch.Tensor, alpha: float = 1.0):
        super().__init__()
        images = check_images(images).reshape(-1, N_PIXELS)
        if not (isinstance(alpha, (int, float)) and alpha > 0):
            raise ValueError(f"alpha must be a number > 0 (add-alpha smoothing), got {alpha!r}")
        counts = torch.zeros(N_PIXELS, LEVELS, dtype=torch.float64)
        counts.scatter_add_(1, images.T, torch.ones_like(images.T, dtype=torch.float64))
        probs = (counts + alpha) / (images.shape[0] + LEVELS * alpha)
        self.register_buffer("log_probs", probs.log())  # (64, 17)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = _flat(x)
        inside = _inside(x)
        levels = x.floor().clamp(0, LEVELS - 1).long()
        lp = self.log_probs.to(x.dtype).gather(1, levels.T).T.sum(dim=1)
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))


class FullGaussian(nn.Module):
    """N(mean, cov) on dequantized pixels, fitted (maximum likelihood) to `images` + u with
    u ~ U[0, 1)^64 drawn with `seed`; `ridge` is added to the covariance's diagonal."""

    def __init__(self, images: torch.Tensor, seed: int = 0, ridge: float = 1e-3):
        super().__init__()
        images = check_images(images).reshape(-1, N_PIXELS).double()
        gen = torch.Generator().manual_seed(seed)
        y = images + torch.rand(images.shape, generator=gen, dtype=torch.float64)
        mean = y.mean(0)
        cov = (y - mean).T @ (y - mean) / y.shape[0] + ridge * torch.eye(N_PIXELS)
        self.register_buffer("mean", mean)
        self.register_buffer("scale_tril", torch.linalg.cholesky(cov))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = _flat(x)
        dist = torch.distributions.MultivariateNormal(
            self.mean.to(x.dtype), scale_tril=self.scale_tril.to(x.dtype)
        )
        return dist.log_prob(x)
