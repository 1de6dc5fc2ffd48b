"""Each figure of flowedu.plots_maps has the panels it promises and draws the data it claims."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.patches import StepPatch

from flowedu import jacobians, maps1d
from flowedu import plots_maps as pm


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _by_gid(artists, gid):
    found = [a for a in artists if a.get_gid() == gid]
    assert len(found) == 1, f"expected one artist with gid {gid!r}, found {len(found)}"
    return found[0]


def _histogram_area(ax) -> float:
    step = _by_gid([p for p in ax.patches if isinstance(p, StepPatch)], "histogram")
    values, edges, _ = step.get_data()
    return float((values * np.diff(edges)).sum())


# ----- 1D ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["affine", "exp", "sinh", "tanh", "cubic"])
def test_plot_1d_transform_has_three_panels_and_a_histogram_of_area_near_one(name):
    fig = pm.plot_1d_transform(maps1d.make_map(name), n_samples=20_000, seed=0)
    assert len(fig.axes) == 3
    ax_x = fig.axes[2]
    # The window shows all but about 1% of the samples, so the histogram's area is ~0.99.
    assert 0.97 < _histogram_area(ax_x) <= 1.0 + 1e-6
    density = _by_gid(ax_x.lines, "density")
    x, p = density.get_xdata(), density.get_ydata()
    assert np.isfinite(p).all() and (p >= 0).all()
    assert np.trapezoid(p, x) == pytest.approx(_histogram_area(ax_x), abs=0.02)


def test_plot_1d_transform_histogram_follows_the_formula_density():
    m = maps1d.make_map("sinh")
    fig = pm.plot_1d_transform(m, n_samples=20_000, seed=0, bins=40)
    ax_x = fig.axes[2]
    step = _by_gid(ax_x.patches, "histogram")
    values, edges, _ = step.get_data()
    centres = torch.as_tensor((edges[:-1] + edges[1:]) / 2, dtype=torch.get_default_dtype())
    with torch.no_grad():
        p = maps1d.pushforward_density(m, centres).numpy()
    # Histogram heights match the density up to sampling noise and the bin width.
    assert np.abs(values - p).max() < 0.05


def test_interval_masses_are_equal_by_conservation_of_probability(float64):
    for name in ["affine", "exp", "sinh", "logistic", "cubic", "tanh"]:
        mass_z, mass_x = pm.interval_masses(maps1d.make_map(name), 0.5, 0.6)
        assert mass_z == pytest.approx(mass_x, rel=1e-6), name
    # A decreasing map sends [z0, z1] to a reversed interval; the mass is still positive.
    mass_z, mass_x = pm.interval_masses(maps1d.Affine(scale=-2.0, shift=1.0), 0.5, 0.6)
    assert mass_x > 0 and mass_z == pytest.approx(mass_x, rel=1e-6)


def test_plot_1d_transform_interval_shades_equal_masses(float64):
    fig = pm.plot_1d_transform(maps1d.Affine(scale=-1.5, shift=1.0), interval=(0.5, 0.8))
    labels = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
    masses = [t.split("= ")[-1] for t in labels if t.startswith("P(")]
    assert len(masses) == 2 and masses[0] == masses[1]


def test_explore_1d_answers_scale_zero_with_a_message():
    fig = pm.explore_1d("affine", scale=0.0, shift=1.0)
    assert len(fig.axes) == 1
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "no inverse" in text


def test_slider_specs_cover_every_map_and_contain_the_defaults():
    for name in maps1d.MAPS:
        specs = pm.slider_specs(name)
        assert set(specs) == set(maps1d.map_params(name))
        for lo, hi, step, value in specs.values():
            assert lo < hi and step > 0 and lo <= value <= hi


def test_plot_histogram_vs_densities_draws_each_curve_and_a_unit_area_histogram():
    z = torch.randn(50_000, generator=torch.Generator().manual_seed(0))
    x = torch.linspace(-5, 5, 201)
    p = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    fig = pm.plot_histogram_vs_densities(z, {"N(0, 1)": (x, p), "half": (x, p / 2)}, (-5, 5))
    (ax,) = fig.axes
    assert len(ax.lines) == 2
    assert _histogram_area(ax) == pytest.approx(1.0, abs=1e-3)


# ----- 2D ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "A",
    [
        [[1.5, 0.5], [0.3, 1.0]],  # det > 0
        [[-1.0, 0.5], [0.3, 1.0]],  # det < 0
        [[1.0, 2.0], [0.5, 1.0]],  # det = 0
        [[0.0, 0.0], [0.0, 0.0]],  # A = 0: a point
    ],
)
def test_plot_linear_map_draws_A_times_the_unit_squares_corners(A):
    fig = pm.plot_linear_map(A)
    assert len(fig.axes) == 2
    image = _by_gid(fig.axes[1].patches, "image")
    expected = jacobians.unit_square(torch.float64) @ torch.tensor(A, dtype=torch.float64).T
    np.testing.assert_allclose(image.get_xy()[:4], expected.numpy(), atol=1e-12)
    square = _by_gid(fig.axes[0].patches, "square")
    np.testing.assert_allclose(square.get_xy()[:4], jacobians.unit_square().numpy())


def test_plot_linear_map_titles_give_area_and_orientation():
    def title(A):
        return pm.plot_linear_map(A).axes[1].get_title()

    assert "= 1.35" in title([[1.5, 0.5], [0.3, 1.0]]) and "kept" in title([[1, 0], [0, 1]])
    assert "FLIPPED" in title([[-1.0, 0.0], [0.0, 1.0]])
    assert "det = 0" in title([[1.0, 2.0], [0.5, 1.0]])
    assert "point" in title([[0.0, 0.0], [0.0, 0.0]])


def test_plot_linear_map_colours_a_flipped_parallelogram_differently():
    kept = _by_gid(pm.plot_linear_map([[1, 0], [0, 1]]).axes[1].patches, "image")
    flipped = _by_gid(pm.plot_linear_map([[0, 1], [1, 0]]).axes[1].patches, "image")
    assert kept.get_facecolor()[:3] != flipped.get_facecolor()[:3]
    assert flipped.get_hatch()


def test_plot_warped_grid_draws_the_grid_and_its_image():
    A = torch.tensor([[2.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    fig = pm.plot_warped_grid(lambda p: p @ A.T, (-1, 1), (-1, 1), n_lines=7, square=((0, 0), 0.2))
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert sum(line.get_gid() == "grid" for line in ax.lines) == 2 * 7
    # The image of the grid is the grid mapped by A: x-coordinates doubled.
    grid_in = [ln for ln in fig.axes[0].lines if ln.get_gid() == "grid"]
    grid_out = [ln for ln in fig.axes[1].lines if ln.get_gid() == "grid"]
    np.testing.assert_allclose(grid_out[0].get_xdata(), 2 * grid_in[0].get_xdata())
    image = _by_gid(fig.axes[1].patches, "square_image")
    area = abs(jacobians.polygon_area(torch.as_tensor(image.get_xy()[:-1])).item())
    assert area == pytest.approx(1.0 * 0.2**2, rel=1e-9)  # |det A| = 1


def _gaussian_case():
    """x = A z for z ~ N(0, I): the density is N(x; 0, A A^T)."""
    A = torch.tensor([[1.0, 0.4], [-0.3, 0.7]], dtype=torch.float64)
    z = torch.randn(100_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    dist = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), A @ A.T)
    return z @ A.T, lambda x: dist.log_prob(x).exp()


def test_histogram_vs_density_2d_agrees_for_a_gaussian():
    x, density = _gaussian_case()
    r = pm.histogram_vs_density_2d(x, density, (-4, 4), (-4, 4), bins=40)
    assert r["hist"].shape == r["dens"].shape == (40, 40)
    assert r["mass"] == pytest.approx(1.0, abs=1e-3)
    assert r["inside"] == pytest.approx(1.0, abs=1e-3)
    assert (r["hist"].sum() * r["cell_area"]) == pytest.approx(r["inside"])
    assert r["tv"] < 0.05
    # A wrong density (twice as wide) is far from the histogram.
    wrong = pm.histogram_vs_density_2d(x, lambda p: density(p / 2) / 4, (-4, 4), (-4, 4), 40)
    assert wrong["tv"] > 0.3


def test_plot_density_vs_histogram_2d_shows_both_heatmaps_on_one_scale():
    x, density = _gaussian_case()
    fig = pm.plot_density_vs_histogram_2d(x, density, (-4, 4), (-4, 4), bins=40)
    assert len(fig.axes) == 2
    meshes = [ax.collections[0] for ax in fig.axes]
    cell = (8 / 40) ** 2
    for mesh in meshes:
        assert float(mesh.get_array().sum()) * cell == pytest.approx(1.0, abs=2e-3)
    assert meshes[0].get_clim() == meshes[1].get_clim()
