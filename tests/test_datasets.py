"""Specification of flowedu.datasets: FFJORD's eight toy sets, their densities and entropies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowedu import datasets

EXACT = ("checkerboard", "8gaussians", "circles", "rings", "pinwheel")

# The table's own standard errors (the entropies are Monte-Carlo estimates).
TABLE_ERROR = {
    "checkerboard": 0,
    "8gaussians": 1e-4,
    "circles": 8e-4,
    "rings": 9e-4,
    "pinwheel": 6e-4,
}


def test_names_are_ffjords_eight_sets():
    assert datasets.NAMES == (
        "checkerboard",
        "8gaussians",
        "circles",
        "rings",
        "moons",
        "swissroll",
        "2spirals",
        "pinwheel",
    )


@pytest.mark.parametrize("name", datasets.NAMES)
def test_sample_has_shape_n_by_2_and_dtype(name):
    x = datasets.sample(name, 7, seed=0)  # 7: not a multiple of any component count
    assert x.shape == (7, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert datasets.sample(name, 7, seed=0, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("name", datasets.NAMES)
def test_same_seed_same_sample_and_different_seed_differs(name):
    a = datasets.sample(name, 100, seed=1)
    assert torch.equal(a, datasets.sample(name, 100, seed=1))
    assert not torch.equal(a, datasets.sample(name, 100, seed=2))
    assert not torch.equal(datasets.sample(name, 100), datasets.sample(name, 100))


def test_sampling_leaves_global_random_state_alone():
    torch.manual_seed(0)
    np.random.seed(0)
    expected = (torch.rand(3), np.random.rand(3))
    torch.manual_seed(0)
    np.random.seed(0)
    datasets.sample("moons", 10)
    datasets.sample("moons", 10, seed=5)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])


def test_unknown_name_error_lists_valid_names():
    with pytest.raises(ValueError, match="did you mean 'moons'") as error:
        datasets.sample("moon", 10)
    for name in datasets.NAMES:
        assert name in str(error.value)
    for call in (datasets.entropy, lambda n: datasets.log_density(n, torch.zeros(1, 2))):
        with pytest.raises(ValueError, match="valid names"):
            call("spirals")


@pytest.mark.parametrize("n", [0, -5, 2.5, True, "100", None])
def test_bad_n_is_rejected(n):
    with pytest.raises(ValueError, match="n must be a positive integer"):
        datasets.sample("moons", n)


def test_non_float_dtype_is_rejected():
    with pytest.raises(TypeError, match="floating-point"):
        datasets.sample("moons", 10, dtype=torch.int64)


def test_checkerboard_points_lie_on_the_eight_squares():
    x = datasets.sample("checkerboard", 8000, seed=0)
    assert x.abs().max() <= 4
    # Unscaled, the board's filled unit squares [i, i+1] x [j, j+1] are those with i + j even.
    square = torch.floor(x / 2).long() + 2  # (n, 2), indices 0..3
    assert ((square.sum(dim=1) % 2) == 0).all()
    counts = torch.bincount(square[:, 0] * 4 + square[:, 1], minlength=16)
    filled = counts[counts > 0]
    assert len(filled) == 8
    assert ((filled / 8000 - 1 / 8).abs() < 0.02).all()  # all eight equally likely


def test_checkerboard_density_is_one_over_32_on_the_squares_and_zero_off_them():
    on = torch.tensor([[1.0, 1.0], [-3.0, 1.0], [2.0, 0.0], [-4.0, -4.0]])  # incl. edges
    off = torch.tensor([[-1.0, 1.0], [1.0, -1.0], [5.0, 0.0]])
    assert torch.allclose(datasets.log_density("checkerboard", on), torch.tensor(-math.log(32)))
    assert torch.isinf(datasets.log_density("checkerboard", off)).all()


def test_8gaussians_has_eight_clusters_at_stated_centres():
    x = datasets.sample("8gaussians", 16000, seed=0, dtype=torch.float64)
    angle = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    centres = 4 * torch.stack([angle.cos(), angle.sin()], dim=1) / 1.414
    nearest = torch.cdist(x, centres).argmin(dim=1)
    for k in range(8):
        cluster = x[nearest == k]
        assert abs(len(cluster) / 16000 - 1 / 8) < 0.015
        assert torch.allclose(cluster.mean(dim=0), centres[k], atol=0.03)
    offsets = x - centres[nearest]  # (n, 2): each point's gaussian noise
    assert offsets.std(dim=0) == pytest.approx([0.5 / 1.414] * 2, abs=0.01)


def test_rings_radii_histogram_has_four_peaks():
    radius = datasets.sample("rings", 20000, seed=0, dtype=torch.float64).norm(dim=1)
    counts = torch.histc(radius, bins=80, min=0.0, max=4.0)  # bins of width 0.05
    middle = (torch.arange(80) + 0.5) * 0.05
    is_peak = (counts[1:-1] > counts[:-2]) & (counts[1:-1] >= counts[2:]) & (counts[1:-1] > 200)
    assert torch.allclose(middle[1:-1][is_peak], torch.tensor([0.75, 1.5, 2.25, 3.0]), atol=0.06)
    # Equally likely rings, radial noise sd 0.08.
    ring = torch.round(radius / 0.75).clamp(1, 4)
    assert (torch.bincount(ring.long())[1:] / 20000 - 0.25).abs().max() < 0.02
    assert abs((radius - 0.75 * ring).std().item() - 0.08) < 0.005


def test_moons_and_circles_have_stated_geometry():
    radius = datasets.sample("circles", 20000, seed=0, dtype=torch.float64).norm(dim=1)
    outer = radius > 2.25
    assert abs(outer.double().mean().item() - 0.5) < 0.02
    assert abs(radius[outer].mean().item() - 3.0) < 0.02  # ring of radius 3, noise sd 0.24
    assert abs(radius[~outer].mean().item() - 1.5) < 0.03
    assert abs(radius[outer].std().item() - 0.24) < 0.01

    # Moons: upper (cos t, sin t) and lower (1 - cos t, 1/2 - sin t), * 2 + (-1, -0.2).
    # Mean (1/2, 1/4) before scaling, so (0, 0.3) after. Without noise the moons span
    # [-3, 3] x [-1.2, 1.8]; noise of sd 0.2 (after scaling) widens that by under 1.
    x = datasets.sample("moons", 20000, seed=0, dtype=torch.float64)
    assert torch.allclose(x.mean(dim=0), torch.tensor([0.0, 0.3]).double(), atol=0.03)
    assert -4.0 < x[:, 0].min() < -3.0 and 3.0 < x[:, 0].max() < 4.0
    assert -2.2 < x[:, 1].min() < -1.2 and 1.8 < x[:, 1].max() < 2.8


def test_entropy_returns_the_table_values():
    assert datasets.entropy("checkerboard") == pytest.approx(math.log(32))
    assert datasets.entropy("moons") == 2.3948
    assert set(datasets.ENTROPY) == set(datasets.NAMES)


@pytest.mark.parametrize("name", EXACT)
def test_monte_carlo_entropy_matches_table(name):
    # Fewer points for pinwheel, whose density needs root finding (slower); the tests of
    # its normalisation and change of variables below check it more tightly.
    n = 20_000 if name == "pinwheel" else 200_000
    estimate, error = datasets.monte_carlo_entropy(name, n=n, seed=0)
    assert abs(estimate - datasets.entropy(name)) <= 3 * error + TABLE_ERROR[name] + 1e-6


@pytest.mark.parametrize("name", EXACT)
def test_log_density_integrates_to_one_on_a_grid(name):
    # Midpoint rule on [-6, 6]^2, which holds all but a negligible tail of each set; no
    # cell straddles a checkerboard edge (edges lie on multiples of 2 = 20 cells).
    h = 0.1
    centres = torch.linspace(-6 + h / 2, 6 - h / 2, 120, dtype=torch.float64)
    grid = torch.cartesian_prod(centres, centres)  # (120^2, 2)
    mass = datasets.log_density(name, grid).exp().sum().item() * h * h
    assert mass == pytest.approx(1.0, abs=1e-3)


def _pinwheel_map(rt: torch.Tensor, k: int) -> torch.Tensor:
    """Latent (r, t) on arm k -> the data point 2 R(-phi) (r, t), phi = 2 pi k/5 + e^r / 4."""
    r, t = rt
    phi = 2 * math.pi * k / 5 + 0.25 * torch.exp(r)
    return 2 * torch.stack([phi.cos() * r + phi.sin() * t, -phi.sin() * r + phi.cos() * t])


@pytest.mark.parametrize("r, t, k", [(1.0, 0.0, 0), (0.7, 0.08, 2), (1.4, -0.1, 4)])
def test_pinwheel_log_density_is_the_change_of_variables_formula(r, t, k):
    rt = torch.tensor([r, t], dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: _pinwheel_map(v, k), rt)  # (2, 2)
    mean, sd = torch.tensor([1.0, 0.0]).double(), torch.tensor([0.3, 0.1]).double()
    # log p(x) = log p(r, t) + log p(k) - log|det dx/d(r, t)|
    expected = torch.distributions.Normal(mean, sd).log_prob(rt).sum().item() - math.log(5)
    expected -= jacobian.det().abs().log().item()
    x = _pinwheel_map(rt, k)[None]  # (1, 2)
    # x's other preimages lie many standard deviations out and add nothing visible.
    assert datasets.log_density("pinwheel", x).item() == pytest.approx(expected, abs=1e-5)


def test_log_density_keeps_dtype_and_returns_one_value_per_point():
    x = datasets.sample("rings", 5, seed=0)
    log_p = datasets.log_density("rings", x)
    assert log_p.shape == (5,) and log_p.dtype == torch.float32


def test_log_density_rejects_a_bad_shape():
    with pytest.raises(ValueError, match=r"expected x of shape \(batch, 2\), got \(3,\)"):
        datasets.log_density("rings", torch.zeros(3))


def test_log_density_without_closed_form_says_which_names_have_one():
    with pytest.raises(NotImplementedError, match="checkerboard, 8gaussians, circles"):
        datasets.log_density("moons", torch.zeros(4, 2))
