"""Specification of flowedu.flow.Flow as built by flowedu.realnvp.

Convention: forward(x) -> (z, log|det df^-1/dx|) is data -> latent, inverse(z) -> (x,
log|det df/dz|) is latent -> data, and log p(x) = log N(f^-1(x); 0, I) + log|det df^-1/dx|.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from flowedu.couplings import AffineCoupling, Standardize
from flowedu.flow import Flow, NonFiniteError, standard_normal_log_prob
from flowedu.realnvp import realnvp
from flowedu.recipes import from_config

STANDARDIZE = ([0.5, -0.25], [1.25, 0.75])  # exact in float32
RECIPES = {
    "affine": dict(coupling="affine"),
    "affine_standardized": dict(coupling="affine", standardize=STANDARDIZE),
    "additive": dict(coupling="additive"),
    "additive_standardized": dict(coupling="additive", standardize=STANDARDIZE),
}


def randomize(flow: Flow, scale: float = 0.15, seed: int = 0) -> Flow:
    """Give each coupling's zero-initialised last layer random weights: a non-trivial flow."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in flow.layers:
            if hasattr(layer, "net"):
                for p in layer.net[-1].parameters():
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return flow


def make_flow(recipe: str, dtype: torch.dtype = torch.float64, n_layers: int = 4) -> Flow:
    torch.manual_seed(0)
    flow = realnvp(dim=2, n_layers=n_layers, hidden=(16, 16), **RECIPES[recipe])
    return randomize(flow).to(dtype)


def points(dtype: torch.dtype = torch.float64, n: int = 64) -> torch.Tensor:
    """Typical points, points far in the tails (|x| up to 10) and the corners of [-10, 10]^2."""
    gen = torch.Generator().manual_seed(1)
    typical = torch.randn(n, 2, generator=gen, dtype=dtype)
    tails = (torch.rand(n, 2, generator=gen, dtype=dtype) * 2 - 1) * 10
    corners = torch.tensor([[10, 10], [-10, 10], [10, -10], [-10, -10]], dtype=dtype)
    return torch.cat([typical, tails, corners])


def per_sample_logabsdet(fn, x: torch.Tensor) -> torch.Tensor:
    jac = torch.stack([jacobian(lambda v: fn(v.unsqueeze(0))[0].squeeze(0), xi) for xi in x])
    return torch.linalg.slogdet(jac).logabsdet


# --- exact invertibility and log-dets ------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("recipe", RECIPES)
def test_flow_inverse_undoes_forward_including_tails(recipe, dtype, tol):
    flow = make_flow(recipe, dtype)
    x = points(dtype)
    with torch.no_grad():
        z, ld_forward = flow(x)
        x_back, ld_inverse = flow.inverse(z)
        z_back, _ = flow(flow.inverse(x)[0])
    torch.testing.assert_close(x_back, x, atol=tol, rtol=tol)
    torch.testing.assert_close(z_back, x, atol=tol, rtol=tol)
    torch.testing.assert_close(ld_inverse, -ld_forward, atol=tol, rtol=tol)


@pytest.mark.parametrize("recipe", RECIPES)
def test_flow_forward_logdet_matches_autograd(recipe):
    flow = make_flow(recipe)
    x = points(n=5)[::4]
    _, log_det = flow(x)
    torch.testing.assert_close(log_det, per_sample_logabsdet(flow.forward, x), atol=1e-10, rtol=0)


@pytest.mark.parametrize("recipe", ["affine_standardized", "additive"])
def test_flow_inverse_logdet_matches_autograd(recipe):
    flow = make_flow(recipe)
    z = points(n=5)[::4]
    _, log_det = flow.inverse(z)
    torch.testing.assert_close(log_det, per_sample_logabsdet(flow.inverse, z), atol=1e-10, rtol=0)


def test_randomised_affine_flow_has_a_non_constant_logdet():
    """Guards the other tests: the flows they check are not (nearly) the identity."""
    _, log_det = make_flow("affine")(points())
    assert log_det.max() - log_det.min() > 0.3


def test_new_flow_without_standardize_is_the_standard_normal():
    flow = realnvp(n_layers=4, hidden=(16,)).double()
    x = points()
    z, log_det = flow(x)
    assert torch.equal(z, x) and torch.equal(log_det, torch.zeros(len(x), dtype=x.dtype))
    expected = -0.5 * (x**2).sum(1) - math.log(2 * math.pi)
    torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-12, rtol=0)


def test_standardize_layer_puts_log_prob_in_data_coordinates():
    """A new flow with standardize=(mean, std) is the Gaussian N(mean, diag(std^2))."""
    flow = realnvp(n_layers=2, hidden=(8,), standardize=STANDARDIZE).double()
    (m1, m2), (s1, s2) = STANDARDIZE
    x = points()
    expected = -0.5 * (((x[:, 0] - m1) / s1) ** 2 + ((x[:, 1] - m2) / s2) ** 2) - math.log(
        2 * math.pi * s1 * s2
    )
    torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("recipe", RECIPES)
