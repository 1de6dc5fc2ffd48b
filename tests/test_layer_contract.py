"""The contract every flowedu layer keeps, tested once for all of them.

LAYERS is one table of layer factories; each test below runs on every entry. Adding a layer
to flowedu adds one line to the table:

    Case(name, factory(dtype) -> layer, event shape of one sample, identity at init?)

Convention: forward(x) -> (z, log|det dz/dx|) is data -> latent, inverse(z) -> (x,
log|det dx/dz|) is latent -> data, for x of shape (batch, *shape) and log-dets of shape
(batch,). The contract: an exact round trip in float32 and float64, tails included; log-dets
equal to log|det| of the autograd Jacobian, both ways, and negatives of each other; a new
layer that is meant to start as the identity is the identity; a layer says what it does
(`kind`, `describe`); wrong shapes, NaN, integer or mismatched dtypes and devices are refused
with a message that says what was wrong.
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
from flowedu.spline_flow import SplineCoupling

HIDDEN = (32, 32)


@dataclass(frozen=True)
class Case:
    name: str
    factory: Callable[[torch.dtype], torch.nn.Module]  # a new layer, in that dtype
    shape: tuple[int, ...]  # the shape of one sample
    identity_at_init: bool = True
    has_weights: bool = True  # learned weights, whose dtype and device inputs must match

    def __repr__(self) -> str:  # the test ids
        return self.name


def _new(make: Callable[[], torch.nn.Module]) -> Callable[[torch.dtype], torch.nn.Module]:
    def factory(dtype: torch.dtype) -> torch.nn.Module:
        torch.manual_seed(0)
        return make().to(dtype)

    return factory


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
]
IDENTITY_AT_INIT = [case for case in LAYERS if case.identity_at_init]
WITH_WEIGHTS = [case for case in LAYERS if case.has_weights]
TOL = {torch.float32: 1e-4, torch.float64: 1e-10}


def trained_like(case: Case, dtype: torch.dtype, seed: int = 0) -> torch.nn.Module:
    """The layer with every weight moved by N(0, 0.1^2) noise: no longer the identity (the
    zero last layers of the couplings become non-zero), as after some training."""
    layer = case.factory(dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return layer


def points(case: Case, dtype: torch.dtype, n: int = 256) -> torch.Tensor:
    """Typical points and points in the tails, beyond the splines' bounds (|x| up to 8)."""
    gen = torch.Generator().manual_seed(1)
    typical = torch.randn(n, *case.shape, generator=gen, dtype=dtype)
    tails = (torch.rand(n, *case.shape, generator=gen, dtype=dtype) * 2 - 1) * 8
    return torch.cat([typical, tails])


def per_sample_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """(batch, D, D) with D = prod(shape): the Jacobian of fn at each sample of x."""

    def flat(v: torch.Tensor) -> torch.Tensor:
        return fn(v.reshape(1, *x.shape[1:]))[0].reshape(-1)

    return torch.stack([jacobian(flat, xi.reshape(-1)) for xi in x])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", LAYERS, ids=repr)
def test_round_trip_is_exact_in_both_directions_tails_included(case, dtype):
    layer = trained_like(case, dtype)
    x = points(case, dtype)
    with torch.no_grad():
        z, _ = layer(x)
        back, _ = layer.inverse(z)
        assert (back - x).abs().max() < TOL[dtype] * (1 + x.abs().max())
        x2, _ = layer.inverse(x)  # and from the latent side
        assert (layer(x2)[0] - x).abs().max() < TOL[dtype] * (1 + x.abs().max())


@pytest.mark.parametrize("case", LAYERS, ids=repr)
def test_log_dets_match_autograd_both_ways_and_cancel(case):
    dtype = torch.float64
    layer = trained_like(case, dtype)
    x = points(case, dtype, n=12)
    z, log_det = layer(x)
    x_again, log_det_inv = layer.inverse(z)
    assert log_det.shape == (len(x),) and log_det_inv.shape == (len(x),)
    assert z.shape == x.shape
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
    good = points(case, torch.float32, n=4)
    wrong = torch.zeros(4, *case.shape[:-1], case.shape[-1] + 1)
    for step in (layer.forward, layer.inverse):
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
    x = points(case, torch.float32, n=4)
    for step in (layer.forward, layer.inverse):
        with pytest.raises(TypeError, match="float64"):
            step(x.double())
    # The only other device every machine has is "meta" (shapes without data): a layer moved
    # there must refuse CPU inputs by saying where each one lives.
    layer.to("meta")
    for step in (layer.forward, layer.inverse):
        with pytest.raises(TypeError, match="on cpu but the model is on meta"):
            step(x)
