"""MADE, MAF and IAF: masks that make the Jacobian exactly triangular, and which direction
costs one network pass and which costs D."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from flowedu import recipes
from flowedu.autoregressive import MADE, MaskedAutoregressive, autoregressive_flow


def randomized(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


@pytest.mark.parametrize("dim", [2, 3, 5, 8])
def test_made_output_i_depends_exactly_on_the_inputs_before_i(dim):
    torch.manual_seed(0)
    made = randomized(MADE(dim, n_params=3, hidden=(64, 64)).double())
    seen = torch.zeros(dim, 3, dim, dtype=torch.bool)
    for x in torch.randn(5, dim, dtype=torch.float64):  # a ReLU off at one x is on at another
        jac = jacobian(lambda v: made(v.unsqueeze(0))[0], x)  # (dim, n_params, dim)
        for p in range(3):
            block = jac[:, p, :]
            assert torch.equal(block.triu(), torch.zeros_like(block))  # exactly 0 on and above
        seen |= jac != 0
    below = torch.ones(dim, dim).tril(-1).bool()
    for p in range(3):
        assert seen[:, p, :][below].all()  # and every input before i reaches output i


def test_a_new_made_outputs_zero():
    made = MADE(4, n_params=2)
    assert torch.equal(made(torch.randn(10, 4)), torch.zeros(10, 4, 2))


@pytest.mark.parametrize("transformer", ["affine", "spline"])
def test_maf_density_takes_one_pass_and_sampling_d_passes_iaf_the_reverse(transformer):
    dim = 5
    for conditioned_on, forward_passes, inverse_passes in (("x", 1, dim), ("z", dim, 1)):
        layer = MaskedAutoregressive(dim, (32,), transformer, conditioned_on)
        layer = randomized(layer.double())
        x = torch.randn(50, dim, dtype=torch.float64)
        with torch.no_grad():
            layer.network_passes = 0
            z, _ = layer(x)
            assert layer.network_passes == forward_passes
            layer.network_passes = 0
            back, _ = layer.inverse(z)
            assert layer.network_passes == inverse_passes
        assert (back - x).abs().max() < 1e-10
        one = "normalize" if conditioned_on == "x" else "generate"
        assert layer.one_pass_direction == one
        assert layer.describe(one).endswith("(1 pass)")


def test_the_layer_jacobian_is_triangular_with_log_det_its_diagonal():
    layer = randomized(MaskedAutoregressive(4, (16,), "spline", "x", n_bins=6)).double()
    x = torch.randn(4, dtype=torch.float64)
    jac = jacobian(lambda v: layer(v.unsqueeze(0))[0][0], x)
    assert torch.equal(jac.triu(1), torch.zeros_like(jac))
    log_det = layer(x.unsqueeze(0))[1][0]
    assert torch.allclose(log_det, jac.diagonal().log().sum(), atol=1e-12)


@pytest.mark.parametrize("conditioned_on", ["x", "z"])
def test_the_autoregressive_recipe_rebuilds_itself(conditioned_on):
    flow = autoregressive_flow(n_layers=3, hidden=[16], transformer="spline",
                               conditioned_on=conditioned_on)  # fmt: skip
    randomized(flow, 0.1)
    again = recipes.from_config(flow.config)
    again.load_state_dict(flow.state_dict())
    x = torch.randn(64, 2)
    with torch.no_grad():
        assert torch.equal(again.log_prob(x), flow.log_prob(x))
        assert (flow(flow.inverse(x)[0])[0] - x).abs().max() < 1e-4
    kinds = [layer.kind for layer in flow.layers]
    assert kinds == [
        "autoregressive",
        "permutation",
        "autoregressive",
        "permutation",
        "autoregressive",
    ]


def test_a_maf_learns_moons():
    from flowedu import datasets
    from flowedu.train import fit, nll

    torch.manual_seed(0)
    flow = autoregressive_flow(n_layers=4, hidden=[64, 64])
    test = datasets.sample("moons", 20_000, seed=5)
    before = nll(flow, test)[0]
    fit(flow, "moons", steps=300, batch_size=256, lr=3e-3, progress=False, device="cpu")
    after = nll(flow, test)[0]
    assert after < before - 0.3, (before, after)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dim=1), "dim >= 2"),
        (dict(dim=2, transformer="cubic"), "transformer must be one of"),
        (dict(dim=2, conditioned_on="y"), 'conditioned_on must be "x"'),
        (dict(dim=2, hidden=()), "hidden must be a non-empty list"),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MaskedAutoregressive(**kwargs)
