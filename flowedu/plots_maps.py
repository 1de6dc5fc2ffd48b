"""Figures for maps: the 1D change of variables (notebook 01) and maps of the plane (02).

Colours are the course's: blue is the base / latent z ~ N(0, I), orange is data x.
Every function applies ``flowedu.style.use_course_style()`` (projector-sized fonts), sets
fixed margins (tight_layout would cost a widget ~0.2 s per redraw) and returns a matplotlib
Figure made with pyplot, so a notebook cell shows it with ``plt.show()`` and a test closes
it with ``plt.close(fig)``.

The two explorers, ``map_explorer_1d()`` and ``linear_map_explorer()``, are thin ipywidgets
wrappers: every slider change calls ``explore_1d`` or ``explore_linear_map``, which the
tests sweep over the whole slider space. Those two never raise for a slider value: an
invalid choice (a map with scale 0, a singular matrix) draws a message instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from torch import Tensor

from . import jacobians, maps1d
from .style import BASE_COLOR, DATA_COLOR, GRID_COLOR, use_course_style

FLIP_COLOR = "#9467bd"  # purple: a parallelogram whose orientation is flipped (det < 0)
SINGULAR_COLOR = "#d62728"  # red: a square squashed onto a line (det = 0)
MAP_COLOR = "#333333"  # the graph of a map x = f(z): neither base nor data

# ---------------------------------------------------------------------------------------
# 1D: p(z) | x = f(z) | p(x)

# Slider ranges (min, max, step) of each map's parameters in the 1D explorer. The ranges
# keep every map valid and its samples finite, except Affine's scale = 0, which the
# explorer answers with a message (it is the 1D version of a singular matrix).
SLIDERS_1D: dict[str, dict[str, tuple[float, float, float]]] = {
    "affine": {"scale": (-3.0, 3.0, 0.25), "shift": (-2.0, 2.0, 0.25)},
    "exp": {},
    "sinh": {"a": (0.25, 2.0, 0.05), "b": (-1.5, 1.5, 0.1), "scale": (0.25, 3.0, 0.05)},
    "logistic": {},
    "cubic": {"a": (0.05, 3.0, 0.05), "b": (0.0, 2.0, 0.05)},
    "tanh": {"scale": (0.5, 4.0, 0.1)},
    "sinh_arcsinh": {"skew": (-1.5, 1.5, 0.1), "tail": (0.6, 2.0, 0.05)},
}


def slider_specs(name: str) -> dict[str, tuple[float, float, float, float]]:
    """(min, max, step, default) of each parameter of map `name` in the 1D explorer.

    Maps that SLIDERS_1D does not list get ranges around their defaults (positive
    parameters stay positive), so a map added to flowedu.maps1d.MAPS still works.
    """
    specs = {}
    for param, default in maps1d.map_params(name).items():
        default = float(default)
        lo, hi, step = SLIDERS_1D.get(name, {}).get(param) or (
            (default / 4, default * 2, default / 20) if default > 0 else (-2.0, 2.0, 0.1)
        )
        specs[param] = (lo, hi, step, min(max(default, lo), hi))
    return specs


def _to_numpy(v: Tensor | np.ndarray) -> np.ndarray:
    """An array from a tensor (detached, on the CPU) or anything numpy takes."""
    return v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v)


def _map_title(m: maps1d.Map1D) -> str:
    params = m.extra_repr()
    return f"{m.name}({params})" if params else m.name


def _x_window(m: maps1d.Map1D, x: np.ndarray, q: float = 0.005) -> tuple[float, float]:
    """An x-range holding all but a fraction 2q of the samples, with a margin, kept in range."""
    lo, hi = np.quantile(x, [q, 1 - q])
    pad = 0.08 * max(hi - lo, 1e-6)
    low, high = m.range_bounds
    return max(lo - pad, low), min(hi + pad, high)


def plot_1d_transform(
    m: maps1d.Map1D,
    n_samples: int = 20_000,
    seed: int = 0,
    bins: int = 60,
    z_lim: float = 4.0,
    interval: tuple[float, float] | None = None,
) -> Figure:
    """Three panels: p(z) = N(0, 1) | the map x = f(z) | p(x) by Eq. 1 over a histogram.

    The histogram is of x = f(z) for `n_samples` seeded draws z ~ N(0, 1), normalised by
    n_samples and the bin width, so its heights are comparable with p(x) and its area is
    the fraction of samples in the window shown (about 0.99). `interval=(z0, z1)` shades a
    small interval of z and its image f([z0, z1]) in x: the two shaded areas are equal.
    """
    use_course_style()
    dtype = torch.get_default_dtype()
    z = torch.linspace(-z_lim, z_lim, 401, dtype=dtype)
    p_z = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    with torch.no_grad():
        x_samples = maps1d.sample_pushforward(m, n_samples, seed=seed).numpy()
        z_samples = torch.randn(n_samples, generator=torch.Generator().manual_seed(seed)).numpy()
        fz = m.f(z).numpy()
    lo, hi = _x_window(m, x_samples)
    # The density on a uniform grid plus the images of a z-grid: fine where p(x) is peaked.
    x_grid = np.concatenate([np.linspace(lo, hi, 400), fz[(fz > lo) & (fz < hi)]])
    x_grid = np.unique(x_grid)
    with torch.no_grad():
        p_x = maps1d.pushforward_density(m, torch.as_tensor(x_grid, dtype=dtype)).numpy()

    fig, (ax_z, ax_f, ax_x) = plt.subplots(1, 3, figsize=(15, 4.6))
    _density_histogram(ax_z, z_samples, (-z_lim, z_lim), bins, BASE_COLOR, "samples z", 0.3)
    ax_z.plot(z.numpy(), p_z.numpy(), color=BASE_COLOR, label="p(z) = N(0, 1)")
    ax_z.set(xlabel="z", ylabel="density", title="base: z ~ N(0, 1)", xlim=(-z_lim, z_lim))
    ax_z.set_ylim(0, 0.62)  # room for the legend above the peak of N(0, 1)

    ax_f.plot(z.numpy(), fz, color=MAP_COLOR, label="x = f(z)")
    ax_f.set(xlabel="z", ylabel="x", title="the map x = f(z)", xlim=(-z_lim, z_lim))
    ax_f.set_ylim(lo, hi)
    ax_f.grid(alpha=0.3)

    _density_histogram(ax_x, x_samples, (lo, hi), bins, DATA_COLOR, "samples x = f(z)")
    ax_x.plot(x_grid, p_x, color=DATA_COLOR, lw=3, label="p(x) by Eq. 1", gid="density")
    ax_x.set(xlabel="x", ylabel="density", title="data: p(x) = p(f⁻¹(x)) |df⁻¹/dx|")
    ax_x.set_xlim(lo, hi)
    ax_x.set_ylim(0, 1.5 * max(float(p_x.max()), float(ax_x.get_ylim()[1]) / 1.05))

    if interval is not None:
        _shade_interval(m, interval, (ax_z, ax_f, ax_x), dtype)
    for ax in (ax_z, ax_x):
        ax.legend(loc="upper left")
    fig.suptitle(_map_title(m), fontsize=15)
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.13, top=0.83, wspace=0.28)
    return fig


def interval_masses(m: maps1d.Map1D, z0: float, z1: float) -> tuple[float, float]:
    """P(z0 < z < z1) for z ~ N(0, 1), and the integral of p(x) by Eq. 1 over f([z0, z1]).

    Conservation of probability says they are equal; the second is a trapezoid integral
    on 2001 points, so they agree to about 1e-7 for a small interval.
    """
    dtype = torch.get_default_dtype()
    normal = torch.distributions.Normal(torch.zeros((), dtype=dtype), torch.ones((), dtype=dtype))
    z0_t, z1_t = torch.tensor(z0, dtype=dtype), torch.tensor(z1, dtype=dtype)
    mass_z = (normal.cdf(z1_t) - normal.cdf(z0_t)).item()
    with torch.no_grad():
        x0, x1 = sorted(m.f(torch.stack([z0_t, z1_t])).tolist())
        x = torch.linspace(x0, x1, 2001, dtype=dtype)
        mass_x = torch.trapezoid(maps1d.pushforward_density(m, x), x).item()
    return mass_z, mass_x


def _shade_interval(m, interval, axes, dtype) -> None:
    ax_z, ax_f, ax_x = axes
    z0, z1 = sorted(float(v) for v in interval)
    mass_z, mass_x = interval_masses(m, z0, z1)
    zs = torch.linspace(z0, z1, 50, dtype=dtype)
    with torch.no_grad():
        xs = m.f(zs)
        x_lo, x_hi = sorted([xs[0].item(), xs[-1].item()])
        xg = torch.linspace(x_lo, x_hi, 50, dtype=dtype)
        p_xg = maps1d.pushforward_density(m, xg)
    p_zs = torch.exp(-0.5 * zs**2) / math.sqrt(2 * math.pi)
    ax_z.fill_between(
        zs.numpy(),
        p_zs.numpy(),
        color=BASE_COLOR,
        alpha=0.8,
        label=f"P(z in [z0, z1]) = {mass_z:.4f}",
    )
    ax_x.fill_between(
        xg.numpy(),
        p_xg.numpy(),
        color=DATA_COLOR,
        alpha=0.9,
        label=f"P(x in f([z0, z1])) = {mass_x:.4f}",
    )
    y_bottom = ax_f.get_ylim()[0]
    for z_edge, x_edge in [(z0, xs[0].item()), (z1, xs[-1].item())]:
        ax_f.plot(
            [z_edge, z_edge, -1e9], [y_bottom, x_edge, x_edge], color=GRID_COLOR, lw=1.2, ls="--"
        )
    ax_f.axvspan(z0, z1, color=BASE_COLOR, alpha=0.25, label="dz")
    ax_f.axhspan(x_lo, x_hi, color=DATA_COLOR, alpha=0.35, label="|dx| = |f'(z)| dz")
    ax_f.legend(loc="upper left")


def _message_figure(title: str, message: str) -> Figure:
    """A one-panel figure that says why there is nothing to draw."""
    use_course_style()
    fig, ax = plt.subplots(figsize=(15, 4.6))
    ax.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        fontsize=16,
        color=SINGULAR_COLOR,
        wrap=True,
        transform=ax.transAxes,
    )
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def explore_1d(name: str, n_samples: int = 20_000, seed: int = 0, **params: float) -> Figure:
    """What the 1D explorer draws for map `name` with `params`: plot_1d_transform, or a
    message when the parameters make no bijection (Affine with scale = 0)."""
    try:
        m = maps1d.make_map(name, **params)
    except ValueError as err:
        shown = ", ".join(f"{k}={v:g}" for k, v in params.items())
        return _message_figure(f"{name}({shown})", f"No bijection, so no density:\n{err}")
    return plot_1d_transform(m, n_samples=n_samples, seed=seed)


def map_explorer_1d(initial: str = "sinh", n_samples: int = 20_000, seed: int = 0):
    """A dropdown of the maps in flowedu.maps1d.MAPS, a slider per parameter, and the
    three-panel figure of explore_1d, redrawn on every change. Returns an ipywidgets VBox."""
    import ipywidgets as widgets
    from IPython.display import display

    choose = widgets.Dropdown(options=list(maps1d.MAPS), value=initial, description="map f")
    sliders_box, out = widgets.HBox(), widgets.Output()

    def redraw(_=None) -> None:
        params = {s.description: s.value for s in sliders_box.children}
        with out:
            out.clear_output(wait=True)
            fig = explore_1d(choose.value, n_samples=n_samples, seed=seed, **params)
            display(fig)
            plt.close(fig)

    def new_map(_=None) -> None:
        sliders = []
        for param, (lo, hi, step, value) in slider_specs(choose.value).items():
            s = widgets.FloatSlider(
                value=value, min=lo, max=hi, step=step, description=param, continuous_update=False
            )
            s.observe(redraw, names="value")
            sliders.append(s)
        sliders_box.children = sliders
        redraw()

    choose.observe(new_map, names="value")
    new_map()
    return widgets.VBox([choose, sliders_box, out])


def _density_histogram(ax, samples, value_range, bins, color, label, alpha=0.35) -> None:
    """A filled histogram scaled as a density: count / (all samples * bin width), so that it
    is comparable with p(x) and its area is the fraction of samples inside value_range."""
    samples = np.asarray(samples).ravel()
    heights, edges = np.histogram(samples, bins=bins, range=value_range)
    ax.stairs(
        heights / (len(samples) * np.diff(edges)),
        edges,
        fill=True,
        lw=0,
        color=color,
        alpha=alpha,
        label=label,
        gid="histogram",
    )


def plot_histogram_vs_densities(
    samples: Tensor | np.ndarray,
    curves: Mapping[str, tuple[Tensor | np.ndarray, Tensor | np.ndarray]],
    hist_range: tuple[float, float],
    bins: int = 80,
    xlabel: str = "x",
    title: str = "",
    color: str = DATA_COLOR,
) -> Figure:
    """One panel: a histogram of `samples` (normalised by their number, so its area is the
    fraction inside hist_range) and density curves {label: (x, p(x))} drawn over it."""
    use_course_style()
    samples = _to_numpy(samples).astype(float).ravel()
    fig, ax = plt.subplots(figsize=(9, 4.8))
    label = f"histogram of {len(samples):,} samples"
    _density_histogram(ax, samples, hist_range, bins, color, label)
    styles = [("black", "-"), (SINGULAR_COLOR, "--"), (FLIP_COLOR, ":"), (GRID_COLOR, "-.")]
    for (label, (x, p)), (c, ls) in zip(curves.items(), styles * len(curves), strict=False):
        ax.plot(_to_numpy(x), _to_numpy(p), color=c, ls=ls, lw=2.5, label=label)
    ax.set(xlabel=xlabel, ylabel="density", title=title, xlim=hist_range)
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.14, top=0.9)
    return fig


# ---------------------------------------------------------------------------------------
# 2D: linear maps, warped grids, densities

# The explorer's sliders run over [-2, 2], so A maps the unit square into [-4, 4]^2.
LINEAR_SLIDER = (-2.0, 2.0, 0.1)
LINEAR_PRESETS: dict[str, tuple[float, float, float, float]] = {
    "stretch and shear": (1.5, 0.5, 0.3, 1.0),
    "identity": (1.0, 0.0, 0.0, 1.0),
    "rotation by 90°": (0.0, -1.0, 1.0, 0.0),
    "shear": (1.0, 1.0, 0.0, 1.0),
    "squeeze (det 1)": (2.0, 0.0, 0.0, 0.5),
    "mirror (det < 0)": (-1.0, 0.0, 0.0, 1.0),
    "singular (det 0)": (1.0, 2.0, 0.5, 1.0),
}

# The letter F drawn in the unit square: a mirrored F is the easiest flip to see.
_F_GLYPH = [((0.3, 0.15), (0.3, 0.85)), ((0.3, 0.85), (0.72, 0.85)), ((0.3, 0.5), (0.6, 0.5))]


def _as_linear_map(A) -> jacobians.LinearMap2D:
    return A if isinstance(A, jacobians.LinearMap2D) else jacobians.linear_map(A)


def plot_linear_map(A, lim: float | None = None) -> Figure:
    """Two panels: the unit square in z and its image under x = A z, a parallelogram.

    A: a 2x2 matrix [[a, b], [c, d]] (nested list, tensor or flowedu LinearMap2D). The
    image's area |det A| and orientation are in the titles. Orange: orientation kept
    (det > 0); purple and hatched: flipped (det < 0), seen in the mirrored F and the corners
    1-2-3-4 turning clockwise; det = 0: the square collapses to a segment (or a point), drawn
    in red. lim fixes both panels' limits to [-lim, lim] (None: fit the picture).
    """
    use_course_style()
    lm = _as_linear_map(A)
    (a, b), (c, d) = lm.A.tolist()
    corners = jacobians.unit_square(torch.float64)  # (4, 2), counter-clockwise
    image = lm.apply(corners)  # (4, 2) = corners @ A.T
    if lim is None:  # half-unit steps, so the explorer's axes jump only now and then
        lim = max(2.0, math.ceil(2.3 * float(image.abs().max())) / 2)

    fig, (ax_z, ax_x) = plt.subplots(1, 2, figsize=(12, 6))
    _draw_shape(ax_z, corners, lambda p: p, BASE_COLOR, "", "square")
    ax_z.set_title("z: the unit square, area 1")
    if lm.orientation > 0:
        color, hatch, words = DATA_COLOR, "", "orientation kept (det > 0)"
    elif lm.orientation < 0:
        color, hatch, words = FLIP_COLOR, "//", "orientation FLIPPED (det < 0)"
    else:
        color, hatch = SINGULAR_COLOR, ""
        words = "det = 0: squashed onto a " + ("point" if lm.A.abs().max() == 0 else "line")
    ax_x.add_patch(
        Polygon(
            corners.numpy(),
            closed=True,
            fill=False,
            ec=BASE_COLOR,
            ls="--",
            lw=1.5,
            label="unit square",
        )
    )
    _draw_shape(ax_x, image, lm.apply, color, hatch, "image")
    ax_x.set_title(
        f"x = A z: area |det A| = {lm.area_scale:.2f}\n{words}",
        color="black" if lm.orientation > 0 else color,
    )
    ax_z.set(xlim=(-0.7, 1.7), ylim=(-0.7, 1.7))
    ax_x.set(xlim=(-lim, lim), ylim=(-lim, lim))
    for ax, name in [(ax_z, "z"), (ax_x, "x")]:
        ax.set_aspect("equal")
        ax.set_xlabel(f"{name}₁")
        ax.set_ylabel(f"{name}₂")
        ax.axhline(0, color=GRID_COLOR, lw=0.8)
        ax.axvline(0, color=GRID_COLOR, lw=0.8)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"A = [[{a:.2f}, {b:.2f}], [{c:.2f}, {d:.2f}]],   "
        f"det A = ad − bc = {a:.2f}·{d:.2f} − {b:.2f}·{c:.2f} = {lm.det:.2f}",
        fontsize=15,
    )
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.83, wspace=0.2)
    return fig


def _draw_shape(ax, verts: Tensor, fn: Callable[[Tensor], Tensor], color, hatch, gid) -> None:
    """A filled quadrilateral, its numbered corners (corner 2 starred), the letter F and
    the arrows to the images of e1 = (1, 0) and e2 = (0, 1)."""
    v = verts.numpy()
    ax.add_patch(
        Polygon(v, closed=True, fc=color, ec=color, alpha=0.45, lw=2.5, hatch=hatch, gid=gid)
    )
    ax.add_patch(Polygon(v, closed=True, fill=False, ec=color, lw=2.5))
    for start, end in _F_GLYPH:
        seg = fn(torch.tensor([start, end], dtype=torch.float64)).numpy()
        ax.plot(seg[:, 0], seg[:, 1], color="black", lw=4, solid_capstyle="round")
    centre = v.mean(axis=0)
    edge1, edge2 = v[1] - v[0], v[3] - v[0]
    flat = abs(edge1[0] * edge2[1] - edge1[1] * edge2[0]) < 1e-9  # det = 0: a segment
    for k, name in [(1, "e₁"), (3, "e₂")]:  # the corners (1, 0) and (0, 1)
        ax.annotate(
            "",
            xy=v[k],
            xytext=v[0],
            arrowprops=dict(arrowstyle="-|>", color="black", lw=2, mutation_scale=20),
        )
        label = name if gid == "square" else f"A{name}"
        mid = 0.5 * (v[k] + v[0])
        # Beside the arrow (perpendicular to it), on the outer side of the shape; on a
        # segment, e1's label on one side and e2's on the other, so they never overlap.
        side = _normal(v[k] - v[0])
        outward = float(side @ (mid - centre))
        sign = (1.0 if k == 1 else -1.0) if flat or abs(outward) < 1e-9 else np.sign(outward)
        _label(ax, mid, sign * side, 16, label, fontsize=14)
    ax.plot(*v[1], marker="*", ms=20, color="gold", mec="black", zorder=5)
    line = _normal(edge1 if float(np.hypot(*edge1)) > 1e-9 else edge2)
    for k, p in enumerate(v):
        # Away from the centre; on a segment, corners inside it go beside the segment
        # (2 and 4 on opposite sides) instead of onto the arrows.
        inside = (
            flat
            and k in (1, 3)
            and float(np.hypot(*(p - centre)))
            < 0.9 * max(float(np.hypot(*(q - centre))) for q in v)
        )
        direction = (line if k == 1 else -line) if inside else p - centre
        _label(
            ax,
            p,
            direction,
            22,
            str(k + 1),
            fontsize=12,
            fontweight="bold",
            bbox=dict(boxstyle="circle,pad=0.2", fc="white", ec=GRID_COLOR),
        )


def _label(ax, at: np.ndarray, direction: np.ndarray, points: float, text: str, **style):
    """`text` a fixed distance (in points, so at any zoom) from `at`, towards `direction`."""
    d = _unit(direction)
    ax.annotate(
        text,
        xy=at,
        xytext=(d[0] * points, d[1] * points),
        textcoords="offset points",
        ha="center",
        va="center",
        **style,
    )


def _normal(v: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to v."""
    return _unit(np.array([-v[1], v[0]]))


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    return v / n if n > 1e-9 else np.array([0.0, -1.0])


