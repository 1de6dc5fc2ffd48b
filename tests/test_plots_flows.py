"""Each figure of flowedu.plots_flows shows what it says: the right panels, holding the data."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from torch import nn

from flowedu import plots_flows as pf
from flowedu.couplings import AdditiveCoupling, AffineCoupling, half_mask
from flowedu.realnvp import realnvp
from flowedu.style import BASE_COLOR, DATA_COLOR, MODEL_COLOR


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def shaken_flow(n_layers: int = 4, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """A small RealNVP whose couplings are not the identity."""
    torch.manual_seed(seed)
    flow = realnvp(n_layers=n_layers, hidden=(8,))
    for layer in flow.layers:
        nn.init.normal_(layer.net[-1].weight, std=std)
    return flow


def scatter_offsets(ax) -> np.ndarray:
    (coll,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    return np.asarray(coll.get_offsets())


# ----- curves and 1D densities ----------------------------------------------------------


def test_loss_curves_draw_one_line_per_curve_and_per_reference():
    fig = pf.plot_loss_curves({"a": [3.0, 2.0, 1.0], "b": [4.0, 3.0]}, reference={"H": 0.5})
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 3
    np.testing.assert_allclose(lines[0].get_ydata(), [3.0, 2.0, 1.0])
    np.testing.assert_allclose(lines[2].get_ydata(), [0.5, 0.5])
    assert "H = 0.500" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_loss_curves_smooth_with_a_moving_average():
    fig = pf.plot_loss_curves([0.0, 2.0, 4.0, 6.0], smooth=2)
    (line,) = fig.axes[0].get_lines()
    np.testing.assert_allclose(line.get_ydata(), [1.0, 3.0, 5.0])
    np.testing.assert_allclose(line.get_xdata(), [2, 3, 4])


def test_loss_curves_use_neither_base_nor_data_colour():
    fig = pf.plot_loss_curves({"a": [1, 2], "b": [1, 2], "c": [1, 2]})
    colours = {to_rgb(line.get_color()) for line in fig.axes[0].get_lines()}
    assert to_rgb(BASE_COLOR) not in colours and to_rgb(DATA_COLOR) not in colours


def test_hist_vs_density_1d_is_a_normalised_histogram_and_the_curve():
    x = np.linspace(-5, 5, 201)
    density = np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)
    samples = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(0))
    fig = pf.plot_hist_vs_density_1d(samples, x, density)
    ax = fig.axes[0]
    heights = np.array([p.get_height() for p in ax.patches])
    width = ax.patches[0].get_width()
    assert heights.sum() * width == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), density)


def test_hist_vs_density_1d_draws_into_a_given_axes():
    fig, axes = plt.subplots(1, 2)
    out = pf.plot_hist_vs_density_1d([0.0, 1.0], [0.0, 1.0], [1.0, 1.0], ax=axes[1])
    assert out is fig and len(axes[1].patches) > 0 and len(axes[0].patches) == 0


def test_density_snapshots_have_one_panel_per_snapshot_with_truth_and_model():
    x = np.linspace(-3, 3, 50)
    truth = np.exp(-(x**2))
    snapshots = {0: 0.5 * truth, 10: truth, 100: 2 * truth}
    fig = pf.plot_density_snapshots_1d(x, truth, snapshots)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["step 0", "step 10", "step 100"]
    for ax, model in zip(fig.axes, snapshots.values(), strict=True):
        (line,) = ax.get_lines()
        np.testing.assert_allclose(line.get_ydata(), model)
        assert to_rgb(line.get_color()) == to_rgb(MODEL_COLOR)


# ----- Jacobians, masks, area -----------------------------------------------------------


def test_jacobians_show_each_matrix_and_write_every_entry():
    J = torch.tensor([[1.0, 0.0], [0.25, 2.0]])
    fig = pf.plot_jacobians({"one": J, "two": 2 * J}, split=1)
    panels = [ax for ax in fig.axes if ax.texts]
    assert len(panels) == 2 and len(fig.axes) == 3  # two matrices and one shared colour bar
    shade = panels[0].images[0].get_array()
    np.testing.assert_allclose(shade.data[~shade.mask], [1.0, 0.25, 2.0])
    assert shade.mask.tolist() == [[False, True], [False, False]]  # the zero is not shaded
    texts = [t.get_text() for t in panels[0].texts]
    assert texts == ["1.00", "0", "0.25", "2.00"]  # exact zeros are written as 0
    hatched = [p for p in panels[0].patches if p.get_hatch()]
    assert [p.get_xy() for p in hatched] == [(0.5, -0.5)]  # row 0, column 1
    assert panels[0].get_title() == "one\n1 exact zero (hatched)"


def test_jacobians_share_one_log_scale_so_a_large_entry_does_not_wash_out_the_rest():
    small, large = torch.tensor([[0.1, 0.0], [0.0, 0.2]]), torch.tensor([[50.0, 1.0], [0.0, 1.0]])
    fig = pf.plot_jacobians({"small": small, "large": large})
    images = [ax.images[0] for ax in fig.axes if ax.images]
    norms = {id(image.norm) for image in images}
    assert len(norms) == 1  # one scale for all panels
    norm = images[0].norm
    assert isinstance(norm, matplotlib.colors.LogNorm)
    # On a linear scale 0.1 would be 0.2 % of 50; on the log scale it is clearly shaded.
    assert norm(0.1) > 0.05 and norm(50.0) == pytest.approx(1.0)


def test_masks_mark_copied_and_transformed_coordinates():
    fig = pf.plot_masks({"half": half_mask(4), "board": (torch.tensor([1, 0, 0, 1]), (2, 2))})
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[0].texts] == ["a", "a", "b", "b"]
    assert fig.axes[1].images[0].get_array().shape == (2, 2)


def test_cell_area_ratios_are_zero_for_an_additive_coupling():
    torch.manual_seed(0)
    layer = AdditiveCoupling(half_mask(2), hidden=(8,)).double()
    nn.init.normal_(layer.net[-1].weight, std=0.5)
    polygons, log_ratio = pf.cell_area_ratios(layer, n=6)
    assert polygons.shape == (36, 32, 2) and log_ratio.shape == (36,)
    assert np.abs(log_ratio).max() < 1e-12


def test_cell_area_ratios_match_the_affine_log_det_for_small_cells():
    torch.manual_seed(0)
    layer = AffineCoupling(half_mask(2), hidden=(8,)).double()
    nn.init.normal_(layer.net[-1].weight, std=0.5)
    n, lo, hi = 40, -1.0, 1.0
    _, log_ratio = pf.cell_area_ratios(layer, (lo, hi), (lo, hi), n=n)
    h = (hi - lo) / n
    centres = torch.linspace(lo + h / 2, hi - h / 2, n, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)
    _, log_det = layer(grid)
    np.testing.assert_allclose(log_ratio, log_det.detach().numpy(), atol=1e-3)


def test_cell_area_ratios_of_a_linear_map_are_its_log_det():
    A = torch.tensor([[2.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
    _, log_ratio = pf.cell_area_ratios(lambda p: p @ A.T, n=4)
    np.testing.assert_allclose(log_ratio, math.log(6.0), atol=1e-12)


def test_area_change_has_a_before_panel_and_one_panel_per_map():
    fig = pf.plot_area_change({"double": lambda p: 2 * p}, n=5)
    panels = [
        ax for ax in fig.axes if ax.collections and isinstance(ax.collections[0], PolyCollection)
    ]
    assert len(panels) == 2
    np.testing.assert_allclose(panels[1].collections[0].get_array(), math.log(4.0), atol=1e-12)


def test_area_change_shares_axes_and_renders_no_change_white():
    torch.manual_seed(0)
    layer = AdditiveCoupling(half_mask(2), hidden=(8,)).double()
    nn.init.normal_(layer.net[-1].weight, std=0.5)
    fig = pf.plot_area_change({"additive": layer, "double": lambda p: 2 * p}, n=4)
    panels = [ax for ax in fig.axes if ax.collections and ax.get_title()]
    assert len(panels) == 3
    assert len({ax.get_xlim() for ax in panels}) == 1 and len({ax.get_ylim() for ax in panels}) == 1
    for ax in panels:
        assert ax.get_xticks().size > 0 and ax.get_yticks().size > 0  # ticks on every panel
    before, additive, doubled = (ax.collections[0] for ax in panels)
    white = np.array([1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(before.to_rgba(before.get_array()), np.tile(white, (16, 1)))
    np.testing.assert_allclose(
        additive.to_rgba(additive.get_array()), np.tile(white, (16, 1)), atol=1e-6
    )
    red, _, blue, _ = doubled.to_rgba(doubled.get_array())[0]
    assert red > 0.5 > blue  # doubling lengths expands area: red
    assert panels[1].get_title().endswith("log ratio 0.00")
    assert doubled.norm(0.0) == 0.5  # the scale is centred at 0


# ----- flows in 2D -----------------------------------------------------------------------


def test_layers_show_every_stage_of_the_flow():
    flow = shaken_flow(n_layers=4)
    fig = pf.plot_layers(flow, n_points=300)
    assert len(fig.axes) == len(flow.layers) + 1
    z = flow.sample_base(300, seed=0)
    trace = flow.trace(z, "generate")
    for ax, points in zip(fig.axes, trace.points, strict=True):
        np.testing.assert_allclose(scatter_offsets(ax), points.detach().numpy(), rtol=1e-5)
        assert any(isinstance(c, LineCollection) for c in ax.collections)  # the grid
    assert fig.axes[0].get_title() == "z ~ N(0, I)"
    assert fig.axes[-1].get_title() == "x = f(z)"


def test_layers_can_pick_stages_and_normalize_data():
    flow = shaken_flow(n_layers=4)
    data = torch.randn(200, 2, generator=torch.Generator().manual_seed(1)) * 2
    fig = pf.plot_layers(flow, data, direction="normalize", stages=[0, -1])
    assert len(fig.axes) == 2
    np.testing.assert_allclose(scatter_offsets(fig.axes[0]), data.numpy())
    z, _ = flow(data)
    np.testing.assert_allclose(scatter_offsets(fig.axes[1]), z.detach().numpy(), rtol=1e-5)
    assert fig.axes[0].get_title() == "data x"


def test_layers_in_the_normalize_direction_need_data():
    with pytest.raises(ValueError, match="needs data points"):
        pf.plot_layers(shaken_flow(), direction="normalize")


def test_density_grid_integrates_to_one():
    flow = shaken_flow(n_layers=4, std=0.15)  # bent, with light enough tails for the box
    xs, ys, density = pf.density_grid(flow, (-8.0, 8.0), (-8.0, 8.0), n=160)
    assert density.shape == (160, 160)
    assert abs(density.max() - 1 / (2 * math.pi)) > 0.02  # not N(0, I) itself
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert density.sum() * cell == pytest.approx(1.0, abs=5e-3)


def test_density_heatmap_holds_the_density_and_integrates_to_one():
    flow = realnvp(n_layers=2, hidden=(8,))  # a new flow is N(0, I) itself
    fig = pf.plot_density(flow, (-6.0, 6.0), (-6.0, 6.0), n=120)
    image = fig.axes[0].images[0]
    density = np.asarray(image.get_array())
    assert density.sum() * (12 / 120) ** 2 == pytest.approx(1.0, abs=1e-3)
    assert density.max() == pytest.approx(1 / (2 * math.pi), rel=1e-2)  # the peak of N(0, I)
    assert tuple(image.get_extent()) == (-6.0, 6.0, -6.0, 6.0)


def test_gallery_has_data_samples_and_density_per_dataset():
    flows = {"a": shaken_flow(seed=0), "b": shaken_flow(seed=1)}
    data = {k: torch.randn(500, 2, generator=torch.Generator().manual_seed(2)) for k in flows}
    fig = pf.plot_gallery(flows, data, n_samples=400, grid_n=30)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(panels) == 3 * len(flows) and len(bars) == len(flows)  # a colour bar per heatmap
    top, middle, bottom = panels[0], panels[2], panels[4]  # column "a", row by row
    assert top.get_title() == "a"
    np.testing.assert_allclose(scatter_offsets(top), data["a"][:400].numpy())
    np.testing.assert_allclose(scatter_offsets(middle), flows["a"].sample(400, seed=0).numpy())
    assert np.asarray(bottom.images[0].get_array()).shape == (30, 30)


def test_gallery_can_show_the_log_density():
    flows = {"a": shaken_flow(seed=0)}
    data = {"a": torch.randn(500, 2, generator=torch.Generator().manual_seed(2))}
    fig = pf.plot_gallery(flows, data, n_samples=400, grid_n=30, log_density=True, log_range=6.0)
    image = fig.axes[2].images[0]
    limits = pf.robust_limits(data["a"][:400], pad=0.12)  # the limits of the data shown
    _, _, log_q = pf.density_grid(flows["a"], *limits, n=30, log=True)
    np.testing.assert_allclose(np.asarray(image.get_array()), log_q)
    assert image.norm.vmax == pytest.approx(log_q.max())
    assert image.norm.vmin == pytest.approx(log_q.max() - 6.0)


def test_density_heatmap_has_a_colour_bar_in_the_right_units():
    flow = shaken_flow()
    fig = pf.plot_density(flow, (-4.0, 4.0), (-4.0, 4.0), n=40)
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert bar.get_xlabel() == "q(x)"
    fig = pf.plot_density(flow, (-4.0, 4.0), (-4.0, 4.0), n=40, log=True)
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert bar.get_xlabel() == "log q(x)"
    with pytest.raises(ValueError, match="log_range"):
        pf.plot_density(flow, (-4.0, 4.0), (-4.0, 4.0), log=True, log_range=0)


def test_density_grid_log_is_the_log_of_the_density():
    flow = shaken_flow()
    _, _, q = pf.density_grid(flow, (-3.0, 3.0), (-2.0, 2.0), n=20)
    _, _, log_q = pf.density_grid(flow, (-3.0, 3.0), (-2.0, 2.0), n=20, log=True)
    np.testing.assert_allclose(np.exp(log_q), q, rtol=1e-12)


def test_normalized_shows_data_and_its_latent_image():
    flows = {"a": shaken_flow()}
    data = {"a": torch.randn(300, 2, generator=torch.Generator().manual_seed(3))}
    fig = pf.plot_normalized(flows, data)
    assert len(fig.axes) == 2
    np.testing.assert_allclose(scatter_offsets(fig.axes[0]), data["a"].numpy())
    z, _ = flows["a"](data["a"])
    np.testing.assert_allclose(scatter_offsets(fig.axes[1]), z.detach().numpy(), rtol=1e-5)
    assert len(fig.axes[1].get_lines()) == 3  # the circles of radius 1, 2, 3
    # each circle is labelled with the mass of N(0, I) inside it, 1 - exp(-r^2 / 2)
    assert sorted(t.get_text() for t in fig.axes[1].texts) == ["39%", "86%", "99%"]


def test_normalized_colours_a_point_the_same_in_x_and_in_z():
    flows = {"a": shaken_flow()}
    data = {"a": torch.randn(300, 2, generator=torch.Generator().manual_seed(3))}
    fig = pf.plot_normalized(flows, data)
    top, bottom = (
        [c for c in ax.collections if isinstance(c, PathCollection)][0] for ax in fig.axes
    )
    np.testing.assert_allclose(top.get_facecolors(), bottom.get_facecolors())
    used = {tuple(np.round(c[:3], 3)) for c in top.get_facecolors()}
    reserved = {tuple(np.round(to_rgb(c), 3)) for c in (BASE_COLOR, DATA_COLOR, MODEL_COLOR)}
    assert len(used) > 1 and not used & reserved  # parts, in colours that mean nothing else


@pytest.mark.parametrize(
    ("name", "n_parts"),
    [
        ("moons", 2),
        ("circles", 2),
        ("rings", 4),
        ("8gaussians", 8),
        ("pinwheel", 5),
        ("2spirals", 2),
        ("checkerboard", 8),
        ("swissroll", 3),
    ],
)
def test_parts_of_each_dataset_are_found_from_x(name, n_parts):
    from flowedu import datasets

    x = datasets.sample(name, 4000, seed=0).numpy()
    part, names = pf._parts(name, x)
    assert len(names) == n_parts and part.shape == (4000,)
    counts = np.bincount(part, minlength=n_parts)
    # the datasets' parts are equally likely (swissroll's thirds of the roll nearly so)
    np.testing.assert_allclose(counts / 4000, 1 / n_parts, atol=0.06)


def test_parts_of_the_rings_are_their_radii():
    angle = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    unit = np.stack([np.cos(angle), np.sin(angle)], 1)
    x = np.concatenate([r * unit for r in (3.0, 2.25, 1.5, 0.75)])
    part, names = pf._parts("rings", x)
    np.testing.assert_array_equal(part, np.repeat(np.arange(4), 40))
    assert names[0] == "radius 3"


def test_layers_share_one_scale_and_say_which_direction():
    flow = shaken_flow(n_layers=4)
    fig = pf.plot_layers(flow, n_points=300, stages=[0, 1, 2, -1])
    limits = {(ax.get_xlim(), ax.get_ylim()) for ax in fig.axes}
    assert len(limits) == 1  # one scale across the panels
    assert fig.axes[1].get_title() == "after $g_{4}^{-1}$ (affine)"  # the last layer first
    assert fig.axes[2].get_title() == "after $g_{3}^{-1}$ (affine)"
    assert "generating direction" in fig.get_suptitle()
    data = torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    fig = pf.plot_layers(flow, data, direction="normalize", stages=[0, 1, -1])
    assert fig.axes[1].get_title() == "after $g_{1}$ (affine)"
    assert fig.axes[-1].get_title() == "z = f^-1(x)"
    assert "normalizing direction" in fig.get_suptitle()
    with pytest.raises(ValueError, match="direction must be"):
        pf.plot_layers(flow, data, direction="backwards")


def test_plots_accept_points_with_gradient_and_numpy_arrays():
    flow = shaken_flow()
    z = flow.sample_base(100, seed=0).requires_grad_(True)
    pf.plot_layers(flow, z, stages=[0, -1])
    pf.plot_layers(flow, z.detach().numpy(), stages=[0, -1])
