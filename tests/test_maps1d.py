"""Specification of flowedu.maps1d: 1D bijections x = f(z) and Eq. 1,
p(x) = p_Z(f^-1(x)) |d f^-1(x)/dx|."""

import math
from contextlib import contextmanager

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal

from flowedu.maps1d import (
    MAPS,
    Affine,
    Cubic,
    Exp,
    Logistic,
    Tanh,
    make_map,
    map_params,
    pushforward_density,
    pushforward_log_density,
    sample_pushforward,
)

NAMES = list(MAPS)
F64 = torch.float64


def assert_close(actual, expected, rtol=1.3e-6, atol=1e-5):
    """|actual - expected| <= atol + rtol |expected| everywhere (torch.testing.assert_close's
    rule, without its import time)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = (actual - expected).abs() - (atol + rtol * expected.abs())
    assert (err <= 0).all(), f"off by up to {err.max().item():.3g} beyond the tolerance"


@contextmanager
def default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def make64(name, **params):
    """A map with float64 parameters: built under a float64 default dtype, since .double()
    afterwards would keep values already rounded to float32 (0.2 -> 0.2000000030)."""
    with default_dtype(F64):
        return make_map(name, **params)


def is_bounded(m) -> bool:
    return all(math.isfinite(v) for v in m.range_bounds)


def x_grid(m, n: int = 401, dtype=F64) -> torch.Tensor:
    """Points spread over the range of m, tails included: (n,)."""
    low, high = m.range_bounds
    if math.isinf(low) and math.isinf(high):
        return torch.linspace(-10, 10, n, dtype=dtype)
    if math.isinf(high):
        return low + torch.logspace(-4, 4, n, dtype=dtype)
    return low + (high - low) * torch.linspace(1e-6, 1 - 1e-6, n, dtype=dtype)


def z_tail(m, dtype) -> float:
    """How far out in z a round trip z -> x -> z is well posed in this dtype. A bounded map
    squeezes its tails against the edge: 1 - tanh(10) = 4e-9 keeps only ~7 digits of z in
    float64, so no inverse can recover z to 1e-10 there."""
    if not is_bounded(m):
        return 10.0
    if dtype == F64:
        return 10.0 if isinstance(m, Logistic) else 5.0
    return 2.0


@pytest.mark.parametrize("name", NAMES)
def test_each_map_inverse_undoes_forward_float64_to_1e_10_including_tails(name):
    m = make64(name)
    x = x_grid(m)[:, None]  # (n, 1)
    z, _ = m(x)
    x_back, _ = m.inverse(z)
    assert_close(x_back, x, rtol=1e-10, atol=1e-10)
    t = z_tail(m, F64)
    z = torch.linspace(-t, t, 401, dtype=F64)[:, None]
    assert_close(m(m.inverse(z)[0])[0], z, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_each_map_inverse_undoes_forward_float32_to_1e_5(name):
    m = make_map(name)
    x = x_grid(m, dtype=torch.float32)[:, None]
    assert_close(m.inverse(m(x)[0])[0], x, rtol=1e-5, atol=1e-5)
    t = z_tail(m, torch.float32)
    z = torch.linspace(-t, t, 401)[:, None]
    assert_close(m(m.inverse(z)[0])[0], z, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("a, b", [(0.2, 1.0), (1e-3, 1.0), (1.0, 1e-6), (2.0, 0.0), (5.0, 3.0)])
def test_cubic_closed_form_round_trip_float64_to_1e_10_up_to_abs_x_10(a, b):
    with default_dtype(F64):
        m = Cubic(a, b)
    x = torch.linspace(-10, 10, 2001, dtype=F64)
    z = a * x + b * x**3  # the defining f^-1
    assert_close(m.f_inv(x), z, rtol=1e-12, atol=1e-12)
    assert_close(m.f(z), x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_each_map_derivative_matches_autograd(name):
    m = make64(name)
    z = torch.linspace(-4, 4, 201, dtype=F64, requires_grad=True)
    (dx_dz,) = torch.autograd.grad(m.f(z).sum(), z)
    z = z.detach()
    assert_close(m.df(z), dx_dz, rtol=1e-10, atol=1e-12)
    assert_close(m.log_abs_df(z), dx_dz.abs().log(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_log_abs_df_inv_is_minus_log_abs_df_at_the_preimage(name):
    m = make64(name)
    x = x_grid(m)
    assert_close(m.log_abs_df_inv(x), -m.log_abs_df(m.f_inv(x)), rtol=1e-9, atol=1e-9)


def test_log_abs_df_stays_finite_where_df_overflows_or_underflows():
    z = torch.tensor([-800.0, 800.0], dtype=F64)
    for name in ["sinh", "tanh", "logistic"]:
        m = make64(name)
        assert not torch.isfinite(m.df(z).log()).all(), name  # the naive way fails ...
        assert torch.isfinite(m.log_abs_df(z)).all(), name  # ... the stable one does not
    assert_close(Exp().log_abs_df(z), z)


@pytest.mark.parametrize("name", NAMES)
def test_forward_inverse_log_dets_are_negatives(name):
    m = make64(name)
    x = x_grid(m, 101)[:, None]
    z, log_det_fwd = m(x)
    _, log_det_inv = m.inverse(z)
    assert z.shape == (101, 1) and log_det_fwd.shape == log_det_inv.shape == (101,)
    assert_close(log_det_fwd, -log_det_inv, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_forward_log_det_is_the_eq1_correction(name):
    # log p(x) = log N(z; 0, 1) + log_det, with z, log_det = map(x): the flow convention.
    m = make64(name)
    x = x_grid(m, 101)[:, None]
    z, log_det = m(x)
    log_p = Normal(0.0, 1.0).log_prob(z[:, 0]) + log_det
    assert_close(log_p, pushforward_log_density(m, x[:, 0]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_pushforward_density_integrates_to_one(name):
    m = make64(name)
    # Nodes x = f(z) for z in [-9, 9] put points where the mass is (the tails beyond hold
    # 2e-19); the density itself is computed from x alone, by Eq. 1.
    x = m.f(torch.linspace(-9, 9, 20001, dtype=F64))
    if is_bounded(m):  # add the stretch up to the edges, where p -> 0
        low, high = m.range_bounds
        x = torch.cat([torch.tensor([low + 1e-12]), x, torch.tensor([high - 1e-12])])
    total = torch.trapezoid(pushforward_density(m, x), x)
    assert abs(total.item() - 1) < 1e-3


@pytest.mark.parametrize("name", ["logistic", "tanh", "affine", "cubic"])
def test_pushforward_density_integrates_to_one_on_a_uniform_grid(name):
    m = make64(name)
    low, high = m.range_bounds
    low, high = max(low, -20.0), min(high, 20.0)
    x = torch.linspace(low, high, 30_001, dtype=F64)
    assert abs(torch.trapezoid(pushforward_density(m, x), x).item() - 1) < 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_histogram_of_pushed_samples_matches_density(name):
    m = make64(name)
    n, n_bins = 30_000, 20
    x = sample_pushforward(m, n, seed=0, base=Normal(torch.tensor(0.0, dtype=F64), 1.0))
    low, high = torch.quantile(x, torch.tensor([0.02, 0.98], dtype=F64)).tolist()
    edges = torch.linspace(low, high, n_bins + 1, dtype=F64)
    counts = torch.histc(x, n_bins, low, high)
    # Expected mass of each bin: integrate Eq. 1 over it with 21 points.
    fine = edges[:-1, None] + (edges[1:] - edges[:-1])[:, None] * torch.linspace(
        0, 1, 21, dtype=F64
    )
    mass = torch.trapezoid(pushforward_density(m, fine), fine, dim=1)  # (n_bins,)
    sigma = (n * mass * (1 - mass)).sqrt()
    assert ((counts - n * mass).abs() < 5 * sigma + 1).all()


def test_cubic_with_small_a_makes_the_normal_bimodal():
    m = Cubic(a=0.2, b=1.0)
    p = pushforward_density(m, torch.tensor([-0.6, 0.0, 0.6]))
    assert p[1] < 0.5 * p[0] and p[1] < 0.5 * p[2]


def test_decreasing_affine_needs_the_absolute_value():
    with default_dtype(F64):
        m = Affine(scale=-2.0, shift=1.0)
    x = torch.linspace(-15, 15, 30001, dtype=F64)
    assert (m.df(x) < 0).all()
    p_z = Normal(0.0, 1.0).log_prob(m.f_inv(x)).exp()
    without_abs = p_z / m.df(m.f_inv(x))  # p_Z(f^-1(x)) / f'(.), forgetting |.|
    assert torch.trapezoid(without_abs, x).item() == pytest.approx(-1, abs=1e-6)
    assert torch.trapezoid(pushforward_density(m, x), x).item() == pytest.approx(1, abs=1e-6)


def test_density_outside_the_range_is_zero_not_an_error():
    x = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0])
    assert pushforward_density(Logistic(), x).tolist()[:2] == [0.0, 0.0]
    assert pushforward_density(Logistic(), x)[3:].tolist() == [0.0, 0.0]
    assert pushforward_log_density(Exp(), x)[:2].tolist() == [-math.inf, -math.inf]
    assert pushforward_density(Exp(), x)[2:].gt(0).all()


def test_f_inv_outside_range_is_refused():
    with pytest.raises(ValueError, match=r"^Exp: f_inv needs x > 0; got min x = -0.3$"):
        Exp().f_inv(torch.tensor([-0.3, 1.0]))
    with pytest.raises(ValueError, match=r"Logistic: f_inv needs 0 < x < 1; got max x = 1.5"):
        Logistic().f_inv(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"Tanh: forward needs|Tanh: f_inv needs -2 < x < 2"):
        Tanh(2.0)(torch.tensor([[0.0], [-3.0]]))


def test_unknown_map_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown map 'spline'; valid names:") as err:
        make_map("spline")
    assert all(name in str(err.value) for name in NAMES)


def test_zero_scale_is_refused_with_reason():
    msg = "scale must be nonzero: scale 0 squashes every z to one point and has no inverse"
    with pytest.raises(ValueError, match=msg):
        make_map("affine", scale=0)


def test_bad_parameters_and_inputs_say_what_to_do():
    with pytest.raises(ValueError, match="map 'affine' has no parameter sclae; it takes scale"):
        make_map("affine", sclae=2.0)
    with pytest.raises(ValueError, match="Tanh: scale must be > 0, got -1"):
        make_map("tanh", scale=-1)
    with pytest.raises(ValueError, match="Cubic: b must be >= 0"):
        Cubic(1.0, -0.5)
    with pytest.raises(TypeError, match="Sinh: a must be a real number, got str"):
        make_map("sinh", a="1")
    with pytest.raises(ValueError, match=r"expected x of shape \(batch, 1\), got \(3,\)"):
        Exp()(torch.ones(3))
    with pytest.raises(ValueError, match="x contains NaN at 2 positions; clean the input first"):
        Exp().f_inv(torch.tensor([1.0, math.nan, math.nan]))
    with pytest.raises(ValueError, match="Exp.f: the result overflows torch.float32"):
        Exp().f(torch.tensor([100.0]))


def test_registry_knows_each_maps_parameters_and_teaching_defaults():
    assert map_params("affine") == {"scale": 2.0, "shift": 1.0}
    assert map_params("exp") == {}
    for name in NAMES:
        m = make_map(name, **map_params(name))
        assert isinstance(m, torch.nn.Module) and m.domain == "all real z"
    assert make_map("Exp").range == "x > 0" and make_map("logistic").range == "0 < x < 1"


def test_sample_pushforward_is_reproducible_and_leaves_the_global_stream_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = sample_pushforward(make_map("cubic"), 1000, seed=7)
    assert torch.rand(1) == expected_next
    assert a.shape == (1000,) and torch.equal(
        a, sample_pushforward(make_map("cubic"), 1000, seed=7)
    )


def test_parameters_are_learnable_by_maximum_likelihood():
    # Fit x = scale * z + shift to N(3, 0.5^2) data by plain gradient descent on the NLL;
    # the maximum likelihood answer is the sample mean and sd.
    gen = torch.Generator().manual_seed(0)
    data = (3 + 0.5 * torch.randn(2000, 1, generator=gen)).double()
    with default_dtype(F64):
        m = Affine(1.0, 0.0)
    for _ in range(300):
        z, log_det = m(data)
        nll = -(Normal(0.0, 1.0).log_prob(z[:, 0]) + log_det).mean()
        grads = torch.autograd.grad(nll, list(m.parameters()))
        with torch.no_grad():
            for p, g in zip(m.parameters(), grads, strict=True):
                p -= 0.1 * g
    assert m.shift.item() == pytest.approx(data.mean().item(), abs=1e-4)
    assert m.scale.item() == pytest.approx(data.std(unbiased=False).item(), abs=1e-4)


# --- property test ----------------------------------------------------------------------

PARAM_VALUES = st.one_of(
    st.floats(-1e3, 1e3),
    st.floats(1e-3, 1e3),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, math.nan, math.inf, -math.inf, True, "2", None]),
)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_random_maps_and_inputs_give_a_clear_error_or_a_finite_invertible_result(data):
    name = data.draw(st.sampled_from(NAMES))
    params = {p: data.draw(PARAM_VALUES) for p in map_params(name) if data.draw(st.booleans())}
    dtype = data.draw(st.sampled_from([torch.float32, F64]))
    width = 32 if dtype == torch.float32 else 64
    values = data.draw(st.lists(st.floats(-20, 20, width=width), min_size=1, max_size=6))
    if data.draw(st.booleans()):  # and sometimes one extreme value: huge, tiny, inf or NaN
        values.append(data.draw(st.floats(width=width)))
    try:
        m = make_map(name, **params).to(dtype)
        z = torch.tensor(values, dtype=dtype)
        x = m.f(z)
        z_back = m.f_inv(x)
        x_back = m.f(z_back)
    except (ValueError, TypeError) as err:
        assert ":" in str(err) and len(str(err)) > 20  # says who complained and why
        return
    assert torch.isfinite(x).all() and torch.isfinite(z_back).all()
    # f(f^-1(x)) = x up to rounding, amplified at most by the parameters' size.
    eps = torch.finfo(dtype).eps
    size = 1 + max([abs(float(v)) for v in params.values()] + [0.0])
    assert ((x_back - x).abs() <= 1e4 * eps * size * (1 + x.abs())).all()