def explore_linear_map(a: float, b: float, c: float, d: float) -> Figure:
    """What the linear-map explorer draws: plot_linear_map([[a, b], [c, d]])."""
    return plot_linear_map([[a, b], [c, d]])


def linear_map_explorer(preset: str = "stretch and shear"):
    """Sliders for a, b, c, d of A = [[a, b], [c, d]], preset buttons, and the figure of
    explore_linear_map redrawn on every change. Returns an ipywidgets VBox."""
    import ipywidgets as widgets
    from IPython.display import display

    lo, hi, step = LINEAR_SLIDER
    sliders = [
        widgets.FloatSlider(
            value=v, min=lo, max=hi, step=step, description=name, continuous_update=False
        )
        for name, v in zip("abcd", LINEAR_PRESETS[preset], strict=True)
    ]
    presets = widgets.Dropdown(options=list(LINEAR_PRESETS), value=preset, description="preset")
    out = widgets.Output()
    busy = [False]  # while a preset sets all four sliders, draw once, not four times

    def redraw(_=None) -> None:
        if busy[0]:
            return
        with out:
            out.clear_output(wait=True)
            fig = explore_linear_map(*(s.value for s in sliders))
            display(fig)
            plt.close(fig)

    def apply_preset(change) -> None:
        busy[0] = True
        for s, v in zip(sliders, LINEAR_PRESETS[change["new"]], strict=True):
            s.value = v
        busy[0] = False
        redraw()

    for s in sliders:
        s.observe(redraw, names="value")
    presets.observe(apply_preset, names="value")
    redraw()
    return widgets.VBox(
        [widgets.HBox([presets]), widgets.HBox(sliders[:2]), widgets.HBox(sliders[2:]), out]
    )


