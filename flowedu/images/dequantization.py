"""Dequantization: turning the 17 grey levels into a continuous density the bound can use.

A flow models y = x + u, u in [0, 1)^64 (see score.py). Two choices of the noise density
r(u | x):

- uniform: u ~ U[0, 1)^64, log r = 0. Simple, but the flow must then spread its density
  evenly over each unit bin, sharp edges a smooth flow approximates poorly: the bound is
  looser than it need be.
- variational (Flow++, Ho et al. 2019): u = sigmoid(h), h = g(eps; x), eps ~ N(0, I), with
  g a small conditional flow whose couplings read the image x. Then
  log r(u | x) = log N(eps; 0, I) - log|det dg/deps| - log|det d sigmoid/dh|, and r is
  trained together with the flow to maximise E_r[log q(x + u) - log r(u|x)], the same
  bound, which it can only tighten.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..checks import check_positive_int
from .data import LEVELS
from .layers import ConvCoupling, check_image_batch

LOG_2PI = 1.8378770664093453


class VariationalDequantizer(nn.Module):
    """r(u | x): u = sigmoid(g(eps; x)), g a stack of checkerboard couplings conditioned on x.

    Call it as dequantizer(x, eps) -> (u, log r(u|x)) with x the integer grey levels as
    floats, shape (n, 1, 8, 8), and eps ~ N(0, I) of the same shape; `sample(x)` draws eps.
    A small network turns x into `cond_channels` feature maps that every coupling reads.
    """

    kind = "dequantizer"

    def __init__(self, hidden: int = 32, n_couplings: int = 4, cond_channels: int = 8):
        super().__init__()
        check_positive_int(hidden, "hidden")
        check_positive_int(n_couplings, "n_couplings")
        check_positive_int(cond_channels, "cond_channels")
        self.features = nn.Sequential(
            nn.Conv2d(1, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, cond_channels, 3, padding=1),
        )
        self.couplings = nn.ModuleList(
            ConvCoupling(1, "checkerboard", i % 2, hidden, cond_channels=cond_channels)
            for i in range(n_couplings)
        )

    def describe(self, direction: str = "normalize", names=None) -> str:
        return (
            f"draws the noise u in (0, 1) of each pixel from a flow of {len(self.couplings)} "
            "couplings that reads the image (variational dequantization)"
        )

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, log r(u | x)) for the noise eps ~ N(0, I), both of x's shape; log r per image."""
        check_image_batch(x, 1)
        check_image_batch(eps, 1, "eps")
        if eps.shape != x.shape:
            raise ValueError(f"eps must have x's shape {tuple(x.shape)}, got {tuple(eps.shape)}")
        cond = self.features(x * (2.0 / (LEVELS - 1)) - 1.0)
        h, log_det = eps, eps.new_zeros(eps.shape[0])
        for coupling in self.couplings:
            h, ld = coupling(h, cond=cond)
            log_det = log_det + ld
        u = torch.sigmoid(h)
        log_det_sigmoid = (-F.softplus(-h) - F.softplus(h)).flatten(1).sum(1)
        log_base = (-0.5 * eps**2 - 0.5 * LOG_2PI).flatten(1).sum(1)
        return u, log_base - log_det - log_det_sigmoid

    def sample(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw u ~ r(u | x) and return (u, log r(u | x))."""
        weight = self.features[0].weight
        eps = torch.randn(x.shape, generator=generator, dtype=weight.dtype).to(weight.device)
        return self(x, eps)


def uniform(x: torch.Tensor, generator: torch.Generator | None = None):
    """u ~ U[0, 1) of x's shape and log r(u|x) = 0 per image (the bin has width 1)."""
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return u, x.new_zeros(x.shape[0])
