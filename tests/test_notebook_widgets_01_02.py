"""The explorers of notebooks 01 and 02 cannot be driven into a traceback.

Each explorer calls one update function from flowedu.plots_maps on every slider change
(explore_1d, explore_linear_map). These tests sweep that function over the corners and a
seeded random sample of the whole slider space, on the sliders' own step grid, and check
that it never raises and draws only finite numbers. Then they drive the widgets themselves.
"""

import itertools
import random

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon, StepPatch

from flowedu import maps1d
from flowedu import plots_maps as pm


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _slider_values(lo: float, hi: float, step: float) -> list[float]:
    """The values a FloatSlider(min=lo, max=hi, step=step) can take."""
    n = round((hi - lo) / step)
    return [round(lo + k * step, 10) for k in range(n + 1)]


def _sweep(grids: dict[str, list[float]], n_random: int, seed: int) -> list[dict[str, float]]:
    """Every corner (min / max of each control), plus n_random seeded random grid points."""
    names = list(grids)
    corners = itertools.product(*[(g[0], g[-1]) for g in grids.values()])
    points = [dict(zip(names, c, strict=True)) for c in corners]
    rng = random.Random(seed)
    points += [{k: rng.choice(g) for k, g in grids.items()} for _ in range(n_random)]
    return points


def _assert_finite(fig) -> None:
    """Every line, polygon and histogram in the figure holds finite numbers only."""
    for ax in fig.axes:
        for artist in ax.get_children():
            if isinstance(artist, Line2D):
                data = np.concatenate([np.ravel(artist.get_xdata()), np.ravel(artist.get_ydata())])
            elif isinstance(artist, StepPatch):
                values, edges, _ = artist.get_data()
                data = np.concatenate([values, edges])
            elif isinstance(artist, Polygon):
                data = artist.get_xy().ravel()
            else:
                continue
            assert np.isfinite(np.asarray(data, dtype=float)).all(), artist


# ----- notebook 01: the 1D map explorer ----------------------------------------------------


def _1d_cases() -> list[tuple[str, dict[str, float]]]:
    cases = []
    for name in maps1d.MAPS:
        grids = {
            p: _slider_values(lo, hi, step)
            for p, (lo, hi, step, _) in pm.slider_specs(name).items()
        }
        cases += [(name, params) for params in _sweep(grids, n_random=6, seed=len(cases))]
    cases.append(("affine", {"scale": 0.0, "shift": 2.0}))  # on the slider grid: no inverse
    return cases


@pytest.mark.parametrize(("name", "params"), _1d_cases())
def test_explore_1d_draws_finite_figures_over_the_slider_space(name, params):
    fig = pm.explore_1d(name, **params)
    _assert_finite(fig)
    if name == "affine" and params["scale"] == 0:
        assert len(fig.axes) == 1  # a message, not an error
    else:
        assert len(fig.axes) == 3
        hist = next(p for p in fig.axes[2].patches if p.get_gid() == "histogram")
        values, edges, _ = hist.get_data()
        assert 0.95 < (values * np.diff(edges)).sum() <= 1.0 + 1e-6


def test_map_explorer_1d_widget_survives_every_map_and_extreme_sliders():
    box = pm.map_explorer_1d(n_samples=2000)
    choose, sliders_box = box.children[0], box.children[1]
    for name in maps1d.MAPS:
        choose.value = name  # rebuilds the sliders and redraws
        assert [s.description for s in sliders_box.children] == list(pm.slider_specs(name))
        for slider in sliders_box.children:
            slider.value = slider.min
            slider.value = slider.max
        plt.close("all")


# ----- notebook 02: the linear-map explorer ------------------------------------------------


def _linear_cases() -> list[dict[str, float]]:
    grid = _slider_values(*pm.LINEAR_SLIDER)
    cases = _sweep(dict.fromkeys("abcd", grid), n_random=20, seed=0)
    cases += [dict(zip("abcd", [0.0, 0.0, 0.0, 0.0], strict=True))]
    # Singular on the slider grid, though the float products do not cancel exactly.
    cases += [
        dict(zip("abcd", v, strict=True)) for v in [(0.1, 0.2, 0.3, 0.6), (0.3, 0.7, 0.9, 2.1)]
    ]
    cases += [dict(zip("abcd", v, strict=True)) for v in pm.LINEAR_PRESETS.values()]
    return cases


@pytest.mark.parametrize("entries", _linear_cases())
def test_explore_linear_map_draws_finite_figures_over_the_slider_space(entries):
    fig = pm.explore_linear_map(**entries)
    _assert_finite(fig)
    assert len(fig.axes) == 2
    a, b, c, d = (entries[k] for k in "abcd")
    title = fig.axes[1].get_title()
    if abs(a * d - b * c) < 1e-9 * max(1.0, a * a + b * b + c * c + d * d):
        assert "det = 0" in title
    elif a * d - b * c > 0:
        assert "kept" in title
    else:
        assert "FLIPPED" in title


def test_linear_map_explorer_widget_survives_presets_and_extreme_sliders():
    box = pm.linear_map_explorer()
    presets = box.children[0].children[0]
    sliders = [*box.children[1].children, *box.children[2].children]
    assert [s.description for s in sliders] == list("abcd")
    for name in pm.LINEAR_PRESETS:
        presets.value = name
        assert [s.value for s in sliders] == list(pm.LINEAR_PRESETS[name])
    for values in itertools.product([-2.0, 0.0, 2.0], repeat=2):
        sliders[0].value, sliders[3].value = values
    plt.close("all")