def plot_warped_grid(
    fn: Callable[[Tensor], Tensor],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    n_lines: int = 11,
    square: tuple[Sequence[float], float] | None = None,
    names: tuple[str, str] = ("x", "z"),
    colors: tuple[str, str] = (DATA_COLOR, BASE_COLOR),
    fn_name: str = "f⁻¹",
) -> Figure:
    """Two panels: a grid over xlim x ylim, and its image under fn: (n, 2) -> (n, 2).

    names, colors and fn_name label the two planes; the defaults suit fn = f^-1 (data x in
    orange -> latent z in blue). square=(centre, h) also draws a small square of side h and its
    image, whose area is close to |det J(centre)| h^2 when h is small.
    """
    use_course_style()
    lines = jacobians.grid_lines(xlim, ylim, n_lines=n_lines, dtype=torch.float64)
    images = jacobians.push_grid(fn, lines)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.8))
    for ax, polylines, name, color in zip(axes, (lines, images), names, colors, strict=True):
        for line in polylines:
            ax.plot(line[:, 0].numpy(), line[:, 1].numpy(), color=color, lw=1.3, gid="grid")
        ax.set(xlabel=f"{name}₁", ylabel=f"{name}₂", aspect="equal")
    axes[0].set_title(f"a grid in {names[0]}")
    axes[1].set_title(f"its image {names[1]} = {fn_name}({names[0]})")
    if square is not None:
        centre, h = torch.as_tensor(square[0], dtype=torch.float64), float(square[1])
        sq = centre + h * (jacobians.unit_square(torch.float64) - 0.5)
        image = jacobians.push_polygon(fn, sq)
        ratio = jacobians.polygon_area(image).abs().item() / h**2
        axes[0].add_patch(
            Polygon(sq.numpy(), fc="black", alpha=0.6, gid="square", label=f"area h² = {h**2:.3g}")
        )
        axes[1].add_patch(
            Polygon(
                image.numpy(),
                fc="black",
                alpha=0.6,
                gid="square_image",
                label=f"area = {ratio:.3f} h²",
            )
        )
        for ax in axes:
            ax.legend(loc="upper left")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.92, wspace=0.2)
    return fig