def test_log_prob_integrates_to_one_over_the_plane(recipe):
    flow = make_flow(recipe)
    # Midpoint rule on [-10, 10]^2 with cells of side 0.2: the flow's mass outside the box
    # is < 1e-5 and the rule's error ~1e-4 for these smooth densities.
    edges = torch.linspace(-10, 10, 101, dtype=torch.float64)
    centres = (edges[1:] + edges[:-1]) / 2
    grid = torch.cartesian_prod(centres, centres)
    with torch.no_grad():
        total = flow.log_prob(grid).exp().sum().item() * 0.2**2
    assert abs(total - 1) < 1e-3


def test_standard_normal_log_prob_is_the_textbook_formula():
    z = torch.tensor([[0.0, 0.0], [1.0, -2.0]], dtype=torch.float64)
    expected = torch.tensor([-math.log(2 * math.pi), -math.log(2 * math.pi) - 2.5])
    torch.testing.assert_close(standard_normal_log_prob(z), expected.double())


# --- trace ---------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["affine_standardized", "additive"])
def test_trace_normalize_keeps_every_point_and_logdets_that_add_up_to_forward(recipe):
    flow = make_flow(recipe)
    x = points()
    trace = flow.trace(x, direction="normalize")
    z, log_det = flow(x)
    n_layers = len(flow.layers)
    assert trace.direction == "normalize"
    assert len(trace.points) == n_layers + 1 and len(trace.log_dets) == n_layers
    assert torch.equal(trace.points[0], x)
    torch.testing.assert_close(trace.points[-1], z, atol=1e-12, rtol=0)
    torch.testing.assert_close(sum(trace.log_dets), log_det, atol=1e-12, rtol=0)
    assert all(p.shape == (len(x), 2) for p in trace.points)
    assert all(ld.shape == (len(x),) for ld in trace.log_dets)


@pytest.mark.parametrize("recipe", ["affine_standardized", "additive"])
def test_trace_generate_keeps_every_point_and_logdets_that_add_up_to_inverse(recipe):
    flow = make_flow(recipe)
    z = points()
    trace = flow.trace(z)  # "generate" is the default
    x, log_det = flow.inverse(z)
    n_layers = len(flow.layers)
    assert trace.direction == "generate"
    assert len(trace.points) == n_layers + 1 and len(trace.log_dets) == n_layers
    assert torch.equal(trace.points[0], z)
    torch.testing.assert_close(trace.points[-1], x, atol=1e-12, rtol=0)
    torch.testing.assert_close(sum(trace.log_dets), log_det, atol=1e-12, rtol=0)


def test_trace_generate_applies_the_last_layer_first():
    flow = make_flow("affine_standardized")
    z = points()
    trace = flow.trace(z, "generate")
    first, first_ld = flow.layers[-1].inverse(z)
    assert torch.equal(trace.points[1], first) and torch.equal(trace.log_dets[0], first_ld)
    assert isinstance(flow.layers[0], Standardize)
    torch.testing.assert_close(trace.log_dets[-1], flow.layers[0].inverse(trace.points[-2])[1])


@pytest.mark.parametrize("direction", ["normalize", "generate"])
def test_trace_names_the_layer_that_produced_nan(direction):
    flow = make_flow("affine", n_layers=6)
    with torch.no_grad():
        flow.layers[3].net[-1].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteError) as err:
        flow.trace(points(), direction)
    message = str(err.value)
    assert "layer 3 (AffineCoupling)" in message
    assert "NaN or infinity" in message and direction in message
    assert "layer 3 (AffineCoupling)" in flow.first_non_finite_layer(points())


def test_first_non_finite_layer_is_none_for_a_healthy_flow():
    assert make_flow("affine").first_non_finite_layer(points()) is None


def test_trace_rejects_an_unknown_direction():
    with pytest.raises(ValueError, match='"generate" or "normalize"'):
        make_flow("affine").trace(points(), "backwards")


# --- sampling, dtype, device ---------------------------------------------------------------


def test_sample_with_a_seed_is_reproducible_and_in_the_flows_dtype():
    flow = make_flow("affine_standardized", torch.float32)
    a, b = flow.sample(100, seed=3), flow.sample(100, seed=3)
    assert torch.equal(a, b)
    assert a.shape == (100, 2) and a.dtype == torch.float32 and not a.requires_grad
    assert not torch.equal(a, flow.sample(100, seed=4))
    flow64 = flow.to(torch.float64)
    assert flow64.sample(10, seed=3).dtype == torch.float64


def test_sample_is_inverse_of_sample_base():
    flow = make_flow("affine")
    z = flow.sample_base(50, seed=7)
    torch.testing.assert_close(flow.sample(50, seed=7), flow.inverse(z)[0])
    torch.testing.assert_close(z.mean(0), torch.zeros(2, dtype=z.dtype), atol=0.5, rtol=0)


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_sample_rejects_a_count_that_is_not_a_positive_integer(n):
    with pytest.raises(ValueError, match="n must be a positive integer"):
        make_flow("affine").sample(n)


