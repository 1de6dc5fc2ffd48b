"""Bits per dimension: the unit in which image models are compared, as an honest bound.

An image is discrete: each of its D = 64 pixels is one of 17 grey levels. A density q on
continuous pixels can be made arbitrarily large on those 17^64 points, so its value there
means nothing. Dequantization fixes this: the flow models y = x + u with u in [0, 1)^D, a
point somewhere in the unit bin of x, and the discrete probability it gives to x is the
mass of q over that bin,

    P(x) = integral over [0, 1)^D of q(x + u) du
         >= exp(E_{u ~ r(u|x)} [log q(x + u) - log r(u|x)])      (Jensen)

for any density r of the noise on the bin; r uniform has log r = 0 because the bin has
width 1 (in units where the grey levels are 0, 1, ..., 16). So -log2 P(x) / D is at most

    bits/dim = -(E_r[log q(x + u) - log r(u | x)]) / (D log 2),

which is what `bits_per_dim` estimates, per image, with the noise drawn from the flow's own
dequantizer (`flow.dequantizer`, a variational r) or uniform when it has none. The bound
holds for every image, so its mean over a split bounds the mean discrete NLL, and its
standard error is the standard deviation over images / sqrt(n).

A model that puts the same probability 1/17 on every level of every pixel scores exactly
log2(17) = 4.087 bits/dim: the ceiling any model must beat.
"""

from __future__ import annotations

import math

import torch

from .data import N_PIXELS, check_images

LOG2 = math.log(2.0)


def as_pixels(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer images (n, 8, 8) as float pixels of shape (n, 1, 8, 8): one channel."""
    return check_images(images).to(dtype)[:, None]


def _model_dtype(flow) -> torch.dtype:
    for t in list(flow.parameters()) + list(flow.buffers()):
        if t.dtype.is_floating_point:
            return t.dtype
    return torch.get_default_dtype()


def _device(flow) -> torch.device:
    for t in list(flow.parameters()) + list(flow.buffers()):
        return t.device
    return torch.device("cpu")


def elbo_nats(
    flow, images: torch.Tensor, seed: int | None = 0, batch_size: int = 500
) -> torch.Tensor:
    """Per image, log q(x + u) - log r(u|x) in nats for one draw of u: a lower bound on
    log P(x) in expectation. Shape (n,). Needs no gradient: runs under torch.no_grad."""
    images = check_images(images)
    dtype, device = _model_dtype(flow), _device(flow)
    dequantizer = getattr(flow, "dequantizer", None)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size]
            x = chunk.to(dtype)[:, None].to(device)
            if dequantizer is None:
                u = torch.rand(x.shape, generator=gen, dtype=dtype).to(device)
                log_r = torch.zeros(x.shape[0], dtype=dtype, device=device)
            else:
                eps = torch.randn(x.shape, generator=gen, dtype=dtype).to(device)
                u, log_r = dequantizer(x, eps)
            out.append((flow.log_prob(x + u) - log_r).cpu())
    return torch.cat(out)


def bits_per_dim(
    flow, images: torch.Tensor, samples: int = 1, seed: int | None = 0
) -> tuple[float, float]:
    """(mean, standard error) of an upper bound on -log2 P(x) / 64 over `images`.

    `images`: integer tensor (n, 8, 8), values 0..16 (flowedu.images.digits(split)).
    `flow`: anything with log_prob(pixels) for float pixels of shape (n, 1, 8, 8) in
    [0, 17) (the grey levels plus dequantization noise, in grey-level units), and
    optionally a `dequantizer` (see dequantization.py) drawing the noise u with its log
    density; without one the noise is uniform. With samples = K > 1 the K draws per image
    are combined as log mean_k exp(...), the importance-weighted bound, tighter and still
    an upper bound on the NLL. The flow is put in eval mode (no dropout) while scoring.
    Seeded: the same call gives the same number.
    """
    images = check_images(images)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    was_training = getattr(flow, "training", False)
    if hasattr(flow, "eval"):
        flow.eval()
    try:
        draws = torch.stack(
            [
                elbo_nats(flow, images, seed=None if seed is None else seed + k)
                for k in range(samples)
            ]
        ).double()
    finally:
        if was_training:
            flow.train()
    log_p = torch.logsumexp(draws, dim=0) - math.log(samples)
    if not torch.isfinite(log_p).all():
        bad = torch.nonzero(~torch.isfinite(log_p)).flatten()[:5].tolist()
        raise ValueError(
            f"the flow gives log-density -inf or NaN to some dequantized images (first: {bad}); "
            "its support must cover [0, 17)^64"
        )
    bpd = -log_p / (N_PIXELS * LOG2)
    n = bpd.numel()
    se = float(bpd.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return float(bpd.mean()), se