def histogram_vs_density_2d(
    samples: Tensor,
    density: Callable[[Tensor], Tensor],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    bins: int = 60,
) -> dict[str, np.ndarray | float]:
    """A 2D histogram of samples (n, 2) and the density p at the bin centres, on one grid.

    Returns hist and dens (bins, bins) indexed [i_x1, i_x2], the edges, the cell area, and:
    mass (the integral of dens over the grid, ~1 when the window holds the distribution),
    inside (the fraction of samples in the window), and tv (total variation distance
    1/2 sum |hist - dens| dA, 0 for a perfect match; sampling noise alone gives ~0.02-0.05).
    """
    samples = torch.as_tensor(samples).detach().cpu()
    x_edges = np.linspace(*xlim, bins + 1)
    y_edges = np.linspace(*ylim, bins + 1)
    cell = (x_edges[1] - x_edges[0]) * (y_edges[1] - y_edges[0])
    counts, _, _ = np.histogram2d(
        samples[:, 0].numpy(), samples[:, 1].numpy(), bins=[x_edges, y_edges]
    )
    hist = counts / (len(samples) * cell)
    xc, yc = (x_edges[:-1] + x_edges[1:]) / 2, (y_edges[:-1] + y_edges[1:]) / 2
    grid = np.stack(np.meshgrid(xc, yc, indexing="ij"), axis=-1).reshape(-1, 2)
    with torch.no_grad():
        dens = _to_numpy(density(torch.as_tensor(grid, dtype=samples.dtype))).reshape(bins, bins)
    return {
        "hist": hist,
        "dens": dens,
        "x_edges": x_edges,
        "y_edges": y_edges,
        "cell_area": cell,
        "mass": float(dens.sum() * cell),
        "inside": float(counts.sum() / len(samples)),
        "tv": float(0.5 * np.abs(hist - dens).sum() * cell),
    }


def plot_density_vs_histogram_2d(
    samples: Tensor,
    density: Callable[[Tensor], Tensor],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    bins: int = 60,
    density_title: str = "p(x) by the formula",
) -> Figure:
    """Side-by-side heatmaps on one colour scale: a 2D histogram of samples (n, 2), and the
    density p (a function (m, 2) -> (m,)) at the bin centres (see histogram_vs_density_2d)."""
    use_course_style()
    r = histogram_vs_density_2d(samples, density, xlim, ylim, bins)
    vmax = max(r["hist"].max(), r["dens"].max())
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), sharey=True)
    panels = [
        (r["hist"], f"histogram of {len(samples):,} samples x = f(z)"),
        (r["dens"], density_title),
    ]
    for ax, (values, title) in zip(axes, panels, strict=True):
        ax.pcolormesh(r["x_edges"], r["y_edges"], values.T, cmap="Oranges", vmin=0, vmax=vmax)
        ax.set(title=title, xlabel="x₁", aspect="equal")
    axes[0].set_ylabel("x₂")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.92, wspace=0.1)
    return fig
