"""The contract every flowedu layer keeps, tested once for all of them.

LAYERS is one table of layer factories, the 2D layers and the image layers of
flowedu.images alike; each test below runs on every entry. Adding a layer to flowedu adds one
line to the table:

    Case(name, factory(dtype) -> layer, event shape of one sample, identity at init?,
         has weights?, sample=..., wrong_shape=...)

Convention: forward(x) -> (z, log|det dz/dx|) is data -> latent, inverse(z) -> (x,
log|det dx/dz|) is latent -> data, for x of shape (batch, *shape), z of shape (batch,
*layer.output_shape(shape)) (a layer without `output_shape` keeps the shape; Squeeze does
not) and log-dets of shape (batch,). The contract: an exact round trip in float32 and
float64, tails included; log-dets equal to log|det| of the autograd Jacobian, both ways, and
negatives of each other; a new layer that is meant to start as the identity is the identity;
a layer says what it does (`kind`, `describe`); wrong shapes, NaN, integer or mismatched
dtypes and devices are refused with a message that says what was wrong.

Inputs are N(0, I) points plus tails (|x| up to 8) on both sides, except where a layer's
data side is smaller: a Case's `sample` then draws its typical points and its tails there
(LogitTransform takes grey levels in [0, 17); its tails are the two ends). A layer that
initialises itself from the first batch it sees (ActNorm) gets one batch before its weights
are moved, as it would when training starts. The variational dequantizer is not here: it is
a conditional density, forward(x, eps) -> (u, log r(u | x)), without an inverse.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch.autograd.functional import jacobian

from flowedu.autoregressive import MaskedAutoregressive
from flowedu.couplings import (
    AdditiveCoupling,
    AffineCoupling,
    Permutation,
    Standardize,
    alternating_mask,
    half_mask,
)
from flowedu.images.layers import (
    ActNorm,
    ConvCoupling,
    InvConv1x1,
    LogitTransform,
    Split,
    Squeeze,
    Unsqueeze,
)
from flowedu.spline_flow import SplineCoupling

HIDDEN = (32, 32)
TAIL = 8.0  # the tails reach |x| = 8, beyond the splines' bounds

Sampler = Callable[[int, torch.dtype, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Case:
    name: str
    factory: Callable[[torch.dtype], torch.nn.Module]  # a new layer, in that dtype
    shape: tuple[int, ...]  # the shape of one sample
    identity_at_init: bool = True
    has_weights: bool = True  # learned weights, whose dtype and device inputs must match
    # (n, dtype, generator) -> 2n valid inputs, n typical then n in the tails; None: N(0, I)
    # and uniform on [-8, 8] (every layer's latent side is drawn that way)
    sample: Sampler | None = None
    # one sample's shape that neither direction accepts; None: the last axis one longer
    wrong_shape: tuple[int, ...] | None = None

    def __repr__(self) -> str:  # the test ids
        return self.name


def _new(make: Callable[[], torch.nn.Module]) -> Callable[[torch.dtype], torch.nn.Module]:
    def factory(dtype: torch.dtype) -> torch.nn.Module:
        torch.manual_seed(0)
        return make().to(dtype)

    return factory


def grey_levels(levels: int) -> Sampler:
    """Dequantized grey levels y in [0, levels): uniform, and tails at both ends of the
    range (within 1e-3 of 0, 0 itself included, and within 1e-3 of `levels`)."""

    def sample(n: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
        typical = torch.rand(n, 1, 4, 4, generator=gen, dtype=dtype) * levels
        near = torch.rand(n, 1, 4, 4, generator=gen, dtype=dtype) * 1e-3
        low = torch.rand(n, 1, 4, 4, generator=gen) < 0.5
        tails = torch.where(low, near, levels - near)
        tails[0, 0, 0, 0] = 0.0
        return torch.cat([typical, tails])

    return sample


def split_block() -> Split:
    """The digits flow's multi-scale split in small: channels 1-2 leave; on channels 3-4 a
    squeeze, a Glow step and an unsqueeze."""
    inner = [Squeeze(), ActNorm(8), InvConv1x1(8), ConvCoupling(8, "channel", 0, 8), Unsqueeze()]
    return Split(4, inner)


LAYERS = [
    Case("affine", _new(lambda: AffineCoupling(half_mask(2), HIDDEN)), (2,)),
    Case("affine 5d", _new(lambda: AffineCoupling(alternating_mask(5), HIDDEN)), (5,)),
    Case("affine unbounded", _new(lambda: AffineCoupling(half_mask(2), HIDDEN, None)), (2,)),
    Case("additive", _new(lambda: AdditiveCoupling(half_mask(4, flip=True), HIDDEN)), (4,)),
    Case("permutation", _new(lambda: Permutation([2, 0, 1])), (3,), False, False),
    Case(
        "standardize",
        _new(lambda: Standardize(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0]))),
        (2,),
        identity_at_init=False,
        has_weights=False,
    ),
    Case("spline", _new(lambda: SplineCoupling(half_mask(2), HIDDEN, 8, 3.0)), (2,)),
    Case("spline 5d", _new(lambda: SplineCoupling(alternating_mask(5, 1), HIDDEN, 5)), (5,)),
    Case("MAF affine", _new(lambda: MaskedAutoregressive(3, HIDDEN, "affine", "x")), (3,)),
    Case("MAF spline", _new(lambda: MaskedAutoregressive(3, HIDDEN, "spline", "x", 6)), (3,)),
    Case("IAF affine", _new(lambda: MaskedAutoregressive(4, HIDDEN, "affine", "z")), (4,)),
    Case("IAF spline", _new(lambda: MaskedAutoregressive(2, HIDDEN, "spline", "z", 5, 3.0)), (2,)),
    # image layers, on images (channels, height, width)
    Case(
        "image logit",
        _new(lambda: LogitTransform(17)),
        (1, 4, 4),
        identity_at_init=False,
        has_weights=False,
        sample=grey_levels(17),
        wrong_shape=(4, 4),  # any (C, H, W) is an image to it: only a missing axis is wrong
    ),
    # ActNorm sets itself from its first batch (mean 0, sd 1 per channel): not the identity
    Case("image actnorm", _new(lambda: ActNorm(4)), (4, 4, 4), False, wrong_shape=(5, 4, 4)),
    # a new 1x1 convolution is a random rotation
    Case("image conv1x1", _new(lambda: InvConv1x1(4)), (4, 4, 4), False, wrong_shape=(5, 4, 4)),
    Case("image squeeze", _new(Squeeze), (1, 4, 4), False, False),  # odd width is wrong
    Case("image unsqueeze", _new(Unsqueeze), (4, 4, 4), False, False, wrong_shape=(5, 4, 5)),
    Case(
        "image checkerboard coupling",
        _new(lambda: ConvCoupling(1, "checkerboard", 0, 8)),
        (1, 4, 4),
        wrong_shape=(2, 4, 4),
    ),
    Case(
        "image checkerboard coupling odd",
        _new(lambda: ConvCoupling(2, "checkerboard", 1, 8)),
        (2, 3, 3),
        wrong_shape=(3, 3, 3),
    ),
    Case(
        "image channel coupling",
        _new(lambda: ConvCoupling(4, "channel", 0, 8)),
        (4, 2, 2),
        wrong_shape=(5, 2, 2),
    ),
    Case(
        "image channel coupling odd",
        _new(lambda: ConvCoupling(3, "channel", 1, 8)),
        (3, 2, 2),
        wrong_shape=(4, 2, 2),
    ),
    Case("image split", _new(split_block), (4, 4, 4), False, wrong_shape=(5, 4, 4)),
]
IDENTITY_AT_INIT = [case for case in LAYERS if case.identity_at_init]
WITH_WEIGHTS = [case for case in LAYERS if case.has_weights]
TOL = {torch.float32: 1e-4, torch.float64: 1e-10}


def output_shape(layer: torch.nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of one sample of the layer's output (of z) for an input sample of `shape`."""
    return tuple(layer.output_shape(shape)) if hasattr(layer, "output_shape") else shape


