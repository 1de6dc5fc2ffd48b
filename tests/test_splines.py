"""The monotone rational-quadratic spline: a bijection, smooth at its knots, safe to train."""

from __future__ import annotations

import math

import pytest
import torch

from flowedu import maps1d
from flowedu.splines import RQSpline, rq_spline, spline_knots


def random_spline(n_bins=8, bound=3.0, seed=0, scale=1.0, dtype=torch.float64) -> RQSpline:
    spline = RQSpline(n_bins, bound).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in spline.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=dtype))
    return spline


def test_zero_parameters_give_the_identity_everywhere():
    spline = RQSpline(16, 4.0)
    z = torch.linspace(-8, 8, 1001)
    assert torch.allclose(spline.f(z), z, atol=1e-6)
    assert torch.allclose(spline.log_abs_df(z), torch.zeros_like(z), atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_the_spline_is_strictly_increasing(seed):
    spline = random_spline(seed=seed, scale=2.0)
    z = torch.linspace(-5, 5, 200_001, dtype=torch.float64)
    x = spline.f(z).detach()
    assert (x[1:] > x[:-1]).all()
    assert (spline.df(z) > 0).all()


@pytest.mark.parametrize("seed", range(5))
def test_value_and_slope_are_continuous_at_every_knot(seed):
    spline = random_spline(seed=seed, scale=2.0)
    xs, ys, ds = spline.knots()
    eps = 1e-12
    with torch.no_grad():
        assert torch.allclose(spline.f(xs), ys, atol=1e-12)  # the spline passes its knots
        for side in (-eps, eps):
            near = xs + side
            assert torch.allclose(spline.f(near), ys + side * ds, atol=1e-13)  # value and slope
            assert torch.allclose(spline.df(near), ds, rtol=1e-5)
    assert ds[0] == 1 and ds[-1] == 1  # the end slopes meet the identity tails


@pytest.mark.parametrize("seed", range(3))
def test_the_derivative_matches_autograd(seed):
    spline = random_spline(seed=seed, scale=1.5)
    z = torch.linspace(-4, 4, 5001, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(spline.f(z).sum(), z)
    assert torch.allclose(spline.df(z), grad, rtol=1e-10, atol=1e-12)
    x = spline.f(z).detach().requires_grad_()
    (grad_inv,) = torch.autograd.grad(spline.f_inv(x).sum(), x)
    assert torch.allclose(spline.log_abs_df_inv(x), grad_inv.log(), atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_the_inverse_is_exact_to_float64_precision_and_log_dets_cancel(seed):
    spline = random_spline(seed=seed, scale=2.0)
    z = 3 * torch.randn(100_000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = spline.f(z)
        assert (spline.f_inv(x) - z).abs().max() < 1e-12
        assert (spline.log_abs_df(z) + spline.log_abs_df_inv(x)).abs().max() < 1e-10


def test_points_outside_the_bound_are_left_alone_and_get_log_det_zero():
    spline = random_spline(bound=2.0, scale=2.0)
    z = torch.tensor([-1e6, -50.0, -2.0 - 1e-12, 2.0 + 1e-12, 7.5, 1e6], dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(spline.f(z), z)
        assert torch.equal(spline.f_inv(z), z)
        assert torch.equal(spline.log_abs_df(z), torch.zeros_like(z))
    # at the bound itself the spline meets its tails
    b = torch.tensor([-2.0, 2.0], dtype=torch.float64)
    assert torch.allclose(spline.f(b), b, atol=1e-14)


@pytest.mark.parametrize("inverse", [False, True])
def test_a_batch_entirely_outside_gives_zero_finite_gradients(inverse):
    spline = random_spline(bound=3.0, scale=3.0, dtype=torch.float32)
    u = torch.cat([torch.full((500,), -40.0), torch.full((500,), 3.0001)]).requires_grad_()
    w, h, d = spline._params_for(u)
    v, log_det = rq_spline(u, w, h, d, 3.0, inverse=inverse)
    (v.sum() + log_det.sum()).backward()
    for p in spline.parameters():
        assert torch.isfinite(p.grad).all() and (p.grad == 0).all()
    assert torch.equal(u.grad, torch.ones_like(u))


@pytest.mark.parametrize("inverse", [False, True])
def test_a_million_float32_inputs_give_no_nan_or_inf_in_value_or_gradient(inverse):
    """Per-point parameters as a network would give them, some extreme; inputs spread over
    the whole line, many just inside or just past the last knot (the known pitfalls: a
    slightly negative discriminant in float32, inputs at the last knot)."""
    gen = torch.Generator().manual_seed(7)
    n, k, bound = 1_000_000, 16, 4.0
    raw = [(torch.randn(n, m, generator=gen) * 4).requires_grad_() for m in (k, k, k - 1)]
    edge = (
        bound
        * (1 - torch.rand(n // 4, generator=gen) * 1e-6)
        * torch.sign(torch.randn(n // 4, generator=gen))
    )
    past = bound + torch.rand(n // 4, generator=gen) * 1e-5
    u = torch.cat([torch.randn(n // 2, generator=gen) * 4, edge, past]).requires_grad_()
    v, log_det = rq_spline(u, *raw, bound, inverse=inverse)
    assert torch.isfinite(v).all() and torch.isfinite(log_det).all()
    (v.sum() + log_det.sum()).backward()
    for t in (u, *raw):
        assert torch.isfinite(t.grad).all()


def test_float32_round_trips_for_network_like_parameters():
    """Per-point parameters of the size a trained network gives. Where the spline is nearly
    flat, u cannot be recovered from a float32 v by any method (in a bin of slope 2e-5, v
    moves by less than its rounding when u moves by 1e-3), so u -> v -> u is checked in
    units of v, |u' - u| f'(u) < 1e-5, and v -> u -> v directly, within 1e-5."""
    gen = torch.Generator().manual_seed(3)
    n, k = 200_000, 16
    raw = [torch.randn(n, m, generator=gen) for m in (k, k, k - 1)]
    u = torch.rand(n, generator=gen) * 8 - 4
    v, ld = rq_spline(u, *raw, 4.0)
    back, _ = rq_spline(v, *raw, 4.0, inverse=True)
    assert ((back - u).abs() * ld.exp()).max() < 1e-5
    again, _ = rq_spline(back, *raw, 4.0)
    assert (again - v).abs().max() < 1e-5


def test_eq1_the_pushforward_density_integrates_to_one_and_matches_the_samples():
    """Eq. 1: p(x) = N(f^-1(x)) |df^-1/dx| integrates to 1; over each bin of a histogram it
    integrates to Phi(f^-1(b)) - Phi(f^-1(a)); and samples f(z) fill the bins so."""
    spline = random_spline(seed=4, scale=1.5)
    x = torch.linspace(-12, 12, 240_001, dtype=torch.float64)
    p = maps1d.pushforward_density(spline, x).detach()
    assert abs(torch.trapezoid(p, x).item() - 1) < 1e-6
    edges = torch.linspace(-3, 3, 41, dtype=torch.float64)
    with torch.no_grad():
        cdf = torch.special.ndtr(spline.f_inv(edges))
    exact = cdf[1:] - cdf[:-1]
    for i in range(40):
        grid = torch.linspace(edges[i], edges[i + 1], 2001, dtype=torch.float64)
        mass = torch.trapezoid(maps1d.pushforward_density(spline, grid).detach(), grid)
        assert abs(mass - exact[i]) < 1e-6
    samples = maps1d.sample_pushforward(spline, 400_000, seed=0)
    counts, _ = torch.histogram(samples.double(), bins=edges)
    expected = exact * len(samples)
    assert ((counts - expected).abs() < 5 * expected.sqrt() + 1).all()  # Poisson, 5 sd


def test_the_flow_layer_interface_of_the_1d_maps():
    spline = random_spline(seed=2)
    x = torch.randn(64, 1, dtype=torch.float64)
    z, log_det = spline(x)
    back, log_det_back = spline.inverse(z)
    assert z.shape == (64, 1) and log_det.shape == (64,)
    assert torch.allclose(back, x, atol=1e-12)
    assert torch.allclose(log_det, -log_det_back, atol=1e-12)


def test_from_knots_builds_the_spline_through_the_given_knots():
    xs = torch.tensor([-3.0, -1.0, 0.5, 3.0], dtype=torch.float64)
    ys = torch.tensor([-3.0, 0.0, 1.0, 3.0], dtype=torch.float64)
    slopes = torch.tensor([2.0, 0.3], dtype=torch.float64)
    torch.set_default_dtype(torch.float64)
    try:
        spline = RQSpline.from_knots(xs, ys, slopes)
    finally:
        torch.set_default_dtype(torch.float32)
    kx, ky, kd = spline.knots()
    assert torch.allclose(kx, xs, atol=1e-12) and torch.allclose(ky, ys, atol=1e-12)
    assert torch.allclose(kd, torch.tensor([1.0, 2.0, 0.3, 1.0], dtype=torch.float64))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([-3, 1, 0, 3], [-3, 0, 1, 3], [1, 1]), "x_knots must increase"),
        (([-3, -1, 0, 3], [-3, 0, 1, 2], [1, 1]), "y_knots must run from -3 to 3"),
        (([-3, -1, 0, 3], [-3, 0, 1, 3], [1, -1]), "slopes must be >"),
        (([-3, -1, 0, 3], [-3, 0, 1, 3], [1]), "K - 1 inner slopes"),
    ],
)
def test_from_knots_refuses_knots_that_make_no_monotone_spline(args, message):
    with pytest.raises(ValueError, match=message):
        RQSpline.from_knots(*args)


def test_bad_parameters_and_shapes_are_refused_clearly():
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        RQSpline(0)
    with pytest.raises(ValueError, match="bound must be a finite number > 0"):
        RQSpline(4, bound=-1.0)
    u = torch.zeros(5)
    with pytest.raises(ValueError, match="slopes of K - 1"):
        rq_spline(u, torch.zeros(5, 4), torch.zeros(5, 4), torch.zeros(5, 4), 3.0)
    with pytest.raises(ValueError, match=r"widths must have shape \(5, 4\)"):
        rq_spline(u, torch.zeros(4), torch.zeros(5, 4), torch.zeros(5, 3), 3.0)
    with pytest.raises(ValueError, match="NaN"):
        RQSpline(4).f(torch.tensor([0.0, math.nan]))


def test_knot_helper_gives_increasing_knots_from_minus_b_to_b():
    gen = torch.Generator().manual_seed(0)
    w, h, d = (torch.randn(10, m, generator=gen) * 5 for m in (6, 6, 5))
    xs, ys, ds = spline_knots(w, h, d, 2.5)
    for t in (xs, ys):
        assert (t[:, 0] == -2.5).all() and (t[:, -1] == 2.5).all()
        assert ((t[:, 1:] - t[:, :-1]) > 0).all()
    assert (ds > 0).all()


# --- the spline coupling and the spline_flow recipe ------------------------------------------


def test_the_coupling_network_sees_x_a_clipped_to_the_bound():
    """Far outside [-B, B], x_a feeds the network the same value as at the bound: the
    spline's parameters, and so z_b, stop changing, and the inverse is the same as there."""
    from flowedu.couplings import half_mask
    from flowedu.spline_flow import SplineCoupling

    torch.manual_seed(0)
    layer = SplineCoupling(half_mask(2), (32, 32), n_bins=8, bound=3.0)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn(p.shape))
        x_b = torch.linspace(-2.5, 2.5, 50).unsqueeze(1)
        at_bound = torch.cat([torch.full_like(x_b, 3.0), x_b], dim=1)
        far = torch.cat([torch.full_like(x_b, 3.0e4), x_b], dim=1)
        z_bound, ld_bound = layer(at_bound)
        z_far, ld_far = layer(far)
        assert torch.equal(z_far[:, 1], z_bound[:, 1]) and torch.equal(ld_far, ld_bound)
        back_far, back_bound = layer.inverse(z_far)[0], layer.inverse(z_bound)[0]
        assert torch.equal(back_far[:, 1], back_bound[:, 1])
        assert torch.equal(back_far[:, 0], far[:, 0])
        assert (back_far - far).abs().max() < 1e-4


def test_spline_flow_recipe_rebuilds_itself_and_has_the_stated_size():
    from flowedu import recipes
    from flowedu.spline_flow import spline_flow

    flow = spline_flow(standardize=([0.0, 1.0], [2.0, 0.5]))
    assert flow.config["builder"] == "spline_flow" and flow.config["n_bins"] == 16
    assert sum(p.numel() for p in flow.parameters()) == 136_986  # 6 x (1-128-128-47)
    again = recipes.from_config(flow.config)
    again.load_state_dict(flow.state_dict())
    x = torch.randn(100, 2)
    with torch.no_grad():
        assert torch.equal(again.log_prob(x), flow.log_prob(x))
    assert [layer.kind for layer in flow.layers] == ["standardize"] + ["coupling"] * 6
    assert flow.layers[1].describe() == "bends with a spline y, given x"
    assert flow.layers[2].describe() == "bends with a spline x, given y"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dim=1), "dim >= 2"),
        (dict(n_bins=0), "n_bins must be a positive integer"),
        (dict(bound=0.0), "bound must be a finite number > 0"),
        (dict(hidden=[]), "hidden must be a non-empty list"),
    ],
)
def test_spline_flow_refuses_bad_recipes(kwargs, message):
    from flowedu.spline_flow import spline_flow

    with pytest.raises(ValueError, match=message):
        spline_flow(**kwargs)