def test_to_float64_converts_every_weight_and_buffer():
    flow = realnvp(n_layers=2, hidden=(8,), standardize=STANDARDIZE)
    assert flow.dtype == torch.float32
    flow = flow.to(torch.float64)
    assert flow.dtype == torch.float64
    assert all(
        t.dtype == torch.float64 for t in flow.state_dict().values() if t.is_floating_point()
    )
    assert flow.log_prob(points()).dtype == torch.float64


def test_numpy_float64_statistics_make_a_float32_flow_that_works():
    np = pytest.importorskip("numpy")
    mean, std = np.array([0.5, -0.3]), np.array([1.2, 0.8])  # numpy's default: float64
    flow = realnvp(n_layers=2, hidden=(8,), standardize=(mean, std))
    assert flow.layers[0].mean.dtype == torch.float32
    assert flow.log_prob(points(torch.float32)).dtype == torch.float32


def test_device_property_says_where_the_weights_are():
    assert make_flow("affine").device == torch.device("cpu")
    empty = Flow([], dim=2)
    assert empty.device == torch.device("cpu") and empty.dtype == torch.float32
    x = points(torch.float32)
    assert torch.equal(empty(x)[0], x)


# --- recipes -------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", RECIPES)
def test_from_config_rebuilds_the_same_architecture(recipe):
    flow = realnvp(n_layers=3, hidden=(16, 8), scale_bound=2.0, **RECIPES[recipe])
    config = json.loads(json.dumps(flow.config))  # a recipe is plain JSON
    rebuilt = from_config(config)
    assert rebuilt.config == flow.config
    shapes = {k: v.shape for k, v in flow.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    assert [type(layer) for layer in rebuilt.layers] == [type(layer) for layer in flow.layers]
    rebuilt.load_state_dict(flow.state_dict())  # so the weights fit the rebuilt flow
    if recipe.startswith("affine"):
        assert all(
            layer.scale_bound == 2.0
            for layer in rebuilt.layers
            if isinstance(layer, AffineCoupling)
        )


def test_realnvp_alternates_which_half_is_copied():
    flow = realnvp(dim=4, n_layers=3, hidden=(8,))
    assert [layer.idx_a.tolist() for layer in flow.layers] == [[0, 1], [2, 3], [0, 1]]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(dim=1), "dim >= 2"),
        (dict(dim=0), "dim must be a positive integer"),
        (dict(n_layers=0), "n_layers must be a positive integer"),
        (dict(hidden=[]), "hidden must be a non-empty list"),
        (dict(hidden=[16, 0]), "widths >= 1"),
        (dict(hidden=128), "hidden must be a list of layer widths"),
        (dict(coupling="spline"), "coupling must be one of ('affine', 'additive')"),
        (dict(scale_bound=-1.0), "scale_bound must be a finite number > 0, or None"),
        (dict(standardize=([0.0, 0.0], [1.0, 0.0])), "std > 0"),
    ],
)
def test_realnvp_rejects_a_bad_recipe_saying_what_is_wrong(kwargs, words):
    with pytest.raises(ValueError) as err:
        realnvp(**kwargs)
    assert words in str(err.value)


@pytest.mark.parametrize(
    "config, words",
    [
        ("realnvp", "unknown flow recipe"),
        ({"builder": "glow", "dim": 2}, "flowedu can rebuild flows made by flowedu.realnvp(...)"),
        ({"builder": "realnvp", "dim": 2, "depth": 3}, "unexpected fields"),
        ({"builder": "realnvp", "dim": 1}, "dim >= 2"),
    ],
)
def test_from_config_rejects_a_recipe_it_cannot_rebuild(config, words):
    with pytest.raises(ValueError) as err:
        from_config(config)
    assert words in str(err.value)


def test_flow_rejects_points_of_the_wrong_dimension():
    flow = make_flow("affine")
    with pytest.raises(ValueError, match=r"expected x of shape \(batch, 2\), got \(5, 3\)"):
        flow.log_prob(torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected z of shape \(batch, 2\), got \(2,\)"):
        flow.inverse(torch.zeros(2, dtype=torch.float64))


def test_a_recipe_records_every_argument_of_its_builder_defaults_included():
    import inspect

    flow = realnvp(n_layers=3, hidden=(16, 8))
    params = inspect.signature(realnvp).parameters
    assert set(flow.config) == {"builder", *params}
    assert flow.config["hidden"] == [16, 8] and flow.config["n_layers"] == 3
    assert flow.config["scale_bound"] == params["scale_bound"].default


def test_the_builders_table_names_each_builder_by_its_own_recipe_name():
    from flowedu.recipes import BUILDERS, SHIPPED

    for name, builder in BUILDERS.items():
        assert builder.recipe_name == name
    for builder, _ in SHIPPED.values():
        assert BUILDERS[builder.recipe_name] is builder  # a family may name its recipe otherwise