def trained_like(case: Case, dtype: torch.dtype, seed: int = 0) -> torch.nn.Module:
    """The layer with every weight moved by N(0, 0.1^2) noise: no longer the identity (the
    zero last layers of the couplings become non-zero), as after some training. It sees one
    batch first, which sets the layers that initialise from data (ActNorm)."""
    layer = case.factory(dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer(points(case, dtype, n=64, seed=2))
        for p in layer.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return layer


def points(case: Case, dtype: torch.dtype, n: int = 256, seed: int = 1) -> torch.Tensor:
    """n typical inputs and n in the tails: the Case's `sample`, else N(0, I) points and
    points beyond the splines' bounds (|x| up to 8)."""
    gen = torch.Generator().manual_seed(seed)
    if case.sample is not None:
        return case.sample(n, dtype, gen)
    return real_points(case.shape, dtype, n, gen)


def latent_points(case: Case, layer: torch.nn.Module, dtype: torch.dtype, n: int = 256):
    """n typical latents and n in the tails, in the layer's output shape."""
    gen = torch.Generator().manual_seed(3)
    return real_points(output_shape(layer, case.shape), dtype, n, gen)


def real_points(shape: tuple[int, ...], dtype, n: int, gen: torch.Generator) -> torch.Tensor:
    typical = torch.randn(n, *shape, generator=gen, dtype=dtype)
    tails = (torch.rand(n, *shape, generator=gen, dtype=dtype) * 2 - 1) * TAIL
    return torch.cat([typical, tails])


def per_sample_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """(batch, D, D) with D = prod(shape): the Jacobian of fn at each sample of x (fn's
    output has as many numbers as its input, in whatever shape)."""

    def flat(v: torch.Tensor) -> torch.Tensor:
        return fn(v.reshape(1, *x.shape[1:]))[0].reshape(-1)

    return torch.stack([jacobian(flat, xi.reshape(-1)) for xi in x])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", LAYERS, ids=repr)
def test_round_trip_is_exact_in_both_directions_tails_included(case, dtype):
    layer = trained_like(case, dtype)
    x = points(case, dtype)
    w = latent_points(case, layer, dtype)
    with torch.no_grad():
        z, _ = layer(x)
        back, _ = layer.inverse(z)
        assert (back - x).abs().max() < TOL[dtype] * (1 + x.abs().max())
        x2, _ = layer.inverse(w)  # and from the latent side
        assert (layer(x2)[0] - w).abs().max() < TOL[dtype] * (1 + w.abs().max())


@pytest.mark.parametrize("case", LAYERS, ids=repr)
def test_log_dets_match_autograd_both_ways_and_cancel(case):
    dtype = torch.float64
    layer = trained_like(case, dtype)
    x = points(case, dtype, n=12)
    z, log_det = layer(x)
    _, log_det_inv = layer.inverse(z)
    assert log_det.shape == (len(x),) and log_det_inv.shape == (len(x),)
    assert z.shape == (len(x), *output_shape(layer, case.shape))
    forward_jac = per_sample_jacobian(layer, x)
    assert torch.allclose(log_det, torch.linalg.slogdet(forward_jac)[1], atol=1e-8)
    inverse_jac = per_sample_jacobian(layer.inverse, z.detach())
    assert torch.allclose(log_det_inv, torch.linalg.slogdet(inverse_jac)[1], atol=1e-8)
    assert torch.allclose(log_det + log_det_inv, torch.zeros_like(log_det), atol=1e-10)


@pytest.mark.parametrize("case", IDENTITY_AT_INIT, ids=repr)
def test_a_new_layer_is_the_identity(case):
    layer = case.factory(torch.float32)
    x = points(case, torch.float32)
    with torch.no_grad():
        for step in (layer.forward, layer.inverse):
            out, log_det = step(x)
            assert torch.allclose(out, x, atol=1e-5)
            assert log_det.abs().max() < 1e-5


@pytest.mark.parametrize("case", LAYERS, ids=repr)
def test_a_layer_says_what_it_does(case):
    layer = case.factory(torch.float32)
    assert isinstance(layer.kind, str) and layer.kind
    for direction in ("normalize", "generate"):
        words = layer.describe(direction)
        assert isinstance(words, str) and len(words) > 5


@pytest.mark.parametrize("case", LAYERS, ids=repr)
def test_wrong_shapes_nan_and_integers_are_refused_clearly(case):
    layer = case.factory(torch.float32)
    wrong_shape = case.wrong_shape or (*case.shape[:-1], case.shape[-1] + 1)
    wrong = torch.zeros(4, *wrong_shape)
    for step, good in (
        (layer.forward, points(case, torch.float32, n=4)),
        (layer.inverse, latent_points(case, layer, torch.float32, n=4)),
    ):
        with pytest.raises(ValueError, match="shape"):
            step(wrong)
        with pytest.raises(ValueError, match="shape"):
            step(good[0])  # one sample without its batch dimension
        bad = good.clone()
        bad.view(-1)[3] = math.nan
        with pytest.raises(ValueError, match="NaN"):
            step(bad)
        with pytest.raises(TypeError, match="floating-point"):
            step(good.to(torch.int64))
        with pytest.raises(ValueError, match="empty"):
            step(good[:0])


@pytest.mark.parametrize("case", WITH_WEIGHTS, ids=repr)
def test_inputs_of_another_dtype_or_device_than_the_weights_are_refused(case):
    layer = case.factory(torch.float32)
    steps = (
        (layer.forward, points(case, torch.float32, n=4)),
        (layer.inverse, latent_points(case, layer, torch.float32, n=4)),
    )
    for step, x in steps:
        with pytest.raises(TypeError, match="float64"):
            step(x.double())
    # The only other device every machine has is "meta" (shapes without data): a layer moved
    # there must refuse CPU inputs by saying where each one lives.
    layer.to("meta")
    for step, x in steps:
        with pytest.raises(TypeError, match="on cpu but the model is on meta"):
            step(x)
