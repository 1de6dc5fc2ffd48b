"""Checkers for the exercises of notebook 07 (flows on images)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from flowedu.exercises.verdicts import NONE_MESSAGE, Result, run, verdict


def _weights() -> list[torch.Tensor]:
    """Test matrices for the 1x1 convolution: sizes 1..5, some with a negative determinant."""
    gen = torch.Generator().manual_seed(7)
    out = [torch.tensor([[-2.5]], dtype=torch.float64)]
    for c in (2, 3, 4, 5):
        out.append(torch.randn(c, c, generator=gen, dtype=torch.float64) + 0.5 * torch.eye(c))
    return out


def _conv1x1_log_det(fn):
    """fn(weight, height, width) -> log|det| of the 1x1 convolution with `weight` (C, C) on
    an image of height x width pixels (per image, a number)."""
    sizes = [(8, 8), (4, 4), (2, 2), (3, 5), (1, 7)]
    got = []
    for w, (h, wd) in zip(_weights(), sizes, strict=True):
        value, err = run(fn, w, h, wd)
        if err:
            return Result("07.conv1x1_log_det", False, err)
        if value is None:
            return Result("07.conv1x1_log_det", False, NONE_MESSAGE)
        try:
            got.append(torch.as_tensor(value, dtype=torch.float64).reshape(()))
        except (TypeError, ValueError, RuntimeError):
            return Result("07.conv1x1_log_det", False, "return one number per call")
    got = torch.stack(got)
    if torch.isnan(got[0]):  # the first matrix has det W = -2.5
        return Result(
            "07.conv1x1_log_det",
            False,
            "NaN for a matrix with det W = -2.5: the log-det is log|det W|, take the absolute "
            "value first (torch.linalg.slogdet gives it)",
        )
    dets = torch.stack([torch.linalg.det(w) for w in _weights()])
    log_abs = torch.stack([torch.linalg.slogdet(w)[1] for w in _weights()])
    hw = torch.tensor([h * wd for h, wd in sizes], dtype=torch.float64)
    hplusw = torch.tensor([h + wd for h, wd in sizes], dtype=torch.float64)
    channels = torch.tensor([w.shape[0] for w in _weights()], dtype=torch.float64)
    mistakes = {
        "W acts at every one of the H x W pixels: multiply log|det W| by height * width": log_abs,
        "that is det W itself, not its logarithm times the number of pixels": dets,
        "the count is height * width pixels, not height + width": hplusw * log_abs,
        "the number of pixels (H * W) multiplies log|det W|, not the number of channels": channels
        * log_abs,
    }
    return verdict(
        "07.conv1x1_log_det", got, hw * log_abs, mistakes, "on 5 matrices and image sizes"
    )


def _bits_per_dim(fn):
    """fn(nats_per_image, n_dims) -> bits per dimension."""
    nats = torch.tensor([88.3, 120.0, 181.2, 1.0, 0.0], dtype=torch.float64)
    dims = 64
    got, err = run(fn, nats, dims)
    if err:
        return Result("07.bits_per_dim", False, err)
    mistakes = {
        "that is nats per dimension: divide by log(2) too, to count in bits": nats / dims,
        "that is bits per image: divide by the number of dimensions too": nats / math.log(2),
        "bits = nats / log(2), not nats * log(2)": nats * math.log(2) / dims,
        "use the natural log of 2 (log 2 = 0.693), not log10(2)": nats / (dims * math.log10(2)),
    }
    expected = nats / (dims * math.log(2))
    return verdict("07.bits_per_dim", got, expected, mistakes, "on 5 NLLs of 64-pixel images")


def _logit_log_det(fn):
    """fn(x, alpha, levels) -> log|det dz/dx| per image of z = logit(a + (1 - 2a) x / levels),
    x of shape (batch, 1, H, W)."""
    gen = torch.Generator().manual_seed(8)
    x = torch.rand(6, 1, 8, 8, generator=gen, dtype=torch.float64) * 17
    alpha, levels = 0.05, 17
    got, err = run(fn, x, alpha, levels)
    if err:
        return Result("07.logit_log_det", False, err)
    p = alpha + (1 - 2 * alpha) * x / levels
    per_pixel = math.log((1 - 2 * alpha) / levels) - torch.log(p) - torch.log1p(-p)
    expected = per_pixel.flatten(1).sum(1)
    no_scale = (-torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
    mistakes = {
        "you left out the factor (1 - 2 alpha) / levels of p = alpha + (1 - 2 alpha) x / levels "
        "(chain rule)": no_scale,
        "sum over the pixels of each image: return shape (batch,)": per_pixel.sum(),
        "the sign is flipped: d logit(p)/dp = 1 / (p (1 - p)), whose log is -log p - log(1-p)": (
            -expected
        ),
    }
    return verdict("07.logit_log_det", got, expected, mistakes, "on 6 dequantized digits")


EXERCISES: dict[str, tuple[Callable[[Callable], Result], str]] = {
    "07.conv1x1_log_det": (
        _conv1x1_log_det,
        "log_det(weight, height, width): log|det| of a 1x1 conv over an H x W image",
    ),
    "07.bits_per_dim": (_bits_per_dim, "bpd(nats_per_image, n_dims): nats per image -> bits/dim"),
    "07.logit_log_det": (
        _logit_log_det,
        "log_det(x, alpha, levels): (batch,) log|det| of the logit preprocessing",
    ),
}
